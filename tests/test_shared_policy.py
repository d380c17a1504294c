"""One policy: the local and the shared pacer decide alike, event for event.

The shared pacer runs ``AdaptiveRate`` in Python on the key's logs read back from Redis;
Redis only stores. Here both pacers take the same random events (sends, refusals with
any hint, spent quotas, time passing) on clocks driven by hand (the script takes the
test's time instead of Redis' ``TIME``), and must give the same rate, the same lowerings
and the same ``paused_for``. The send times come from the shared pacer; the local one
records the same.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hostup_async._pacing import LocalPacer
from hostup_async._pacing.adaptive import AdaptiveRate
from hostup_async._pacing.shared import SharedPacer

from .conftest import RedisServer, close_redis, run_apart


class HandClock:
    """A clock that moves only when told to, or by what a pacer sleeps."""

    def __init__(self, start: float) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)


def shared_pacer(
    redis: aioredis.Redis, clock: HandClock, rate_limit: float | None, max_pause: float = 60.0
) -> SharedPacer:
    return SharedPacer(
        redis,
        namespace=f"test:{{{os.urandom(6).hex()}}}",
        rate_limit=rate_limit,
        clock=clock,
        max_pause=max_pause,
        lease_ahead=False,
        redis_time=False,
    )


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await close_redis(client)


# -- the decision on the key's logs is the local policy's --------------------------------


def steady(rate: float, start: float, end: float) -> list[float]:
    return [start + i / rate for i in range(int((end - start) * rate))]


T0 = 1000.0
SCENARIOS = {
    "no sends before the refusal": (None, [], [(T0, T0, 1.0, True)]),
    "100 in the second before": (400.0, steady(100, T0 - 1, T0), [(T0, T0, 0.5, True)]),
    "the same burst lowers once": (
        400.0,
        steady(100, T0 - 1, T0),
        [(T0, T0 - 0.01, 0.5, True), (T0 + 0.01, T0 - 0.005, 0.5, True)],
    ),
    "refused sends do not count": (
        400.0,
        steady(100, T0 - 1, T0),
        [(T0 - 0.2, T0 - 0.5, 0.1, True), (T0 + 1.0, T0 - 0.3, 0.1, True)],
    ),
    "a long wait": (None, steady(50, T0 - 2, T0), [(T0, T0, 8.0, True)]),
    "a spent quota": (None, [*steady(10, T0 - 0.95, T0), T0], [(T0, T0, 1.0, False)]),
    "a later burst lowers again": (
        400.0,
        steady(100, T0 - 1, T0 + 20),
        [(T0, T0 - 0.5, 1.0, True), (T0 + 20, T0 + 19.9, 1.0, True)],
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS), ids=list(SCENARIOS))
async def test_a_refusal_is_decided_on_the_keys_logs_as_the_local_policy_decides(
    redis: aioredis.Redis, scenario: str
) -> None:
    ceiling, sends, refusals = SCENARIOS[scenario]
    local = AdaptiveRate(ceiling, max_pause=60.0)
    clock = HandClock(T0 - 5)
    shared = shared_pacer(redis, clock, ceiling)
    try:
        for t in sends:
            local.on_send(t)
        await shared._script.note(sends, now=T0)
        for now, sent_at, wait, refused in refusals:
            clock.t = now
            want = local.on_refused(now, sent_at, wait, refused=refused)
            got = await shared._report(sent_at, wait, refused)
            assert got is not None
            assert (got.rate, got.measured, got.pause) == (want.rate, want.measured, want.pause)
            assert shared._policy.lowered == local.lowered
        for dt in (0.0, 0.5, 3.0, 15.0, 40.0, 600.0):
            assert shared._policy.rate_at(T0 + dt) == local.rate_at(T0 + dt), dt
    finally:
        await shared.aclose()


async def test_a_decision_overtaken_by_another_clients_is_not_stored_twice(
    redis: aioredis.Redis,
) -> None:
    clock = HandClock(T0)
    one = shared_pacer(redis, clock, 400.0)
    other = SharedPacer(
        redis,
        namespace=one._script._keys[0].removesuffix(":state"),
        rate_limit=400.0,
        clock=clock,
        lease_ahead=False,
        redis_time=False,
    )
    try:
        await one._script.note(steady(100, T0 - 1, T0), now=T0)
        # Both refused in one burst, deciding at once: the first stores, the second
        # finds the burst already acted on.
        decisions = await asyncio.gather(
            one._report(T0 - 0.01, 1.0, True), other._report(T0 - 0.005, 1.0, True)
        )
        assert sum(d is not None and d.rate is not None for d in decisions) == 1
        assert one._policy.lowered == other._policy.lowered == 1
        assert one._policy.rate_at(T0 + 1) == other._policy.rate_at(T0 + 1)
    finally:
        await one.aclose()
        await other.aclose()


# -- random events through both pacers -------------------------------------------------

# An answer comes within an attempt's timeout of its send (the shared log keeps a minute).
ANSWER_WITHIN = 30.0
WAITS = st.sampled_from([None, 0.25, 0.5, 1.0, 2.0, 8.0, 90.0])
EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("pass"), st.integers(1, 400).map(lambda n: n / 128)),
        st.tuples(st.just("send"), st.integers(1, 12)),
        st.tuples(st.just("refused"), st.integers(1, 10), WAITS),
        st.tuples(st.just("spent"), st.integers(1, 10), st.sampled_from([0.5, 2.0, 30.0])),
        st.tuples(st.just("accepted"), st.integers(1, 10)),
    ),
    max_size=30,
)


async def run_both(redis_url: str, ceiling: float | None, events: list[tuple[object, ...]]) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    local_clock, shared_clock = HandClock(T0), HandClock(T0)
    local = LocalPacer(ceiling, clock=local_clock, max_pause=60.0)
    shared = shared_pacer(redis, shared_clock, ceiling)
    sent: list[tuple[float, float]] = []
    try:
        for event in events:
            kind = event[0]
            if kind == "pass":
                local_clock.t += float(event[1])  # type: ignore[arg-type]
                shared_clock.t = local_clock.t
            elif kind == "send":
                for _ in range(int(event[1])):  # type: ignore[call-overload]
                    # Past any pause first, as a caller sitting it out would be: its
                    # random spread is each waiter's own, not part of the decision.
                    shared_clock.t += max(local.paused_for(), shared.paused_for())
                    b = await shared.acquire(60.0)
                    # The local pacer records a send at the same time, so both policies
                    # see one history. (Their buckets differ in details that move a send
                    # by milliseconds: the local one refills at the rate it last read and
                    # forgets sends made before there was a rate.)
                    local_clock.t = shared_clock.t
                    assert local.paused_for() == 0.0
                    local.take(local_clock.t)
                    sent.append((local_clock.t, b))
            elif sent and local_clock.t - sent[-1][0] <= ANSWER_WITHIN:
                a, b = sent[-min(len(sent), int(event[1]))]  # type: ignore[call-overload]
                if local_clock.t - a > ANSWER_WITHIN:
                    continue
                if kind == "refused":
                    wait = event[2]
                    local.on_rate_limited(a, wait)  # type: ignore[arg-type]
                    shared.on_rate_limited(b, wait)  # type: ignore[arg-type]
                elif kind == "spent":
                    local.on_accepted(a, float(event[2]))  # type: ignore[arg-type]
                    shared.on_accepted(b, float(event[2]))  # type: ignore[arg-type]
                else:
                    local.on_accepted(a)
                    shared.on_accepted(b)
                await asyncio.gather(*shared._tasks)
            now = local_clock.t
            assert shared.paused_for() == pytest.approx(local.paused_for(), abs=1e-9)
            assert shared._policy.lowered == local.lowered
            want = local._policy.rate_at(now)
            got = shared._policy.rate_at(now)
            assert got == (None if want is None else pytest.approx(want, rel=1e-9))
    finally:
        await shared.aclose()
        await close_redis(redis)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ceiling=st.sampled_from([None, 50.0, 400.0]), events=EVENTS)
# Found by Hypothesis: the key's first send (a minute and a half back) sets the window.
@example(ceiling=None, events=[("send", 1), ("refused", 1, 90.0), ("send", 1), ("spent", 1, 0.5)])
def test_random_events_get_the_same_decisions_and_pause_from_both_pacers(
    redis_server: RedisServer, ceiling: float | None, events: list[tuple[object, ...]]
) -> None:
    run_apart(run_both(redis_server.url, ceiling, events))
