"""Pacing: the send bucket, the adaptive policy and the pacer, with the time in the test's hands.

The rules are tested with the time as a parameter (the bucket and the policy are pure) or
with a clock the test drives (the pacer), so nothing here depends on how fast the machine
is. Two gateway styles at the end run over real HTTP and assert only what load cannot
change: every VM arrives, every 429 is accounted for, the rate comes down (every style
runs on the simulator in ``test_pacing_simulated``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from typing import Any

import pytest

from hostup_async import ClientClosedError, HostUpClient, RateLimitError
from hostup_async._constants import (
    ADAPTIVE_MIN_RATE,
    ADAPTIVE_RECOVER,
    ADAPTIVE_REST_TIME,
    ADAPTIVE_THIN_BACKOFF,
)
from hostup_async._http.hints import quota_spent_wait
from hostup_async._pacing import LocalPacer, Pause, PauseTooLong
from hostup_async._pacing.adaptive import AdaptiveRate, RateState, _Log
from hostup_async._pacing.bucket import SendBucket
from hostup_async.testing import FakeHostUp, Fault

from .conftest import API_KEY, RefusalSeen, most_in_one_second


class ManualClock:
    """A clock the test owns: a sleep moves time forward by exactly that much, at once.

    Concurrent sleepers each move it on, so sends can only come later than in real time,
    never earlier: the properties tested here (never early, never above the rate) hold.
    """

    def __init__(self) -> None:
        self.time = 1000.0

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        self.time += max(0.0, seconds)
        await asyncio.sleep(0)


# -- the send bucket ---------------------------------------------------------------------


def drain(bucket: SendBucket, now: float, count: int) -> list[float]:
    """Send ``count`` times as soon as the bucket allows; return the send times."""
    sends = []
    for _ in range(count):
        now += bucket.delay(now)
        bucket.take(now)
        sends.append(now)
    return sends


def test_bucket_allows_a_short_burst_then_paces_at_its_rate() -> None:
    bucket = SendBucket(100.0, now=0.0)  # a 0.1 s burst: 10 at once
    sends = drain(bucket, 0.0, 30)
    assert sends[:10] == [0.0] * 10
    gaps = [b - a for a, b in itertools.pairwise(sends[10:])]
    assert all(gap == pytest.approx(0.01) for gap in gaps)


@pytest.mark.parametrize("rate", [0.5, 3.7, 20.0, 250.0])
def test_bucket_never_sends_more_than_the_rate_in_any_one_second(rate: float) -> None:
    bucket = SendBucket(rate, now=0.0)
    sends = drain(bucket, 0.0, int(rate * 4) + 5)
    assert most_in_one_second(sends) <= max(1, int(rate))


def test_bucket_keeps_what_accrued_when_its_rate_changes() -> None:
    bucket = SendBucket(10.0, now=0.0)
    drain(bucket, 0.0, 1)  # the burst of one is spent
    bucket.set_rate(1000.0, now=0.05)  # half a send accrued at 10/s stays half a send
    assert bucket.delay(0.05) == pytest.approx(0.5 / 1000.0)
    bucket.set_rate(1.0, now=10.0)  # a slower rate caps the saved burst at its own
    assert bucket.delay(10.0) == 0.0
    bucket.take(10.0)
    assert bucket.delay(10.0) == pytest.approx(1.0, abs=0.01)  # (1-s window, with its margin)


def test_a_held_bucket_sends_nothing_before_the_pause_ends_and_no_burst_after() -> None:
    bucket = SendBucket(100.0, now=0.0)
    bucket.hold(until=5.0)
    sends = drain(bucket, 1.0, 5)
    assert sends[0] >= 5.0
    assert all(b - a == pytest.approx(0.01) for a, b in itertools.pairwise(sends))


# -- the adaptive policy -----------------------------------------------------------------


def sent(policy: AdaptiveRate, count: int, start: float, end: float) -> None:
    for i in range(count):
        policy.on_send(start + (end - start) * i / count)


def test_before_any_refusal_the_rate_is_the_configured_one() -> None:
    assert AdaptiveRate(400.0).rate_at(5.0) == 400.0
    assert AdaptiveRate(None).rate_at(5.0) is None


def test_a_refusal_before_anything_got_through_only_pauses() -> None:
    policy = AdaptiveRate(None)
    policy.on_send(10.0)
    decision = policy.on_refused(10.01, 10.0, 0.5)
    assert (decision.pause, decision.rate) == (0.5, None)
    assert policy.rate_at(11.0) is None and policy.lowered == 0


# Each case: sends before the refusal (count, over the seconds before it), the wait the
# server hinted, what the policy must measure, and how long it must pause.
MEASURES = {
    "1 s window, exact hint": (100, 0.2, 0.8, 100.0, 0.8),
    "1 s window, hint rounded up to whole seconds": (100, 0.2, 1.0, 100.0, 1.0),
    "1 s window, no hint": (100, 0.2, None, 100.0, 1.0),
    "token bucket drained over 2 s": (230, 2.0, 0.01, 115.0, 0.01),
    "steady state just over a 1 s window": (309, 3.0, 0.03, 103.0, 0.03),
    "10 s window, exact hint": (1000, 2.5, 7.5, 100.0, 7.5),
    "10 s window, whole seconds": (1000, 2.5, 8.0, 1000 / 10.5, 8.0),
}


# The cases in which the client sent slower than its rate (400) allowed: the measure is
# only a lower bound of the server's limit.
THIN = {"token bucket drained over 2 s", "steady state just over a 1 s window"}


@pytest.mark.parametrize(
    ("count", "over", "wait", "measured", "pause", "thin"),
    [(*case, name in THIN) for name, case in MEASURES.items()],
    ids=list(MEASURES),
)
def test_a_refusal_measures_what_the_server_took_whatever_the_hint(
    count: int, over: float, wait: float | None, measured: float, pause: float, thin: bool
) -> None:
    policy = AdaptiveRate(400.0)
    sent(policy, count, 100.0 - over, 100.0)
    decision = policy.on_refused(100.001, 100.0, wait)
    assert decision.measured == pytest.approx(measured, rel=0.02)
    assert decision.pause == pause
    assert decision.thin == thin
    expected = ADAPTIVE_THIN_BACKOFF * 400 if thin else policy.backoff * measured
    assert decision.rate == pytest.approx(expected, rel=0.02)
    assert policy.lowered == 1


def test_refused_sends_do_not_count_as_taken() -> None:
    policy = AdaptiveRate(400.0)
    sent(policy, 120, 99.7, 100.0)
    for i in range(20):  # the last 20 of them were refused too
        policy.on_refused(100.0, 99.7 + 0.3 * (100 + i) / 120, 0.7)
    # The first of those refusals decided: 100 sends got through before it.
    assert policy.rate_at(100.0) == pytest.approx(policy.backoff * 100, rel=0.02)


def test_refusals_of_the_same_burst_change_nothing_more() -> None:
    policy = AdaptiveRate(400.0)
    sent(policy, 100, 99.8, 100.0)
    first = policy.on_refused(100.01, 100.0, 0.8)
    again = policy.on_refused(100.02, 100.0, 0.8)  # sent before the decision
    assert again.rate is None and again.pause == 0.8
    assert policy.lowered == 1 and policy.rate_at(100.02) == first.rate


def test_the_rate_drops_from_the_lower_of_the_measure_and_the_rate_in_force() -> None:
    policy = AdaptiveRate(50.0)
    sent(policy, 100, 99.0, 100.0)  # 100 in the last second, but the rate was 50
    decision = policy.on_refused(100.0, 100.0, None)
    assert decision.rate == pytest.approx(policy.backoff * 50)


def test_a_restored_state_with_its_logs_replayed_decides_as_the_original() -> None:
    original = AdaptiveRate(400.0)
    sends = [99.0 + i / 100 for i in range(101)]
    original.replay(None, sends, [])
    original.on_refused(100.01, 100.0, 0.8)
    later = [101.0 + i / 90 for i in range(91)]
    original.replay(None, later, [102.0])
    copy = AdaptiveRate(400.0)
    copy.restore(original.state())
    copy.replay(99.0, sends + later, [100.0, 102.0])
    assert copy.state() == original.state() and copy.epoch == original.epoch
    assert [copy.rate_at(t) for t in (100.5, 103.0, 120.0)] == [
        original.rate_at(t) for t in (100.5, 103.0, 120.0)
    ]
    assert repr(copy.on_refused(102.01, 102.0, None)) == repr(
        original.on_refused(102.01, 102.0, None)
    )
    assert copy.state() == original.state()


def resting_at(held: float, peak: float) -> AdaptiveRate:
    """A policy resting at ``held`` since a measure at second 30; ``peak`` the most it saw."""
    policy = AdaptiveRate(400.0)
    policy.restore(RateState(30.0, held, held * 0.95, 30.01, 8.0, "measured", held, held, 1, peak))
    return policy


def test_a_client_refused_far_below_what_it_once_got_keeps_its_rate_on_a_full_key() -> None:
    # Others on the key filled it: the server took about all this client sent (one refused).
    shared, alone = resting_at(29.7, peak=100.0), resting_at(29.7, peak=30.0)
    for policy in (shared, alone):
        sent(policy, 59, 34.0, 36.0)
    kept = shared.on_refused(36.0, 36.0, 0.01)
    cut = alone.on_refused(36.0, 36.0, 0.01)
    assert kept.rate == pytest.approx(0.95 * 29.7)  # only the usual step below the rate
    assert kept.rate is not None and cut.rate is not None
    assert cut.rate < kept.rate - 1  # the measure ran high: further
    # And it probes again at once, where the other rests first.
    back = 36.01 + ADAPTIVE_RECOVER
    assert (shared.rate_at(back + 4.0) or 0) > (shared.rate_at(back) or 0) > 29.0
    assert alone.rate_at(back + 4.0) == alone.rate_at(back)


# Each case: the pause a client at 47.5 req/s (backed off from 50) took at second 30, the
# requests it then sent (count, over the seconds from the pause's end), which of them the
# server refused on the way (each answered with a pause of 0.01 s: a token bucket's
# fractional hint) and a refusal of the next one; the rate it must drop to (``None``: the
# rate just lowered stands, the refusal only pauses; 4 of 6 taken in 0.16 s: 25 req/s).
REFUSED_AGAIN = {
    "a lone client whose limit fell: 50 taken since": (0.5, 50, 1.0, (), 0.95 * 50 / 1.5),
    "a key others filled for a moment: 3 taken since": (0.01, 3, 0.06, (), None),
    "a key others filled: one refused before, in flight": (0.01, 4, 0.06, (3,), None),
    "a lone client whose limit fell: refused a third time": (0.01, 6, 0.15, (1, 2), 0.95 * 25),
    "nothing taken after a pause with room for a sample": (1.0, 0, 0.0, (), 0.95 * 0.5 * 47.5),
}


@pytest.mark.parametrize(
    ("pause", "count", "over", "refused", "rate"),
    list(REFUSED_AGAIN.values()),
    ids=list(REFUSED_AGAIN),
)
def test_refused_again_right_after_backing_off_the_limit_fell_if_a_sample_says_so(
    pause: float, count: int, over: float, refused: tuple[int, ...], rate: float | None
) -> None:
    policy = AdaptiveRate(400.0)
    policy.restore(RateState(30.0, 49.5, 47.5, 30.0 + pause, 8.0, "saturated", 50.0, 50.0, 1, 50.0))
    sent(policy, 100, 28.0, 30.0)  # at the rate it backed off from
    sent(policy, count, 30.0 + pause, 30.0 + pause + over)
    for i in refused:  # each of these only paused
        at = 30.0 + pause + over * i / count
        assert policy.on_refused(at + 0.01, at, 0.01).rate is None
    now = 30.0 + pause + over
    decision = policy.on_refused(now, now, pause)
    assert decision.pause == pause
    if rate is None:
        assert decision.rate is None and policy.lowered == 1
        assert policy.rate_at(now) == pytest.approx(47.5, rel=0.05)
    else:  # what the server took since the last refusal, the pause included
        assert decision.rate == pytest.approx(rate, rel=0.02) and policy.lowered == 2


def test_a_spent_quota_while_resting_is_the_limit_reached_not_a_measure_that_ran_high() -> None:
    spent, refused = resting_at(99.0, peak=100.0), resting_at(99.0, peak=100.0)
    for policy in (spent, refused):
        sent(policy, 198, 34.0, 36.0)
    at_limit = spent.on_refused(36.0, 36.0, 0.5, refused=False)
    assert at_limit.rate == pytest.approx(0.95 * 99.0)
    further = refused.on_refused(36.0, 36.0, 0.5)  # a 429 there: the measure ran high
    assert further.rate is not None and further.rate < 0.95 * 0.95 * 99.0 + 0.01


def test_the_probe_grows_by_as_much_for_a_small_client_as_for_a_big_one() -> None:
    small, big = resting_at(10.0, peak=10.0), resting_at(35.0, peak=35.0)
    for t in (42.0, 45.0, 50.0):
        grown = (small.rate_at(t) or 0) - 10.0, (big.rate_at(t) or 0) - 35.0
        assert grown[0] == pytest.approx(grown[1]) and grown[0] > 0


def test_the_rate_never_drops_below_the_minimum() -> None:
    policy = AdaptiveRate(None)
    for t in (80.0, 85.0, 90.0, 95.0):  # a client sending one request every 5 s
        policy.on_send(t)
    decision = policy.on_refused(100.0, 100.0, 10.0)  # two in a 20 s window
    assert decision.measured == pytest.approx(2 / 20)
    assert not decision.thin
    assert decision.rate == pytest.approx(ADAPTIVE_MIN_RATE)


def test_a_spent_quota_counts_the_request_that_spent_it() -> None:
    policy = AdaptiveRate(400.0)
    sent(policy, 99, 99.5, 100.0)
    policy.on_send(100.0)
    decision = policy.on_refused(100.01, 100.0, 0.5, refused=False)
    assert decision.measured == pytest.approx(100.0)


def test_the_rate_climbs_back_rests_below_the_measure_then_finds_a_doubled_limit() -> None:
    policy = AdaptiveRate(None)
    sent(policy, 100, 99.0, 100.0)
    decision = policy.on_refused(100.0, 100.0, 1.0)  # the pause ends at 101
    assert decision.rate == pytest.approx(95.0)
    assert policy.rate_at(100.5) == pytest.approx(95.0)  # during the pause
    halfway = policy.rate_at(101.0 + ADAPTIVE_RECOVER / 2)
    assert halfway is not None and 98.0 < halfway < 99.0  # most of the way back at once
    resting = 101.0 + ADAPTIVE_RECOVER
    assert policy.rate_at(resting) == pytest.approx(99.0)  # just below the measure
    assert policy.rate_at(resting + ADAPTIVE_REST_TIME) == pytest.approx(99.0)  # a while
    later = policy.rate_at(100.0 + 20.0)
    assert later is not None and later > 200.0  # a doubled limit is found within 20 s


def test_the_rate_never_grows_above_the_configured_one() -> None:
    policy = AdaptiveRate(120.0, plateau=10.0)
    sent(policy, 100, 99.0, 100.0)
    policy.on_refused(100.0, 100.0, 1.0)
    assert policy.rate_at(1000.0) == 120.0


# -- the server's quota headers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0.25"}, 0.25),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1700000010"}, 10.0),
        ({"X-RateLimit-Remaining": "0"}, 1.0),
        ({"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "1"}, None),
        ({"X-RateLimit-Reset": "1"}, None),
        ({}, None),
    ],
)
def test_a_quota_header_says_when_nothing_is_left(headers: dict[str, str], wait: float) -> None:
    assert quota_spent_wait(headers, now=1_700_000_000.0) == wait


# -- the pacer, on a clock the test drives ---------------------------------------------------


async def test_a_paused_pacer_sends_nothing_until_the_pause_is_over() -> None:
    clock = ManualClock()
    pacer = LocalPacer(None, clock=clock)
    sent_at = pacer.try_acquire()
    assert sent_at is not None
    pacer.on_rate_limited(sent_at, 2.0)
    assert pacer.try_acquire() is None  # the caller must wait
    assert pacer.paused_for() == 2.0
    sends = await asyncio.gather(*(pacer.acquire() for _ in range(5)))
    assert min(sends) >= sent_at + 2.0


async def test_the_pacer_keeps_to_its_rate_in_every_one_second_window() -> None:
    pacer = LocalPacer(20.0, clock=ManualClock())
    sends = await asyncio.gather(*(pacer.acquire() for _ in range(70)))
    assert most_in_one_second(list(sends)) <= 20


async def test_a_call_that_will_not_wait_as_long_as_the_server_asks_ends_at_once() -> None:
    clock = ManualClock()
    pacer = LocalPacer(10.0, clock=clock, max_pause=60.0)
    sent_at = await pacer.acquire()
    pacer.on_rate_limited(sent_at, 3600.0)
    assert pacer.paused_for() == 3600.0  # what the server asked for
    with pytest.raises(PauseTooLong) as caught:
        await pacer.acquire(max_pause=60.0)
    assert caught.value.seconds == 3600.0
    assert clock.time == sent_at  # no time was spent waiting
    clock.time += 60.0  # but the pause itself is bounded by max_pause
    assert pacer.paused_for() == 0.0
    assert await pacer.acquire(max_pause=60.0) >= sent_at + 60.0


async def test_a_spent_quota_pauses_before_the_first_429() -> None:
    clock = ManualClock()
    pacer = LocalPacer(400.0, clock=clock)
    sent_at = await pacer.acquire()
    pacer.on_accepted(sent_at, None)  # quota left
    assert pacer.paused_for() == 0.0
    pacer.on_accepted(sent_at, 0.5)  # none left, 0.5 s to the reset
    assert pacer.paused_for() == 0.5
    assert await pacer.acquire() >= sent_at + 0.5


async def test_a_pacer_without_a_rate_limit_installs_one_after_a_refusal() -> None:
    clock = ManualClock()
    pacer = LocalPacer(None, clock=clock)
    assert pacer.rate is None
    for _ in range(50):
        await pacer.acquire()
        clock.time += 0.01  # 100 a second
    pacer.on_rate_limited(clock.time, None)
    await pacer.acquire()
    assert pacer.rate == pytest.approx(0.95 * 50, rel=0.05)  # 50 went in the last second


# -- gateway styles over real HTTP (smoke tests; every style runs simulated in
# test_pacing_simulated) ------------------------------------------------------------------


GATEWAYS: dict[str, dict[str, Any]] = {
    "token bucket, whole-second body hint": {
        "rate_mode": "token_bucket",
        "rate_hint": "body",
        "rate_hint_whole_seconds": True,
    },
    "quota headers, no hint": {"rate_hint": "none", "rate_headers": True},
}


@pytest.mark.parametrize("gateway", list(GATEWAYS.values()), ids=list(GATEWAYS))
async def test_every_gateway_style_gets_every_vm_and_brings_the_rate_down(
    gateway: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hostup_async")
    window = gateway.get("rate_window", 1.0)
    limit = int(10 * window)
    vmids = range(1, 41)
    async with (
        FakeHostUp(api_key=API_KEY, rate_limit=limit, usage_log_hours=1, **gateway) as fake,
        HostUpClient(
            API_KEY, base_url=fake.url, rate_limit=1000, max_concurrency=8, timeout=10.0
        ) as client,
    ):
        results = [r async for r in client.stream_vms(vmids, usage_log=False)]
        rate = client.effective_rate_limit
    assert sorted(r.vmid for r in results if r.ok) == list(vmids)
    refused = fake.stats.by_status[429]
    assert fake.stats.requests == len(vmids) + refused == client.stats.requests
    assert client.stats.rate_limited == refused
    # 40 VMs cannot pass a limit of 10 a second at 1,000 a second: the server pushed back
    # (a 429, or a quota header saying none is left) and the rate came down from 1,000.
    assert any("rate lowered" in r.getMessage() for r in caplog.records)
    assert rate is not None and rate < 1000


async def test_a_hint_beyond_max_retry_after_ends_the_call_and_the_stream_goes_on(
    fake: FakeHostUp,
) -> None:
    fake.inject(*[Fault.http(429, retry_after=3600)] * 3)
    async with HostUpClient(API_KEY, base_url=fake.url, rate_limit=None) as client:
        with pytest.raises(RateLimitError) as caught:
            await client.get_billing_cycle(1)
        assert caught.value.retry_after == 3600
        # The client now holds back; a call that will not wait that long ends at once.
        with pytest.raises(RateLimitError) as paused:
            await client.get_billing_cycle(2, max_retry_after=5)
        assert paused.value.retry_after is not None and paused.value.retry_after > 3000
        results = await client.fetch_vms([3, 4, 5], details=False, billing_cycle=True)
    assert [type(r.error) for r in results] == [RateLimitError] * 3
    assert fake.stats.requests == 1  # nobody knocked while the server had said to wait


async def test_client_wide_pause_wakes_requests_spread_out_never_early(fake: FakeHostUp) -> None:
    fake.inject(Fault.http(429, retry_after=0.3), vmid=1)
    refused = RefusalSeen()

    async with HostUpClient(
        API_KEY, base_url=fake.url, rate_limit=None, on_attempt=refused
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


@pytest.mark.parametrize(
    ("sends", "over"),
    [(5, 0.05), (4, 1.0), (40, 1.0)],
    ids=["a stray 429 on the 6th request", "a caller at 4 req/s", "a caller at 40 req/s"],
)
def test_a_thin_sample_backs_off_from_the_rate_in_force_and_is_back_within_seconds(
    sends: int, over: float
) -> None:
    policy = AdaptiveRate(100.0)
    sent(policy, sends, 100.0 - over, 100.0)
    decision = policy.on_refused(100.0, 100.0, 1.0)
    assert decision.thin
    assert decision.rate == pytest.approx(ADAPTIVE_THIN_BACKOFF * 100.0)
    assert policy.rate_at(101.0 + ADAPTIVE_RECOVER) == 100.0


def test_the_measure_counts_refusals_in_whatever_order_they_arrive() -> None:
    log = _Log()
    for t in (99.99, 99.5, 99.97, 98.0, 99.95):  # a late answer for an early send
        log.add(t)
    assert log.count(99.0, 100.0) == 4
    assert log.count(99.5, 99.97) == 2
    assert log.count(99.5, 99.97, including=True) == 3
    assert log.first_from(99.6) == 99.95


def test_the_pause_and_its_curve_are_bounded_by_max_pause() -> None:
    policy = AdaptiveRate(100.0, plateau=10.0, max_pause=5.0)
    sent(policy, 100, 99.0, 100.0)
    decision = policy.on_refused(100.0, 100.0, 20.0)  # 100 in a 21 s window: 4.76 a second
    assert (decision.pause, decision.asked) == (5.0, 20.0)
    assert decision.rate == pytest.approx(0.95 * 100 / 21)
    # The curve starts when the bounded pause ends (at 105), not the asked one (at 120):
    # back at the resting rate when the climb back ends (at so low a rate the rest before
    # the probe is short).
    rested = policy.rate_at(105.0 + ADAPTIVE_RECOVER)
    assert rested == pytest.approx(0.99 * 100 / 21)


async def test_a_long_ask_is_forgotten_once_the_server_takes_requests_again() -> None:
    clock = ManualClock()
    pacer = LocalPacer(None, clock=clock, max_pause=2.0)
    sent_at = await pacer.acquire()
    pacer.on_rate_limited(sent_at, 3600.0)
    assert pacer.paused_for() == 3600.0  # what the server asked, while the pause lasts
    clock.time += 2.0  # the bounded pause is over
    sent_at = await pacer.acquire(max_pause=2.0)
    pacer.on_accepted(sent_at, None)
    pacer.on_rate_limited(sent_at, 1.0)  # a short pause later on
    assert pacer.paused_for() == pytest.approx(1.0)
    assert await pacer.acquire(max_pause=2.0) >= sent_at + 1.0


async def test_calls_sitting_out_a_pause_hold_no_slot_a_bounded_call_needs(
    fake: FakeHostUp,
) -> None:
    fake.inject(Fault.http(429, retry_after=30), vmid=1)
    refused = RefusalSeen()

    async with HostUpClient(
        API_KEY, base_url=fake.url, rate_limit=None, max_concurrency=2, on_attempt=refused
    ) as client:
        waiting = [asyncio.create_task(client.get_billing_cycle(1))]
        await refused.wait()  # vmid 1 got the 429: every call now sits out 30 s
        waiting += [asyncio.create_task(client.get_billing_cycle(v)) for v in (2, 3)]
        with pytest.raises(RateLimitError, match="max_retry_after"):
            await client.get_billing_cycle(4, max_retry_after=1)
    ended = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(e, ClientClosedError) for e in ended)
    assert fake.stats.requests == 1


async def test_an_answer_to_a_request_sent_before_the_pause_keeps_the_long_ask() -> None:
    clock = ManualClock()
    pacer = LocalPacer(None, clock=clock, max_pause=60.0)
    early = await pacer.acquire()
    refused = await pacer.acquire()
    pacer.on_rate_limited(refused, 3600.0)
    pacer.on_accepted(early)  # in flight when the 429 came: says nothing of the pause
    assert pacer.paused_for() == 3600.0
    with pytest.raises(PauseTooLong):
        await pacer.acquire(max_pause=60.0)


def test_the_pause_is_one_value_for_every_waiter() -> None:
    pause = Pause(max_pause=60.0)
    assert pause.start(100.0, 3600.0) == 60.0  # bounded by max_pause
    assert pause.left(100.0) == 3600.0  # what the server asked, while it lasts
    with pytest.raises(PauseTooLong):
        pause.wait(100.0, max_wait=60.0)
    assert pause.wait(100.0, max_wait=math.inf) >= 60.0  # a caller that will wait: all of it
    assert pause.left(160.0) == 0.0  # over once the bounded pause is
    assert pause.start(170.0, 0.5) == 0.5  # a new pause: the old ask is gone
    assert pause.left(170.0) == 0.5
