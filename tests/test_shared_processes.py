"""Several processes, one API key, one Redis: they share the rate, the 429 pause and Redis' loss.

Each process is a real client (``tests/shared_worker.py``) against the fake server in this
process. What is asserted cannot be flipped by a busy machine: the send times the Lua
script handed out (at most R in any 1-s window, by construction), that every VM was
fetched, that processes that never saw a 429 stopped for its pause. Rates reached are
measured by the benchmark, not here.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from hostup_async._pacing.shared import namespace_for
from hostup_async.testing import FakeHostUp, Fault

from .conftest import (
    API_KEY,
    RedisServer,
    close_redis,
    most_in_one_second,
    scores,
    unmeasured_env,
)

ROOT = Path(__file__).resolve().parent.parent


async def run_workers(options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run one worker process per options dict; return their results (each must exit 0)."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.shared_worker",
            json.dumps(o),
            cwd=ROOT,
            env=unmeasured_env(),  # what a worker runs, test_shared.py measures in-process
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for o in options
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in procs))
    results = []
    for proc, (out, err) in zip(procs, outputs, strict=False):
        assert proc.returncode == 0, err.decode()
        result = json.loads(out.decode().strip().splitlines()[-1])
        result["stderr"] = err.decode()
        results.append(result)
    return results


async def send_times(redis_url: str, base_url: str) -> list[float]:
    """The send times the script handed out for the key (kept for a minute)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        return await scores(client, f"{namespace_for(API_KEY, base_url)}:sends")
    finally:
        await close_redis(client)


def worker(
    fake: FakeHostUp, redis_url: str, rate: float, first: int, count: int, **extra: Any
) -> dict[str, Any]:
    return {
        "api_key": API_KEY,
        "base_url": fake.url,
        "redis_url": redis_url,
        "rate": rate,
        "first": first,
        "count": count,
        **extra,
    }


async def test_four_processes_share_one_rate_with_skewed_clocks(redis_server: RedisServer) -> None:
    rate = 60
    async with FakeHostUp(api_key=API_KEY, rate_limit=rate, rate_mode="token_bucket") as fake:
        skews = [0.0, 3600.0, -3600.0, 0.25]  # as far apart as clocks on other hosts may be
        results = await run_workers(
            [
                worker(fake, redis_server.url, rate, 1 + i * 1000, 50, skew=s)
                for i, s in enumerate(skews)
            ]
        )
        times = await send_times(redis_server.url, fake.url)
        refused = fake.stats.by_status[429]
    assert [r["ok"] for r in results] == [50] * 4
    assert len(times) >= 200
    # The script's own schedule: never more than the rate in any 1-s window, fleet-wide.
    assert most_in_one_second(times) <= rate
    # Pacing alone, each at the full rate, four processes would see about 3 in 4 refused;
    # sharing, only a process stalled for most of a second can bunch its sends up.
    assert refused <= 0.1 * fake.stats.requests


async def test_a_429_received_by_one_process_pauses_them_all(redis_server: RedisServer) -> None:
    async with FakeHostUp(api_key=API_KEY) as fake:
        fake.inject(Fault.http(429, retry_after=30.0), vmid=1 + 20)
        # The first process takes the server's 30 s (no retry); the others wait 5 s at most.
        patience = [{"max_retry_after": 60.0, "max_retries": 0}] + [{"max_retry_after": 5.0}] * 3
        results = await run_workers(
            [
                worker(
                    fake, redis_server.url, 50, 1 + i * 10_000, 300, sequential=True, **patience[i]
                )
                for i in range(4)
            ]
        )
    # The process that got the 429 stopped at once; the others never saw a 429, yet stopped
    # too, unwilling to sit out the shared 30 s pause.
    assert results[0]["stopped_by"] == "429"
    assert [r["stopped_by"] for r in results[1:]] == ["pause"] * 3
    assert [r["rate_limited"] for r in results[1:]] == [0] * 3
    assert all(r["ok"] < 300 for r in results)


async def test_redis_killed_and_restarted_mid_run_loses_nothing(own_redis: RedisServer) -> None:
    rate, count = 150, 120
    async with FakeHostUp(api_key=API_KEY) as fake:
        run = asyncio.ensure_future(
            run_workers([worker(fake, own_redis.url, rate, 1 + i * 1000, count) for i in range(4)])
        )
        await wait_until(lambda: fake.stats.requests >= 150, run)
        own_redis.stop()
        seen = fake.stats.requests
        await wait_until(lambda: fake.stats.requests >= seen + 150, run)
        own_redis.start()
        results = await run
    assert [r["ok"] for r in results] == [count] * 4
    assert [r["failed"] for r in results] == [0] * 4
    for r in results:
        # Every process that paced alone said so once, and never showed the password.
        warnings = r["stderr"].count("Redis is unavailable")
        assert warnings <= 1, r["stderr"]
        assert "s3cret-pw" not in r["stderr"]
    assert any(r["shared_fallback"] > 0 for r in results)


async def wait_until(condition: Any, run: asyncio.Future[Any]) -> None:
    """Wait for ``condition()`` (checked as the event loop turns), failing if the run ends first."""
    while not condition():
        assert not run.done(), "the workers finished before the condition held"
        await asyncio.sleep(0.01)


# -- a lost state is not a burst ---------------------------------------------------------


async def snapshot_then(redis_url: str, base_url: str, *commands: tuple[str, ...]) -> list[float]:
    """The key's send times, read in one transaction with ``commands`` (which lose state)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.zrange(f"{namespace_for(API_KEY, base_url)}:sends", 0, -1, withscores=True)
            for command in commands:
                pipe.execute_command(*command)
            replies = await pipe.execute()
        return sorted(score for _, score in replies[0])
    finally:
        await close_redis(client)


@pytest.mark.parametrize(
    "loss",
    [
        ("FLUSHALL",),  # as a restart without persistence, with no outage
        ("DEL", "{ns}:sends"),  # evicted: the send log alone
        ("DEL", "{ns}:state", "{ns}:clients"),  # evicted: the state alone
    ],
    ids=["flushall", "log-evicted", "state-evicted"],
)
async def test_a_state_lost_mid_run_is_no_burst(
    own_redis: RedisServer, loss: tuple[str, ...]
) -> None:
    rate, count = 100, 100
    async with FakeHostUp(api_key=API_KEY) as fake:
        ns = namespace_for(API_KEY, fake.url)
        run = asyncio.ensure_future(
            run_workers([worker(fake, own_redis.url, rate, 1 + i * 1000, count) for i in range(4)])
        )
        await wait_until(lambda: fake.stats.requests >= 150, run)
        before = await snapshot_then(
            own_redis.url, fake.url, tuple(part.format(ns=ns) for part in loss)
        )
        results = await run
        after = await send_times(own_redis.url, fake.url)
    assert [r["ok"] for r in results] == [count] * 4
    assert len(before) >= 150 and len(before) + len(after) >= 4 * count
    # Every send time reserved, under the lost state and the new one together: never more
    # than the rate in any 1-s window.
    assert most_in_one_second(sorted(set(before) | set(after))) <= rate
