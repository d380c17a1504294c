from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostup_async import (
    APIError,
    AttemptEvent,
    Backoff,
    DecodeError,
    GatewayTimeoutError,
    HostUpClient,
    RateLimitError,
    RequestTimeoutError,
    RetryBudget,
    RetryBudgetExhaustedError,
    ServerError,
    TransportError,
)
from hostup_async._http.hints import parse_retry_after
from hostup_async._pacing.pause import pause_spread
from hostup_async.testing import FakeHostUp, Fault

from .conftest import API_KEY

FAST = {"rate_limit": None, "timeout": 2.0}


def fast_client(fake: FakeHostUp, **options: object) -> HostUpClient:
    return HostUpClient(API_KEY, base_url=fake.url, **{**FAST, **options})  # type: ignore[arg-type]


# -- pure policy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "header", "expected"),
    [
        ("3", None, 3.0),
        (None, "7", 7.0),
        ("2.5", "9", 2.5),
        (4, None, 4.0),
        ("soon", "1", 1.0),
        (None, None, None),
        ("-3", None, 0.0),
        ("nan", None, None),
        ("99999", None, 3600.0),
        (None, "Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        (True, None, None),
    ],
)
def test_parse_retry_after(body: object, header: str | None, expected: float | None) -> None:
    assert parse_retry_after(body, header) == expected


def test_parse_retry_after_reads_http_dates() -> None:
    assert parse_retry_after(None, "Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0


@given(st.integers(min_value=1, max_value=100), st.floats(min_value=0, max_value=0.999999))
def test_backoff_is_full_jitter_under_a_growing_cap(retry: int, r: float) -> None:
    delay = Backoff(0.5, 20.0, random=lambda: r).delay(retry)
    assert 0 <= delay < min(20.0, 0.5 * 2 ** (retry - 1)) or delay == 0


@given(
    st.integers(min_value=1, max_value=10),
    st.floats(min_value=0, max_value=600),
    st.floats(min_value=0, max_value=0.999999),
)
def test_server_wait_is_a_floor_with_jitter_after_it(retry: int, wait: float, r: float) -> None:
    delay = Backoff(random=lambda: r).delay(retry, wait)
    assert delay >= wait
    assert delay <= wait + 20.0


def test_backoff_defaults_and_checks() -> None:
    assert repr(Backoff()) == "Backoff(base=0.5, cap=20.0)"
    assert Backoff(1.0, 4.0, random=lambda: 0.5).delay(1) == 0.5
    assert Backoff(1.0, 4.0, random=lambda: 0.5).delay(5) == 2.0  # capped at 4 s
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="zero or more"):
            Backoff(bad)
    with pytest.raises(TypeError, match="number of seconds"):
        Backoff(cap="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        Backoff(random=0.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a Backoff"):
        HostUpClient(API_KEY, backoff=0.1)  # type: ignore[arg-type]


def test_pause_spread_is_a_capped_share_of_the_pause() -> None:
    assert pause_spread(0.0) == 0.0
    assert pause_spread(-1.0) == 0.0
    assert pause_spread(0.5) == pytest.approx(0.1)
    assert pause_spread(3600.0) == 2.0


def test_retry_budget_spends_refunds_and_refills() -> None:
    budget = RetryBudget(10, retry_cost=5, timeout_cost=10)
    assert budget.try_spend(5) and budget.try_spend(5)
    assert not budget.try_spend(5)
    budget.on_success(5)  # a retry that succeeded gives its tokens back
    assert budget.tokens == 5
    budget.on_success(0)  # a first-try success adds one
    assert budget.tokens == 6
    for _ in range(20):
        budget.on_success(0)
    assert budget.tokens == 10
    with pytest.raises(ValueError, match="zero or more"):
        RetryBudget(-1)


# -- retries over real HTTP ----------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault.http(502),
        Fault.http(503),
        Fault.http(504),
        Fault.http(500),
        Fault.http(502, html=True),
        Fault.http(429, retry_after=0.05),
        Fault.drop(),
        Fault.truncate(),
        Fault.malformed(),
    ],
    ids=str,
)
async def test_transient_faults_are_retried(fake: FakeHostUp, fault: Fault) -> None:
    fake.inject(fault, fault)
    async with fast_client(fake) as client:
        vm = await client.get_vm_details(12)
    assert vm.hostname == "vm12.example.net"
    assert fake.stats.requests == 3
    # aiohttp itself resends once when a reused keep-alive connection turns out dead.
    assert client.stats.retries == (1 if fault.kind == "drop" else 2)


async def test_timeouts_are_retried_and_surface_typed(fake: FakeHostUp) -> None:
    # The slow answers take far longer than the timeout, and the timeout is far longer than
    # a prompt answer takes even on a busy machine.
    fake.inject(Fault.slow(5.0))
    async with fast_client(fake) as client:
        vm = await client.get_billing_cycle(3, timeout=1.0)
        assert vm.current
        fake.inject(*[Fault.slow(5.0)] * 2)
        # A timeout is a transport failure to code that catches those.
        with pytest.raises(TransportError) as info:
            await client.get_billing_cycle(3, timeout=1.0, max_retries=1)
    assert type(info.value) is RequestTimeoutError
    assert "1 s timeout" in str(info.value)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.http(504), GatewayTimeoutError),
        (Fault.http(502, html=True), ServerError),
        (Fault.drop(), TransportError),
        (Fault.malformed(), DecodeError),
        (Fault.http(429, retry_after=0.01), RateLimitError),
    ],
    ids=str,
)
async def test_exhausted_retries_surface_the_last_error(
    fake: FakeHostUp, fault: Fault, error: type[Exception]
) -> None:
    fake.inject(*[fault] * 6)
    async with fast_client(fake, max_retries=2) as client:
        with pytest.raises(error):
            await client.get_vm_details(1)
    assert client.stats.requests == 3


async def test_html_error_page_maps_by_status_and_keeps_text(fake: FakeHostUp) -> None:
    fake.inject(Fault.http(502, html=True))
    async with fast_client(fake, max_retries=0) as client:
        with pytest.raises(ServerError) as info:
            await client.get_vm_details(1)
    assert info.value.status == 502
    assert "nginx" in info.value.body


async def test_rate_limit_error_carries_retry_after(fake: FakeHostUp) -> None:
    fake.inject(Fault.http(429, retry_after=0.25))
    async with fast_client(fake, max_retries=0) as client:
        with pytest.raises(RateLimitError) as info:
            await client.get_vm_details(1)
    assert info.value.retry_after == 0.25
    assert info.value.request_id


async def test_unsuccessful_200_is_not_retried(fake: FakeHostUp) -> None:
    fake.inject(Fault.unsuccessful())
    async with fast_client(fake) as client:
        with pytest.raises(APIError) as info:
            await client.get_vm_details(1)
    assert info.value.code == "OPERATION_FAILED"
    assert fake.stats.requests == 1


async def test_server_wait_is_honoured_as_a_floor(fake: FakeHostUp) -> None:
    fake.inject(Fault.http(429, retry_after=0.4))
    async with fast_client(fake) as client:
        await client.get_billing_cycle(1)
    first, second = list(fake.stats.recent)
    assert second.at - first.at >= 0.4


async def test_a_429_pauses_the_whole_client(fake: FakeHostUp) -> None:
    fake.inject(Fault.http(429, retry_after=0.5), vmid=1)
    refusal = asyncio.Event()

    def on_attempt(event: AttemptEvent) -> None:
        if event.status == 429:
            refusal.set()  # reported once the client has paused

    async with fast_client(fake, on_attempt=on_attempt) as client:
        first = asyncio.create_task(client.get_billing_cycle(1))
        await asyncio.wait_for(refusal.wait(), timeout=10)  # vmid 2 must now wait too
        await client.get_billing_cycle(2)
        await first
    by_path = {r.path: r.at for r in fake.stats.recent}
    times = [r.at for r in fake.stats.recent]
    assert by_path["/api/vm/2/billing-cycle"] - times[0] >= 0.5


async def test_on_retry_and_on_attempt_hooks(fake: FakeHostUp) -> None:
    retries: list[AttemptEvent] = []
    attempts: list[AttemptEvent] = []
    fake.inject(Fault.http(503), Fault.truncate())
    async with fast_client(fake, on_retry=retries.append, on_attempt=attempts.append) as client:
        await client.get_vm_details(4)
    assert [(e.attempt, e.status) for e in retries] == [(1, 503), (2, None)]
    assert isinstance(retries[1].error, TransportError)
    assert all(e.retry_in is not None and e.retry_in >= 0 for e in retries)
    assert [e.status for e in attempts] == [503, None, 200]
    assert attempts[-1].retry_in is None and attempts[-1].request_id


async def test_the_clients_backoff_sets_the_wait_before_each_retry(fake: FakeHostUp) -> None:
    retries: list[AttemptEvent] = []
    fake.inject(Fault.http(503), Fault.http(500), Fault.http(502))
    backoff = Backoff(0.004, 0.01, random=lambda: 0.5)
    async with fast_client(fake, backoff=backoff, on_retry=retries.append) as client:
        assert client.backoff is backoff
        await client.get_vm_details(4)
    # Ceilings 0.004, 0.008, then capped at 0.01; each draw is half its ceiling.
    assert [e.retry_in for e in retries] == [0.002, 0.004, 0.005]


async def test_retry_budget_fails_fast_under_sustained_failure_and_recovers(
    fake: FakeHostUp,
) -> None:
    fake.inject(*[Fault.http(503)] * 3)
    budget = RetryBudget(10, retry_cost=5)
    async with fast_client(fake, retry_budget=budget, max_retries=5) as client:
        with pytest.raises(RetryBudgetExhaustedError) as info:
            await client.get_vm_details(1)
        assert isinstance(info.value.last_error, ServerError)
        assert fake.stats.requests == 3  # two retries spent the budget; the third is refused
        fake.inject(Fault.http(503))
        with pytest.raises(RetryBudgetExhaustedError):
            await client.get_vm_details(1)  # still empty: no retry at all
        assert fake.stats.requests == 4
        for _ in range(5):
            await client.get_vm_details(1)
        assert budget.tokens == 5
        fake.inject(Fault.http(503))
        await client.get_vm_details(1)  # refilled by successes: retried again
        assert fake.stats.requests == 11
