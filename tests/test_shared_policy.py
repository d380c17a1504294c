"""The adaptive policy's tables, run against ``AdaptiveRate`` and against the shared Lua script.

Here: a table run on both; then the pacing tests' own table of measures
(``test_adaptive.MEASURES``) and their rules, on the shared policy.

Both take the time as a parameter here (the script reads Redis' ``TIME`` unless a test
passes one), so every case is exact: no sleeps, no real clock.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
import redis.asyncio as aioredis

from hostup_async._constants import ADAPTIVE_BACKOFF
from hostup_async._pacing.adaptive import AdaptiveRate
from hostup_async._pacing.shared import SharedPacer

from .conftest import RedisServer
from .test_adaptive import MEASURES


class Policy(Protocol):
    def on_send(self, now: float) -> Any: ...
    async def refused(
        self, now: float, sent_at: float, wait: float | None, refused: bool
    ) -> tuple[float | None, float | None, int]: ...
    async def rate_at(self, now: float) -> float | None: ...


class LocalPolicy:
    """``AdaptiveRate`` as the table drives it."""

    def __init__(self, ceiling: float | None) -> None:
        self.policy = AdaptiveRate(ceiling)

    async def on_send(self, now: float) -> None:
        self.policy.on_send(now)

    async def refused(
        self, now: float, sent_at: float, wait: float | None, refused: bool
    ) -> tuple[float | None, float | None, int]:
        decision = self.policy.on_refused(now, sent_at, wait, refused=refused)
        return decision.rate, decision.measured, self.policy.lowered

    async def rate_at(self, now: float) -> float | None:
        return self.policy.rate_at(now)


class SharedPolicy:
    """The shared script, one fresh namespace per case, on the table's clock."""

    def __init__(self, redis: aioredis.Redis, ceiling: float | None) -> None:
        self.pacer = SharedPacer(
            redis, namespace=f"test:{{{os.urandom(6).hex()}}}", rate_limit=ceiling, max_pause=1e9
        )

    async def on_send(self, now: float) -> None:
        await self.pacer._call("s", repr(now), now=repr(now))

    async def refused(
        self, now: float, sent_at: float, wait: float | None, refused: bool
    ) -> tuple[float | None, float | None, int]:
        reply = await self.pacer._call(
            "r" if refused else "k",
            repr(sent_at),
            "" if wait is None else repr(wait),
            now=repr(now),
        )
        rate = float(reply[3]) if reply[3] else None
        measured = float(reply[4]) if reply[4] else None
        return rate, measured, int(reply[5])

    async def rate_at(self, now: float) -> float | None:
        reply = await self.pacer._call("s", now=repr(now))
        rate = float(reply[2])
        return None if rate < 0 else rate


@dataclass(frozen=True)
class Case:
    name: str
    ceiling: float | None
    sends: tuple[float, ...]
    # (now, sent_at, wait, refused) -> expected (rate, measured, lowered); None: unchanged
    refusals: tuple[tuple[float, float, float | None, bool, float | None, float | None, int], ...]
    # (now, expected rate)
    rates: tuple[tuple[float, float | None], ...] = ()


T0 = 1000.0


def _steady(rate: float, start: float, end: float) -> tuple[float, ...]:
    n = int((end - start) * rate)
    return tuple(start + i / rate for i in range(n))


CASES = [
    Case(
        "no sends before the refusal: only a pause",
        None,
        (),
        ((T0, T0, 1.0, True, None, None, 0),),
        ((T0 + 5, None),),
    ),
    Case(
        "100 in the second before: 95 req/s, resting at 99",
        400.0,
        _steady(100, T0 - 1.0, T0),
        ((T0, T0, 0.5, True, 95.0, 100.0, 1),),
        ((T0 + 0.5, 95.0), (T0 + 0.5 + 15.0, 99.0), (T0 + 600, 400.0)),
    ),
    Case(
        "the same burst lowers once",
        400.0,
        _steady(100, T0 - 1.0, T0),
        (
            (T0, T0 - 0.01, 0.5, True, 0.95 * 99, 99.0, 1),
            (T0 + 0.01, T0 - 0.005, 0.5, True, None, None, 1),
        ),
    ),
    Case(
        "refused sends do not count as taken",
        400.0,
        _steady(100, T0 - 1.0, T0),
        (
            (T0 - 0.2, T0 - 0.5, 0.1, True, 0.95 * 50, 50.0, 1),
            (T0 + 1.0, T0 - 0.3, 0.1, True, None, None, 1),  # sent before the decision
        ),
    ),
    Case(
        "a long wait measures over the server's window",
        None,
        _steady(50, T0 - 2.0, T0),
        ((T0, T0, 8.0, True, 0.95 * 100 / 10.0, 100 / 10.0, 1),),
    ),
    Case(
        "a spent quota (not refused) counts the request itself",
        None,
        (*_steady(10, T0 - 0.95, T0), T0),
        ((T0, T0, 1.0, False, 0.95 * 10, 10.0, 1),),
    ),
    Case(
        "never below the minimum rate",
        None,
        (T0 - 0.5,),
        ((T0, T0, 2.0, True, 0.5, 1 / 2.5, 1),),  # one send over a 2.5 s window
    ),
]


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
# The script's policy only: AdaptiveRate has moved on (thin samples, a new curve: issue 17),
# and the shared pacer is to run AdaptiveRate itself rather than a copy in Lua (issue 18).
@pytest.mark.parametrize("impl", ["shared"])
async def test_policy_table(case: Case, impl: str, redis: aioredis.Redis) -> None:
    policy: LocalPolicy | SharedPolicy = (
        LocalPolicy(case.ceiling) if impl == "local" else SharedPolicy(redis, case.ceiling)
    )
    for t in case.sends:
        await policy.on_send(t)
    for now, sent_at, wait, refused, rate, measured, lowered in case.refusals:
        got_rate, got_measured, got_lowered = await policy.refused(now, sent_at, wait, refused)
        assert (got_rate, got_measured, got_lowered) == (
            pytest.approx(rate, rel=1e-9) if rate is not None else None,
            pytest.approx(measured, rel=1e-9) if measured is not None else None,
            lowered,
        )
    for now, rate in case.rates:
        got = await policy.rate_at(now)
        assert got == (pytest.approx(rate, rel=1e-6) if rate is not None else None)


# -- the pacing tests' own table of measures, on the shared policy ----------------------


async def sent_shared(policy: SharedPolicy, count: int, start: float, end: float) -> None:
    times = [repr(start + (end - start) * i / count) for i in range(count)]
    await policy.pacer._call("s", *times, now=repr(end))


@pytest.mark.parametrize(
    ("count", "over", "wait", "measured", "pause"), list(MEASURES.values()), ids=list(MEASURES)
)
async def test_the_pacing_table_of_measures_holds_for_the_shared_policy(
    redis: aioredis.Redis,
    count: int,
    over: float,
    wait: float | None,
    measured: float,
    pause: float,
) -> None:
    policy = SharedPolicy(redis, 400.0)
    await sent_shared(policy, count, 100.0 - over, 100.0)
    reply = await policy.pacer._call(
        "r", "100.0", "" if wait is None else repr(wait), now="100.001"
    )
    assert float(reply[4]) == pytest.approx(measured, rel=0.02)
    assert float(reply[2]) == pytest.approx(pause)  # the key's pause, from now
    assert float(reply[3]) == pytest.approx(ADAPTIVE_BACKOFF * measured, rel=0.02)
    assert int(reply[5]) == 1


async def test_shared_refused_sends_do_not_count_as_taken(redis: aioredis.Redis) -> None:
    policy = SharedPolicy(redis, 400.0)
    await sent_shared(policy, 120, 99.7, 100.0)
    for i in range(20):  # the last 20 of them were refused too
        await policy.refused(100.0, 99.7 + 0.3 * (100 + i) / 120, 0.7, True)
    assert await policy.rate_at(100.0) == pytest.approx(ADAPTIVE_BACKOFF * 100, rel=0.02)


async def test_shared_rate_drops_from_the_lower_of_the_measure_and_the_rate_in_force(
    redis: aioredis.Redis,
) -> None:
    policy = SharedPolicy(redis, 50.0)
    await sent_shared(policy, 100, 99.0, 100.0)
    rate, _, _ = await policy.refused(100.0, 100.0, None, True)
    assert rate == pytest.approx(ADAPTIVE_BACKOFF * 50)
