"""Adaptive rate limiting: the client finds a hidden server limit below its own and keeps to it."""

from __future__ import annotations

import asyncio
import logging

import pytest
from hostup_async._throttle import AdjustableLimiter, Throttle

from hostup_async import AttemptEvent, HostUpClient
from hostup_async.testing import FakeHostUp, Fault

from .conftest import API_KEY

# -- the limiter and the throttle's decisions -------------------------------------------


async def test_adjustable_limiter_paces_at_its_new_rate() -> None:
    limiter = AdjustableLimiter(1000.0)
    assert limiter.rate == 1000.0 and limiter.max_rate == 100.0  # a 0.1 s burst
    limiter.set_rate(20.0)
    assert limiter.rate == 20.0 and limiter.max_rate == 2.0
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(6):  # 2 from the burst, then one per 50 ms
        await limiter.acquire()
    assert loop.time() - start >= 0.19


async def test_adjustable_limiter_wakes_a_queued_waiter_at_the_new_rate() -> None:
    limiter = AdjustableLimiter(0.5)  # one request per 2 s, burst of one
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    limiter.set_rate(1000.0)
    await waiter  # the timer set for the old rate was re-armed; no 2 s wait


async def test_a_429_before_anything_was_accepted_only_pauses() -> None:
    throttle = Throttle(None)
    sent = await throttle.acquire()
    throttle.on_rate_limited(sent, 0.05)
    assert throttle.rate is None and throttle.lowered == 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    await throttle.acquire()
    assert loop.time() - start >= 0.05  # the pause held the next request


async def test_a_429_lowers_the_rate_to_what_the_server_accepted_once_per_burst() -> None:
    throttle = Throttle(400.0)
    now = asyncio.get_running_loop().time()
    # 100 sends over the last 0.2 s, then a 429 saying "wait 0.8 s": 100 per second.
    for i in range(100):
        throttle.note_send(now - 0.2 + i * 0.002)
    throttle.on_rate_limited(now, 0.8)
    assert throttle.rate == pytest.approx(90.0, rel=0.05)
    assert throttle.lowered == 1
    # More 429s for requests sent before that decision are the same burst.
    throttle.on_rate_limited(now - 0.001, 0.8)
    throttle.on_rate_limited(now, 0.8)
    assert throttle.lowered == 1
    assert throttle.rate == pytest.approx(90.0, rel=0.05)


async def test_without_retry_after_the_client_pauses_a_default_second() -> None:
    throttle = Throttle(50.0)
    now = asyncio.get_running_loop().time()
    for i in range(10):
        throttle.note_send(now - 0.95 + i * 0.1)
    throttle.on_rate_limited(now, None)
    # 10 sent over the last second, plus the default 1 s pause: 5 per second, times 0.9.
    assert throttle.rate == pytest.approx(0.9 * 10 / 2.0, rel=0.01)


async def test_a_steady_state_429_keeps_the_rate_near_the_servers_window() -> None:
    throttle = Throttle(400.0)
    now = asyncio.get_running_loop().time()
    # Sending at 103/s into a 100-per-second window: refused 0.97 s in, "wait 0.03 s".
    for i in range(300):
        throttle.note_send(now - 2.9 + i / 103)
    throttle.on_rate_limited(now, 0.03)
    assert throttle.rate == pytest.approx(0.9 * 103, rel=0.06)


# -- the hidden limit, over real HTTP -----------------------------------------------------


def rate_log(caplog: pytest.LogCaptureFixture, word: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"rate {word} to" in r.getMessage()]


async def test_hidden_limit_below_the_configured_rate(caplog: pytest.LogCaptureFixture) -> None:
    """Server accepts 100 req/s, client set to 400: every VM, few 429s, the rate probes back up.

    The full figure (1,500 VMs, about 95 req/s, 0.2% 429s) is in the report and benchmarks;
    this run is sized to stay quick while lasting long enough for a probe upwards.
    """
    caplog.set_level(logging.DEBUG, logger="hostup_async")
    vmids = range(1, 401)
    async with FakeHostUp(api_key=API_KEY, rate_limit=100, usage_log_hours=4) as fake:
        async with HostUpClient(
            API_KEY, base_url=fake.url, rate_limit=400, max_concurrency=32, timeout=5.0
        ) as client:
            results = [r async for r in client.stream_vms(vmids)]
    assert sorted(r.vmid for r in results if r.ok) == list(vmids)
    refused = fake.stats.by_status[429]
    assert fake.stats.requests == len(vmids) + refused
    assert refused / fake.stats.requests <= 0.05
    assert client.stats.rate_limited == refused
    lowered = rate_log(caplog, "lowered")
    assert lowered, "a 429 must lower the rate"
    assert rate_log(caplog, "raised"), "the rate must probe back up while no 429 comes"


async def test_a_client_without_a_rate_limit_engages_one_after_a_429(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="hostup_async")
    vmids = range(1, 201)
    async with FakeHostUp(api_key=API_KEY, rate_limit=100, usage_log_hours=4) as fake:
        async with HostUpClient(
            API_KEY, base_url=fake.url, rate_limit=None, max_concurrency=32, timeout=5.0
        ) as client:
            results = await client.fetch_vms(vmids)
    assert all(r.ok for r in results)
    # The first burst runs into the limit (at most one round of concurrency); after that
    # the learned rate keeps it out of trouble instead of hammering.
    assert fake.stats.by_status[429] <= 32 + 5
    assert rate_log(caplog, "lowered")


async def test_client_wide_pause_wakes_requests_spread_out_never_early(fake: FakeHostUp) -> None:
    fake.inject(Fault.http(429, retry_after=0.3), vmid=1)
    refused = asyncio.Event()

    def on_attempt(event: AttemptEvent) -> None:
        if event.status == 429:
            refused.set()

    async with HostUpClient(
        API_KEY, base_url=fake.url, rate_limit=None, on_attempt=on_attempt
    ) as client:
        first = asyncio.create_task(client.get_billing_cycle(1))
        await refused.wait()  # the 429 has been read: the pause is on
        await asyncio.gather(*(client.get_billing_cycle(v) for v in range(2, 22)))
        await first
    refused_at = fake.stats.recent[0].at
    others = [r.at for r in fake.stats.recent if not r.path.startswith("/api/vm/1/")]
    assert len(others) == 20
    assert min(others) - refused_at >= 0.3  # never before the server's wait is over
    assert max(others) - min(others) > 0.005  # and not all in the same instant


async def test_never_more_than_the_rate_in_any_one_second_window() -> None:
    throttle = Throttle(20.0)
    sends = sorted(await asyncio.gather(*(throttle.acquire() for _ in range(50))))
    most = max(sum(1 for t in sends[i:] if t < start + 1.0) for i, start in enumerate(sends))
    assert most <= 20


async def test_try_acquire_takes_a_slot_only_when_no_wait_is_needed() -> None:
    throttle = Throttle(2.0)
    assert throttle.try_acquire() is not None
    taken = 1
    while throttle.try_acquire() is not None:
        taken += 1
    assert taken <= 2, "never more than the rate at once"
    assert throttle.try_acquire() is None, "full: the caller must await acquire()"
    free = Throttle(None)
    assert free.try_acquire() is not None
    free.pause(5.0)
    assert free.try_acquire() is None, "paused: the caller must await acquire()"
