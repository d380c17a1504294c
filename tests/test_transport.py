"""The request path itself: slots and turns, permits that must not be lost, the whole-call deadline."""

from __future__ import annotations

import asyncio
import copy
import logging
import pickle
import time

import aiohttp
import pytest

from hostup_async import (
    Backoff,
    ClientClosedError,
    ClientStats,
    ConfigurationError,
    DeadlineExceededError,
    HostUpClient,
    NotFoundError,
    RateLimitError,
)
from hostup_async._http.answer import Answer, settle
from hostup_async._http.retry import RetryBudget
from hostup_async._http.transport import Transport
from hostup_async._models import BILLING_DECODER, unwrap
from hostup_async.testing import FakeHostUp, Fault

from .conftest import API_KEY, eventually

QUICK = Backoff(0.001, 0.01)


class ScriptedPacer:
    """A pacer driven by the test: a permit at once from ``ready``, else one ``grant`` sets."""

    def __init__(self) -> None:
        self.ready: list[float] = []
        self.grants: list[asyncio.Future[float]] = []
        self.accepted: list[float] = []
        self.asked = 0

    @property
    def rate(self) -> float | None:
        return None

    def paused_for(self) -> float:
        return 0.0

    def try_acquire(self) -> float | None:
        self.asked += 1
        return self.ready.pop(0) if self.ready else None

    async def acquire(self, max_pause: float) -> float:
        grant: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.grants.append(grant)
        try:
            return await grant
        except asyncio.CancelledError:
            if grant.done() and not grant.cancelled():
                self.ready.append(grant.result())  # the contract: kept for the next caller
            raise

    def on_accepted(self, sent_at: float, quota_wait: float | None = None) -> None:
        self.accepted.append(sent_at)

    def on_rate_limited(self, sent_at: float, retry_after: float | None) -> None:
        raise AssertionError("no 429 in these tests")

    async def aclose(self) -> None:
        pass


async def transport_for(fake: FakeHostUp, pacer: ScriptedPacer, concurrency: int) -> Transport:
    session = aiohttp.ClientSession(headers={"X-API-Key": API_KEY})
    return Transport(
        session=session,
        base_url=fake.url,
        headers=None,
        secret=API_KEY,
        pacer=pacer,
        max_concurrency=concurrency,
        budget=RetryBudget(),
        backoff=QUICK,
        stats=ClientStats(),
        on_attempt=None,
        on_retry=None,
    )


def billing(raw: bytes) -> object:
    return unwrap(BILLING_DECODER, raw)


async def get(transport: Transport, vmid: int, deadline: float | None = None) -> object:
    return await transport.get(
        f"/vm/{vmid}/billing-cycle",
        billing,
        timeout=5.0,
        max_retries=0,
        max_retry_after=60.0,
        deadline=deadline,
    )


async def test_a_call_waiting_for_its_turn_holds_no_concurrency_slot(fake: FakeHostUp) -> None:
    pacer = ScriptedPacer()
    transport = await transport_for(fake, pacer, concurrency=1)
    try:
        waiting = asyncio.create_task(get(transport, 1))  # no permit at hand: it waits
        await eventually(lambda: len(pacer.grants) == 1)
        pacer.ready.append(7.0)
        # The one slot is free for a call that may send now.
        await asyncio.wait_for(get(transport, 2), timeout=10)
        pacer.grants[0].set_result(8.0)
        await asyncio.wait_for(waiting, timeout=10)
        assert sorted(pacer.accepted) == [7.0, 8.0]
    finally:
        await transport._session.close()


async def test_a_permit_granted_as_its_waiter_is_cancelled_goes_to_the_next_call(
    fake: FakeHostUp,
) -> None:
    pacer = ScriptedPacer()
    transport = await transport_for(fake, pacer, concurrency=2)
    try:
        waiter = asyncio.create_task(get(transport, 1))
        await eventually(lambda: len(pacer.grants) == 1)
        pacer.grants[0].set_result(5.0)  # granted, and cancelled in the same turn
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.wait_for(get(transport, 2), timeout=10)
        assert len(pacer.grants) == 1  # the next call waited for no grant of its own
        assert pacer.accepted == [5.0]  # it sent in the permit that was kept
    finally:
        await transport._session.close()


async def test_closing_ends_a_call_waiting_for_its_turn_at_once(fake: FakeHostUp) -> None:
    pacer = ScriptedPacer()
    transport = await transport_for(fake, pacer, concurrency=1)
    try:
        waiting = asyncio.create_task(get(transport, 1))  # no permit comes: it would wait on
        await eventually(lambda: len(pacer.grants) == 1)
        transport.close()
        with pytest.raises(ClientClosedError):
            await asyncio.wait_for(waiting, timeout=10)  # a hang guard, not a timing figure
        assert pacer.grants[0].cancelled()  # nothing is left queued in the pacer
        assert fake.stats.requests == 0
    finally:
        await transport._session.close()


async def test_closing_as_a_waiting_calls_deadline_expires_still_closes_and_ends_every_call(
    fake: FakeHostUp,
) -> None:
    # One permit per 20 s: the first call sends at once, the next two wait for their turn.
    client = HostUpClient(API_KEY, base_url=fake.url, rate_limit=0.05)
    try:
        await client.get_billing_cycle(1)
        timed = asyncio.create_task(client.get_billing_cycle(2, deadline=0.05))
        untimed = asyncio.create_task(client.get_billing_cycle(3))
        await asyncio.sleep(0)  # both start, and wait for their turn
        # The loop is busy past the deadline (as a CPU-heavy callback would keep it), then
        # the client closes in the loop turn between the deadline's expiry and the waiting
        # call's wake-up.
        time.sleep(0.1)  # noqa: ASYNC251 (blocking on purpose: the loop is busy)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await client.aclose()  # does not raise
        # A hang guard, not a timing figure: without closing, the turns are 20 s away.
        with pytest.raises((ClientClosedError, DeadlineExceededError)):
            await asyncio.wait_for(timed, timeout=10)
        with pytest.raises(ClientClosedError):
            await asyncio.wait_for(untimed, timeout=10)
        assert fake.stats.requests == 1
    finally:
        await client.aclose()


async def test_calls_queued_for_a_slot_when_the_client_closes_end_at_once(
    fake: FakeHostUp,
) -> None:
    # One slot, held by a slow answer; one permit per 20 s.
    fake.latency = 30.0
    client = HostUpClient(API_KEY, base_url=fake.url, rate_limit=0.05, max_concurrency=1)
    try:
        calls = [asyncio.create_task(client.get_billing_cycle(vmid)) for vmid in (1, 2, 3, 4)]
        await eventually(lambda: fake.stats.requests == 1)  # the first holds the slot
        await client.aclose()
        # A hang guard, not a timing figure: each later call would otherwise wait for its
        # turn (20 s each) before finding the client closed.
        for call in calls:
            with pytest.raises(ClientClosedError):
                await asyncio.wait_for(call, timeout=10)
        assert fake.stats.requests == 1
    finally:
        await client.aclose()


async def test_a_deadline_during_a_turn_leaves_nothing_queued(fake: FakeHostUp) -> None:
    pacer = ScriptedPacer()
    transport = await transport_for(fake, pacer, concurrency=1)
    try:
        with pytest.raises(DeadlineExceededError, match="turn under the rate limit"):
            await get(transport, 1, deadline=0.05)
        await eventually(lambda: pacer.grants[0].cancelled())  # its pacer waiter is gone
        assert fake.stats.requests == 0
    finally:
        await transport._session.close()


# -- one parse per answer ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "retryable", "error"),
    [
        (200, b"<html>proxy</html>", True, "DecodeError"),
        (200, b'{"success": true, "data": {"cycles": 5}}', False, "DecodeError"),
        (200, b'{"success": false, "code": "X"}', False, "APIError"),
        (503, b"<html>busy</html>", True, "ServerError"),
        (404, b'{"error": "Not Found", "code": "NOT_FOUND"}', False, "NotFoundError"),
        (429, b'{"retryAfter": "2"}', True, "RateLimitError"),
    ],
)
def test_an_answer_is_read_once_into_an_outcome(
    status: int, body: bytes, retryable: bool, error: str
) -> None:
    outcome = settle(Answer(status, {"Retry-After": "9"}, body, 1.5), billing, None)
    assert type(outcome.error).__name__ == error
    assert outcome.retryable is retryable
    assert outcome.status == status and outcome.sent_at == 1.5
    if status == 429:
        assert outcome.server_wait == 2.0  # the body wins over the header
    elif status == 503:
        assert outcome.server_wait == 9.0


def test_a_spent_quota_is_read_from_an_accepted_answer() -> None:
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "3"}
    body = b'{"success": true, "requestId": "r1", "data": {"current": "m"}}'
    outcome = settle(Answer(200, headers, body, 0.0), billing, None)
    assert outcome.error is None and outcome.quota_wait == 3.0 and outcome.request_id == "r1"


# -- the whole-call deadline ---------------------------------------------------------------


async def test_an_overloaded_client_sheds_calls_at_their_deadline(fake: FakeHostUp) -> None:
    async with HostUpClient(
        API_KEY, base_url=fake.url, rate_limit=5.0, deadline=0.5, backoff=QUICK
    ) as client:
        results = await asyncio.gather(
            *(client.get_billing_cycle(v) for v in range(1, 41)), return_exceptions=True
        )
        shed = [r for r in results if isinstance(r, DeadlineExceededError)]
        done = [r for r in results if not isinstance(r, BaseException)]
        assert len(shed) + len(done) == 40
        assert shed and done
        # A shed call was never sent, and none is left waiting for a turn.
        assert fake.stats.requests == len(done) == client.stats.requests
        assert client._transport is not None and client._transport._waiting == 0
        assert all(e.deadline == 0.5 for e in shed)


async def test_a_429_wait_beyond_the_deadline_ends_the_call_at_once(fake: FakeHostUp) -> None:
    fake.inject(Fault.http(429, retry_after=30.0))
    async with HostUpClient(API_KEY, base_url=fake.url, rate_limit=None, backoff=QUICK) as client:
        with pytest.raises(DeadlineExceededError) as info:
            await client.get_billing_cycle(1, deadline=2.0)
        assert isinstance(info.value.last_error, RateLimitError)
        # Another call meets the client-wide pause the 429 started: it ends at once too.
        with pytest.raises(DeadlineExceededError, match="paused"):
            await client.get_billing_cycle(2, deadline=2.0)
    assert fake.stats.requests == 1
    assert isinstance(info.value, TimeoutError)  # `except TimeoutError` catches it as well


async def test_a_slow_answer_ends_at_the_deadline_not_the_timeout(fake: FakeHostUp) -> None:
    fake.inject(Fault.slow(20.0))
    async with HostUpClient(API_KEY, base_url=fake.url, rate_limit=None, timeout=30.0) as client:
        with pytest.raises(DeadlineExceededError, match="ran into the deadline"):
            await client.get_billing_cycle(1, deadline=0.3)


@pytest.mark.parametrize(("value", "error"), [(0, ConfigurationError), ("1", TypeError)])
async def test_a_bad_deadline_fails_before_any_io(
    fake: FakeHostUp, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="deadline"):
        HostUpClient(API_KEY, base_url=fake.url, deadline=value)  # type: ignore[arg-type]
    async with HostUpClient(API_KEY, base_url=fake.url) as client:
        with pytest.raises(error, match="deadline"):
            await client.get_vm_details(1, deadline=value)  # type: ignore[arg-type]
    assert fake.stats.requests == 0


# -- small fixes ---------------------------------------------------------------------------


async def test_a_client_refuses_to_be_pickled_or_copied_without_naming_the_key(
    fake: FakeHostUp,
) -> None:
    async with HostUpClient(API_KEY, base_url=fake.url) as client:
        for action in (pickle.dumps, copy.copy, copy.deepcopy):
            with pytest.raises(TypeError, match="one client per process") as info:
                action(client)
            assert API_KEY not in str(info.value)
        await client.get_billing_cycle(1)  # used: still refused the same way
        with pytest.raises(TypeError, match="one client per process"):
            pickle.dumps(client)


async def test_a_bare_404_hints_at_the_base_url(fake: FakeHostUp) -> None:
    wrong = fake.url.removesuffix("/api")
    async with HostUpClient(API_KEY, base_url=wrong, max_retries=0) as client:
        with pytest.raises(NotFoundError) as info:
            await client.get_vm_details(1)
    assert f"base URL ({wrong})" in str(info.value) and "ending in /api" in str(info.value)
    async with HostUpClient(API_KEY, base_url=fake.url) as client:
        with pytest.raises(NotFoundError) as real:
            await client.get_vm_details(404)  # HostUp's own 404: no hint
    assert "base URL" not in str(real.value)


# -- logs an operator can use --------------------------------------------------------------


async def test_a_429_pause_logs_at_info_and_giving_up_at_warning(
    fake: FakeHostUp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hostup_async")
    fake.inject(*[Fault.http(429, retry_after=0.05)] * 2)
    async with HostUpClient(
        API_KEY, base_url=fake.url, rate_limit=None, max_retries=1, backoff=QUICK
    ) as client:
        with pytest.raises(RateLimitError):
            await client.get_billing_cycle(3)
    pauses = [r for r in caplog.records if r.name == "hostup_async.pacing"]
    assert len(pauses) == 2 and all(r.levelno == logging.INFO for r in pauses)
    assert pauses[0].status == 429 and pauses[0].vmid == 3  # type: ignore[attr-defined]
    assert pauses[0].wait > 0  # type: ignore[attr-defined]
    failed = [r for r in caplog.records if r.name == "hostup_async.http"]
    assert [r.levelno for r in failed] == [logging.WARNING]
    assert failed[0].attempt == 2 and failed[0].error_type == "RateLimitError"  # type: ignore[attr-defined]
    assert "failed after 2 attempts" in failed[0].getMessage()
    assert API_KEY not in caplog.text
