from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import aiohttp
import pytest

from hostup_async import (
    AttemptEvent,
    AuthenticationError,
    BillingCycle,
    ClientClosedError,
    ConfigurationError,
    HostUpClient,
    HostUpError,
    NotFoundError,
    PermissionDeniedError,
    VMDetails,
    VMResult,
    __version__,
)
from hostup_async.testing import FakeHostUp, Fault

from .conftest import API_KEY, eventually, run_apart


async def test_get_vm_details_over_real_http(client: HostUpClient, fake: FakeHostUp) -> None:
    vm = await client.get_vm_details(10415)
    assert isinstance(vm, VMDetails)
    assert vm.hostname == "vm10415.example.net"
    assert len(vm.usage_log) == 24
    assert vm.request_id
    assert fake.stats.recent[-1].path == "/api/vm/10415/details"


async def test_get_billing_cycle_over_real_http(client: HostUpClient, fake: FakeHostUp) -> None:
    bc = await client.get_billing_cycle(10001)
    assert isinstance(bc, BillingCycle)
    assert [c.id for c in bc.cycles] == ["m", "a"]
    assert bc.request_id
    assert fake.stats.recent[-1].path == "/api/vm/10001/billing-cycle"


async def test_sends_key_accept_and_user_agent(client: HostUpClient, fake: FakeHostUp) -> None:
    await client.get_billing_cycle(1)
    headers = fake.stats.recent[-1].headers
    assert headers["X-API-Key"] == "<valid>"
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"] == f"hostup-async/{__version__}"


async def test_a_callers_session_sends_our_headers_over_its_own(fake: FakeHostUp) -> None:
    own = {"User-Agent": "their-app/2", "Accept": "text/html", "X-Trace": "abc"}
    async with aiohttp.ClientSession(headers=own) as session:
        async with HostUpClient(API_KEY, base_url=fake.url, session=session) as client:
            await client.get_vm_details(1)
    headers = fake.stats.recent[-1].headers
    assert headers["X-API-Key"] == "<valid>"
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"] == f"their-app/2 hostup-async/{__version__}"  # theirs kept
    assert headers["X-Trace"] == "abc"  # the session's other defaults still go out


async def test_usage_log_false_skips_the_log(client: HostUpClient) -> None:
    vm = await client.get_vm_details(5, usage_log=False)
    assert vm.usage_log == {} and vm.hostname == "vm5.example.net"


@pytest.mark.parametrize(("vmid", "error"), [(403, PermissionDeniedError), (404, NotFoundError)])
async def test_error_statuses_map_to_typed_errors_with_request_id(
    client: HostUpClient, fake: FakeHostUp, vmid: int, error: type[HostUpError]
) -> None:
    with pytest.raises(error) as info:
        await client.get_vm_details(vmid)
    assert info.value.status == vmid  # type: ignore[attr-defined]
    assert info.value.request_id  # type: ignore[attr-defined]
    assert info.value.code in {"FORBIDDEN", "NOT_FOUND"}  # type: ignore[attr-defined]
    assert fake.stats.requests == 1, "4xx must never be retried"


async def test_wrong_key_is_authentication_error_without_retry(fake: FakeHostUp) -> None:
    async with HostUpClient("wrong-key", base_url=fake.url) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.get_billing_cycle(1)
    assert info.value.code == "UNAUTHORIZED"
    assert "wrong-key" not in str(info.value) + repr(info.value)
    assert fake.stats.requests == 1


async def test_key_falls_back_to_environment(
    fake: FakeHostUp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTUP_API_KEY", API_KEY)
    async with HostUpClient(base_url=fake.url) as client:
        await client.get_billing_cycle(1)
    assert fake.stats.recent[-1].headers["X-API-Key"] == "<valid>"


def test_missing_key_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTUP_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="HOSTUP_API_KEY"):
        HostUpClient()


def test_repr_never_shows_the_key() -> None:
    client = HostUpClient("very-secret-key")
    assert "very-secret-key" not in repr(client) + str(client) + repr(vars(client))


@pytest.mark.parametrize(
    ("vmid", "error"),
    [
        ("1", TypeError),
        (1.0, TypeError),
        (True, TypeError),
        (None, TypeError),
        (0, ValueError),
        (-5, ValueError),
    ],
)
async def test_bad_vmid_fails_before_any_io(
    client: HostUpClient, fake: FakeHostUp, vmid: Any, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        await client.get_vm_details(vmid)
    assert isinstance(info.value, HostUpError)
    with pytest.raises(error):
        await client.get_billing_cycle(vmid)
    assert fake.stats.requests == 0


async def test_callers_session_is_used_and_left_open(fake: FakeHostUp) -> None:
    async with aiohttp.ClientSession() as session:
        async with HostUpClient(API_KEY, base_url=fake.url, session=session) as client:
            await client.get_billing_cycle(2)
        assert not session.closed
        assert fake.stats.recent[-1].headers["X-API-Key"] == "<valid>"


async def test_client_opens_lazily_and_closes_twice_safely(fake: FakeHostUp) -> None:
    client = HostUpClient(API_KEY, base_url=fake.url)
    await client.get_billing_cycle(2)
    await client.aclose()
    await client.aclose()
    assert client.closed
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_billing_cycle(2)


async def test_no_unclosed_session_when_cancelled_mid_request(fake: FakeHostUp) -> None:
    fake.latency = 5.0
    async with HostUpClient(API_KEY, base_url=fake.url) as client:
        task = asyncio.create_task(client.get_vm_details(1))
        await eventually(lambda: fake.stats.requests == 1)  # the request is at the server
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_no_unclosed_session_when_body_raises(fake: FakeHostUp) -> None:
    with pytest.raises(NotFoundError):
        async with HostUpClient(API_KEY, base_url=fake.url) as client:
            await client.get_vm_details(404)


async def test_debug_log_per_attempt_without_the_key(
    client: HostUpClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hostup_async")
    vm = await client.get_vm_details(9)
    records = [r for r in caplog.records if r.name == "hostup_async.http"]
    lines = [r.getMessage() for r in records]
    assert len(lines) == 1
    assert "GET /vm/9/details -> 200" in lines[0]
    # The facts ride along as fields, for JSON formatters.
    facts = {k: getattr(records[0], k, None) for k in ("vmid", "attempt", "status", "request_id")}
    assert facts == {"vmid": 9, "attempt": 1, "status": 200, "request_id": vm.request_id}
    assert "attempt 1" in lines[0]
    assert str(vm.request_id) in lines[0]
    assert all(API_KEY not in line for line in caplog.text.splitlines())
    assert vm.details is not None and vm.details.password is not None
    assert vm.details.password.get_secret_value() not in caplog.text


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"rate_limit": 0}, ConfigurationError),
        ({"rate_limit": -1.0}, ConfigurationError),
        ({"max_concurrency": 0}, ConfigurationError),
        ({"timeout": 0}, ConfigurationError),
        ({"timeout": float("nan")}, ConfigurationError),
        ({"max_retries": -1}, ConfigurationError),
        ({"base_url": "ftp://x"}, ConfigurationError),
        ({"base_url": "cloud.hostup.se"}, ConfigurationError),
        ({"rate_limit": "10"}, TypeError),
        ({"max_retries": 1.5}, TypeError),
        ({"session": object()}, TypeError),
        ({"api_key": "abc\r\nX-Evil: 1"}, ConfigurationError),
        ({"api_key": ""}, ConfigurationError),
        ({"api_key": 123}, TypeError),
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any], error: type[Exception]) -> None:
    kwargs: dict[str, Any] = {"api_key": "k", **options}
    with pytest.raises(error) as info:
        HostUpClient(**kwargs)
    (name,) = options
    assert name in str(info.value)  # the message says which option is wrong


@pytest.mark.parametrize(
    "key", ["abc-secret\r\nX-Evil: 1", " padded-secret ", "non-\u00e4scii-secret"]
)
def test_a_refused_key_is_not_echoed(key: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        HostUpClient(key)
    assert "secret" not in str(info.value) + repr(info.value)


async def test_bad_per_call_overrides_fail_before_io(
    client: HostUpClient, fake: FakeHostUp
) -> None:
    with pytest.raises(ConfigurationError):
        await client.get_vm_details(1, timeout=-1)
    with pytest.raises(ConfigurationError):
        await client.get_billing_cycle(1, max_retries=-1)
    assert fake.stats.requests == 0


async def test_rate_limit_none_turns_limiting_off(fake: FakeHostUp) -> None:
    async with HostUpClient(API_KEY, base_url=fake.url, rate_limit=None) as client:
        await client.fetch_vms(range(1, 201), usage_log=False)
    # 200 requests at once, and not one of them waited for a rate limiter.
    assert client.stats.requests == 200
    assert client.stats.throttle_wait == 0


async def test_closing_the_client_ends_calls_in_flight_with_a_hostup_error(
    fake: FakeHostUp,
) -> None:
    fake.latency = 5.0  # answers come after the close, however slowly this machine runs
    client = HostUpClient(API_KEY, base_url=fake.url, rate_limit=None, max_concurrency=4)
    single = asyncio.create_task(client.get_vm_details(1))

    async def consume() -> list[VMResult]:
        return [r async for r in client.stream_vms(itertools.count(2))]

    bulk = asyncio.create_task(consume())
    await eventually(lambda: fake.stats.in_flight >= 2)  # both are at the server, unanswered
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await single
    with pytest.raises(ClientClosedError):
        await bulk  # the stream stops rather than fail every remaining item, even endless ones


async def test_a_callers_closed_session_is_a_clear_error(fake: FakeHostUp) -> None:
    session = aiohttp.ClientSession()
    await session.close()
    async with HostUpClient(API_KEY, base_url=fake.url, session=session) as client:
        with pytest.raises(ClientClosedError, match="aiohttp session"):
            await client.get_vm_details(1)
    assert fake.stats.requests == 0


def test_one_client_per_event_loop() -> None:
    client = HostUpClient(API_KEY, base_url="http://127.0.0.1:9/api", rate_limit=None)

    async def use() -> None:
        with pytest.raises(HostUpError):  # port 9 answers nothing: a typed transport failure
            await client.get_vm_details(1, max_retries=0, timeout=5)

    run_apart(use())

    async def again() -> None:
        with pytest.raises(RuntimeError, match="one client per event loop"):
            await client.get_vm_details(1)
        await client.aclose()

    run_apart(again())


@pytest.mark.parametrize("waiting_in", ["retry backoff", "429 pause"])
async def test_closing_wakes_calls_that_wait_to_retry_or_for_a_pause(
    fake: FakeHostUp, waiting_in: str
) -> None:
    fake.inject(Fault.http(429, retry_after=60))  # a minute's wait, far past this test
    refusal = asyncio.Event()

    def on_attempt(event: AttemptEvent) -> None:
        if event.status == 429:
            refusal.set()  # reported after the client paused, just before vmid 1 backs off

    client = HostUpClient(API_KEY, base_url=fake.url, rate_limit=None, on_attempt=on_attempt)
    refused = asyncio.create_task(client.get_vm_details(1))
    await asyncio.wait_for(refusal.wait(), timeout=10)
    waiting = (
        refused if waiting_in == "retry backoff" else asyncio.create_task(client.get_vm_details(2))
    )
    for _ in range(5):  # a few loop turns, no clock: vmid 2 starts and finds the pause
        await asyncio.sleep(0)
    assert fake.stats.requests == 1  # vmid 2 is held, not sent
    await client.aclose()
    # A hang guard, not a timing figure: without the wake-up this would wait a minute.
    with pytest.raises(ClientClosedError):
        await asyncio.wait_for(waiting, timeout=10)
    if waiting is not refused:
        with pytest.raises(ClientClosedError):
            await asyncio.wait_for(refused, timeout=10)


def test_effective_rate_limit_reads_outside_an_event_loop() -> None:
    # A notebook cell or a script reads the property from synchronous code.
    client = HostUpClient("k", rate_limit=25)
    assert client.effective_rate_limit == 25
    assert HostUpClient("k", rate_limit=None).effective_rate_limit is None
