"""Bad input fails before any I/O; secrets never leak; cancellation leaves nothing behind."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
from typing import Any

import pytest

from hostup_async import (
    ConfigurationError,
    HostUpClient,
    HostUpError,
    InvalidVMIDError,
    NotFoundError,
    RetryBudget,
    VMDetails,
    decode_vm_details,
)
from hostup_async.testing import FakeHostUp, Fault, FaultPlan

from .conftest import API_KEY, client_tasks

# -- bad input: a clear error before any I/O --------------------------------------------

BAD_OPTIONS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"api_key": "key\r\nX-Injected: 1"}, ConfigurationError, "control characters"),
    ({"api_key": "key\n"}, ConfigurationError, "control characters"),
    ({"api_key": "key\x00"}, ConfigurationError, "control characters"),
    ({"api_key": "key\x01"}, ConfigurationError, "control characters"),
    ({"api_key": "key\x7f"}, ConfigurationError, "control characters"),
    ({"api_key": "kéy"}, ConfigurationError, "non-ASCII"),
    ({"api_key": " key"}, ConfigurationError, "whitespace"),
    ({"api_key": "   "}, ConfigurationError, "no API key"),
    ({"api_key": b"key"}, TypeError, "api_key"),
    ({"base_url": "ftp://cloud.hostup.se/api"}, ConfigurationError, "http"),
    ({"base_url": "file:///etc/passwd"}, ConfigurationError, "http"),
    ({"base_url": "cloud.hostup.se/api"}, ConfigurationError, "http"),
    ({"base_url": "http://"}, ConfigurationError, "http"),
    ({"base_url": "http://a.example/\r\nHost: evil"}, ConfigurationError, "base_url"),
    ({"base_url": b"https://x.example/api"}, TypeError, "base_url"),  # None: $HOSTUP_BASE_URL
    ({"base_url": "https://user:pw@x.example/api"}, ConfigurationError, "credentials"),
    ({"base_url": "https://x.example/api?v=1"}, ConfigurationError, "query"),
    ({"base_url": "https://x.example/api#top"}, ConfigurationError, "fragment"),
    ({"base_url": "https://x.example:99999/api"}, ConfigurationError, "port"),
    ({"base_url": "https://x.example/\tapi"}, ConfigurationError, "control"),
    ({"on_retry": 5}, TypeError, "on_retry"),
    ({"on_attempt": "log"}, TypeError, "on_attempt"),
    ({"rate_limit": 0}, ConfigurationError, "rate_limit"),
    ({"rate_limit": -5}, ConfigurationError, "rate_limit"),
    ({"rate_limit": float("inf")}, ConfigurationError, "rate_limit"),
    ({"rate_limit": float("nan")}, ConfigurationError, "rate_limit"),
    ({"rate_limit": "10"}, TypeError, "rate_limit"),
    ({"max_concurrency": 0}, ConfigurationError, "max_concurrency"),
    ({"max_concurrency": -1}, ConfigurationError, "max_concurrency"),
    ({"max_concurrency": 2.5}, TypeError, "max_concurrency"),
    ({"timeout": 0}, ConfigurationError, "timeout"),
    ({"timeout": -1.0}, ConfigurationError, "timeout"),
    ({"timeout": float("inf")}, ConfigurationError, "timeout"),
    ({"timeout": None}, TypeError, "timeout"),
    ({"max_retries": -1}, ConfigurationError, "max_retries"),
    ({"max_retries": True}, TypeError, "max_retries"),
    ({"retry_budget": 500}, TypeError, "retry_budget"),
    ({"session": "a session"}, TypeError, "session"),
]


@pytest.mark.parametrize(("options", "error", "says"), BAD_OPTIONS)
async def test_bad_client_options_fail_at_construction(
    fake: FakeHostUp, options: dict[str, Any], error: type[Exception], says: str
) -> None:
    kwargs: dict[str, Any] = {"api_key": API_KEY, "base_url": fake.url, **options}
    with pytest.raises(error, match=says) as info:
        HostUpClient(**kwargs)
    assert "X-Injected" not in str(info.value)  # the key is never echoed
    assert fake.stats.requests == 0


def test_a_bad_key_from_the_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTUP_API_KEY", "env-key\r\n")
    with pytest.raises(ConfigurationError, match="HOSTUP_API_KEY") as info:
        HostUpClient()
    assert "env-key" not in str(info.value)


BAD_VMIDS: list[Any] = [0, -1, -(2**63), "7", 7.0, True, None, b"7", [7]]
BAD_CALL_OPTIONS: list[dict[str, Any]] = [
    {"timeout": 0},
    {"timeout": -0.5},
    {"timeout": float("nan")},
    {"timeout": "1"},
    {"max_retries": -1},
    {"max_retries": 1.0},
]


@pytest.mark.parametrize("vmid", BAD_VMIDS, ids=repr)
async def test_bad_vmids_fail_before_io_on_every_entry_point(
    fake: FakeHostUp, client: HostUpClient, vmid: Any
) -> None:
    with pytest.raises(InvalidVMIDError, match="vmid"):
        await client.get_vm_details(vmid)
    with pytest.raises(InvalidVMIDError, match="vmid"):
        await client.get_billing_cycle(vmid)
    # The bulk calls report a bad item as that item's error and never send it.
    [result] = await client.fetch_vms([vmid], billing_cycle=True)
    assert isinstance(result.error, InvalidVMIDError) and result.vmid is vmid
    [streamed] = [r async for r in client.stream_vms([vmid])]
    assert isinstance(streamed.error, InvalidVMIDError)
    assert fake.stats.requests == 0


@pytest.mark.parametrize("options", BAD_CALL_OPTIONS, ids=repr)
async def test_bad_per_call_options_fail_before_io(
    fake: FakeHostUp, client: HostUpClient, options: dict[str, Any]
) -> None:
    with pytest.raises((ConfigurationError, TypeError)) as info:
        await client.get_vm_details(1, **options)
    assert isinstance(info.value, (HostUpError, TypeError))
    assert next(iter(options)) in str(info.value)
    with pytest.raises((ConfigurationError, TypeError)):
        await client.get_billing_cycle(1, **options)
    assert fake.stats.requests == 0


@pytest.mark.parametrize(
    ("vmids", "options", "error"),
    [
        (7, {}, TypeError),
        ("1,2,3", {}, TypeError),
        (b"123", {}, TypeError),
        (None, {}, TypeError),
        ([1, 2], {"details": False, "billing_cycle": False}, ConfigurationError),
        ([1, 2], {"usage_log": "x"}, TypeError),
        ([1, 2], {"details": 1}, TypeError),
        ([1, 2], {"progress": 5}, TypeError),
    ],
)
async def test_bad_bulk_arguments_fail_before_io(
    fake: FakeHostUp, client: HostUpClient, vmids: Any, options: dict[str, Any], error: type
) -> None:
    with pytest.raises(error):
        await client.fetch_vms(vmids, **options)
    with pytest.raises(error):
        client.stream_vms(vmids, **options)
    assert fake.stats.requests == 0


@pytest.mark.parametrize(
    "options", [{"capacity": -1}, {"retry_cost": -5}, {"timeout_cost": -1}], ids=repr
)
def test_bad_retry_budget(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="zero or more"):
        RetryBudget(**options)


# -- secrets never leak -------------------------------------------------------------------


async def test_secrets_stay_out_of_logs_reprs_and_errors(caplog: pytest.LogCaptureFixture) -> None:
    """DEBUG everywhere, every kind of fault, an echoing proxy: no key and no VM password shows."""
    caplog.set_level(logging.DEBUG)
    plan = FaultPlan(seed=21, flaky=0.3, forbidden=0.1, unsuccessful=0.05, slow_delay=0.3)
    echo = f"<html>upstream rejected X-API-Key: {API_KEY}</html>".encode()
    seen: list[str] = []
    async with FakeHostUp(api_key=API_KEY, faults=plan, usage_log_hours=1) as fake:
        fake.inject(Fault.custom(echo, status=502, headers={"Content-Type": "text/html"}), vmid=1)
        fake.inject(
            Fault.custom(f'{{"success": false, "message": "bad key {API_KEY}"}}'.encode()),
            vmid=2,
        )
        error_body = f'{{"error": "Forbidden", "message": "key {API_KEY} may not", "code": "X"}}'
        fake.inject(Fault.custom(error_body.encode(), status=403), vmid=3)
        async with HostUpClient(
            API_KEY,
            base_url=fake.url,
            rate_limit=None,
            timeout=0.15,
            max_retries=2,
            on_attempt=lambda e: seen.append(repr(e) + str(e.error)),
        ) as client:
            results = await client.fetch_vms(range(1, 61), billing_cycle=True)
            seen += [repr(client), str(client), repr(client.stats)]
        async with HostUpClient("wrong-but-secret", base_url=fake.url) as wrong:
            [denied] = await wrong.fetch_vms([5])
            seen += [repr(denied), str(denied.error), repr(denied.error)]
        seen += [repr(r) for r in fake.stats.recent]
    passwords: list[str] = []
    for result in results:
        seen.append(repr(result))
        if result.error is not None:
            error: Any = result.error
            seen += [str(error), repr(error), repr(getattr(error, "body", None))]
            seen += [str(getattr(error, "last_error", ""))]
        if result.details is not None:
            vm: VMDetails = result.details
            seen += [repr(vm), str(vm), repr(vm.details)]
            assert vm.details is not None and vm.details.password is not None
            passwords.append(vm.details.password.get_secret_value())
            passwords.append(vm.details.rootpassword.get_secret_value())  # type: ignore[union-attr]
    assert passwords and sum(r.ok for r in results) > 30
    assert any(not r.ok for r in results)
    text = caplog.text + "\n".join(seen)
    for secret in [API_KEY, "wrong-but-secret", *passwords]:
        assert secret not in text


# -- cancellation at random points ---------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
async def test_cancelling_a_batch_at_a_random_point_leaves_nothing_behind(seed: int) -> None:
    rng = random.Random(seed)
    plan = FaultPlan(seed=seed, flaky=0.2, latency=0.005, latency_spread=0.02, slow_delay=0.3)
    async with FakeHostUp(api_key=API_KEY, faults=plan, usage_log_hours=1) as fake:
        async with HostUpClient(
            API_KEY, base_url=fake.url, rate_limit=None, timeout=0.2, max_concurrency=8
        ) as client:
            before = client_tasks()
            if seed % 2:
                batch: asyncio.Future[Any] = asyncio.ensure_future(
                    client.fetch_vms(range(1, 200), billing_cycle=True)
                )
            else:
                batch = asyncio.gather(*(client.get_vm_details(v) for v in range(1, 200)))
            await asyncio.sleep(rng.uniform(0.0, 0.25))
            batch.cancel()
            with pytest.raises(asyncio.CancelledError):
                await batch
            await asyncio.sleep(0)
            leftovers = client_tasks() - before
            assert not leftovers, leftovers
            # The client is still usable after a cancelled batch.
            assert (await client.get_billing_cycle(3, timeout=10)).current
        assert client.closed
    gc.collect()


async def test_breaking_out_of_a_stream_cancels_what_is_in_flight() -> None:
    plan = FaultPlan(latency=0.05)
    async with FakeHostUp(api_key=API_KEY, faults=plan, usage_log_hours=1) as fake:
        async with HostUpClient(API_KEY, base_url=fake.url, rate_limit=None) as client:
            stream = client.stream_vms(range(1, 10_000))
            async for result in stream:
                assert result.ok
                break
            await stream.aclose()
            await asyncio.sleep(0)
            assert not client_tasks()
    assert fake.stats.requests < 100


@pytest.mark.parametrize("url", ["ftp://me:hunter2@x.example/api", "https://me:hunter2@x.example"])
def test_a_base_url_with_credentials_is_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ConfigurationError, match="credentials") as info:
        HostUpClient("k", base_url=url)
    assert "hunter2" not in str(info.value)


async def test_transport_errors_keep_no_reference_to_the_request_headers(
    fake: FakeHostUp, client: HostUpClient
) -> None:
    fake.inject(*[Fault.truncate()] * 4)
    with pytest.raises(HostUpError) as info:
        await client.get_vm_details(1, max_retries=0)
    chain: list[BaseException] = []
    error: BaseException | None = info.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    assert all(API_KEY not in repr(vars(e)) + repr(e.args) for e in chain)
    assert len(chain) == 1, "no aiohttp exception (with the request headers) is kept"


async def test_a_callers_raise_for_status_session_still_maps_statuses(fake: FakeHostUp) -> None:
    import aiohttp

    async with aiohttp.ClientSession(raise_for_status=True) as session:
        async with HostUpClient(API_KEY, base_url=fake.url, session=session) as client:
            with pytest.raises(NotFoundError):
                await client.get_vm_details(404)
    assert fake.stats.requests == 1


@pytest.mark.parametrize("where", ["ok", "error"])
async def test_absurdly_deep_bodies_are_hostup_errors(
    fake: FakeHostUp, client: HostUpClient, where: str
) -> None:
    # Deeper than any supported Python lets msgspec go (3.13's C recursion limit is far above
    # 3.11's, and a 3,000-deep body decodes there).
    depth = 20_000
    deep = b'{"success": true, "junk": ' + b"[" * depth + b"]" * depth + b', "data": {}}'
    fake.inject(Fault.custom(deep, status=200 if where == "ok" else 400))
    with pytest.raises(HostUpError):
        await client.get_vm_details(1, max_retries=0)
    with pytest.raises(HostUpError):
        decode_vm_details(deep)
