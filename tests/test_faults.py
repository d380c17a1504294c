"""The fake server's fault knobs, and the client recovering from them over real HTTP."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
import msgspec
import pytest

from hostup_async import (
    APIError,
    DecodeError,
    GatewayTimeoutError,
    HostUpClient,
    HostUpError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    RetryBudget,
    RetryBudgetExhaustedError,
    ServerError,
    TransportError,
)
from hostup_async.testing import TRANSIENT_KINDS, FakeHostUp, Fault, FaultPlan, TransientKind

from .conftest import API_KEY, QUICK_BACKOFF


def client_for(fake: FakeHostUp, **options: Any) -> HostUpClient:
    settings: dict[str, Any] = {
        "rate_limit": None,
        "timeout": 2.0,
        "max_concurrency": 32,
        "backoff": QUICK_BACKOFF,
    }
    return HostUpClient(API_KEY, base_url=fake.url, **{**settings, **options})


# -- the plan itself -------------------------------------------------------------------


def test_plan_is_deterministic_per_seed() -> None:
    plan = FaultPlan(seed=1, flaky=0.2, forbidden=0.1, missing=0.1)
    again = FaultPlan(seed=1, flaky=0.2, forbidden=0.1, missing=0.1)
    other = FaultPlan(seed=2, flaky=0.2, forbidden=0.1, missing=0.1)
    vmids = range(1, 2001)
    assert [plan.permanent(v) for v in vmids] == [again.permanent(v) for v in vmids]
    assert [plan.is_flaky(v) for v in vmids] == [again.is_flaky(v) for v in vmids]
    assert [plan.is_flaky(v) for v in vmids] != [other.is_flaky(v) for v in vmids]
    assert [plan.transient_fault(v, "details", 0) for v in vmids] == [
        again.transient_fault(v, "details", 0) for v in vmids
    ]


def test_plan_shares_hold_over_many_vmids() -> None:
    plan = FaultPlan(seed=5, flaky=0.2, forbidden=0.05, missing=0.05, unsuccessful=0.05)
    vmids = range(1, 10_001)
    kinds = Counter(plan.permanent(v) for v in vmids)
    assert 0.18 < sum(map(plan.is_flaky, vmids)) / 10_000 < 0.22
    for kind in ("forbidden", "missing", "unsuccessful"):
        assert 0.04 < kinds[kind] / 10_000 < 0.06
    assert kinds["mismatched"] == 0


def test_flaky_vmids_fail_at_most_streak_times_then_recover() -> None:
    plan = FaultPlan(seed=3, flaky=1.0, streak=3)
    streaks = set()
    for vmid in range(1, 200):
        faults = [plan.transient_fault(vmid, "details", n) for n in range(6)]
        streak = sum(f is not None for f in faults)
        assert faults[:streak] == [f for f in faults if f is not None]
        streaks.add(streak)
    assert streaks == {1, 2, 3}


def test_transient_share_is_per_request() -> None:
    plan = FaultPlan(seed=9, transient=0.25)
    faulted = sum(
        plan.transient_fault(vmid, "details", n) is not None
        for vmid in range(1, 401)
        for n in range(10)
    )
    assert 0.22 < faulted / 4000 < 0.28


@pytest.mark.parametrize(
    "options",
    [
        {"flaky": 1.5},
        {"transient": -0.1},
        {"forbidden": 0.6, "missing": 0.6},
        {"streak": 0},
        {"kinds": ()},
        {"kinds": ("418",)},
        {"slow_delay": -1.0},
    ],
)
def test_plan_refuses_bad_settings(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FaultPlan(**options)


@pytest.mark.parametrize(
    "options",
    [{"rate_limit": 0}, {"rate_window": 0}, {"rate_mode": "leaky"}, {"usage_log_hours": -1}],
)
def test_fake_refuses_bad_settings(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FakeHostUp(**options)
    with pytest.raises(TypeError):
        FakeHostUp(faults={"flaky": 0.1})  # type: ignore[arg-type]


# -- every fault kind, as the client sees it -------------------------------------------

EXPECTED: dict[str, type[HostUpError]] = {
    "429": RateLimitError,
    "500": ServerError,
    "502": ServerError,
    "503": ServerError,
    "504": GatewayTimeoutError,
    "html_500": ServerError,
    "html_502": ServerError,
    "html_503": ServerError,
    "html_504": GatewayTimeoutError,
    "drop": TransportError,
    "truncate": TransportError,
    "malformed": DecodeError,
    "slow": RequestTimeoutError,
    "stall": RequestTimeoutError,
}


def test_every_transient_kind_has_an_expectation() -> None:
    assert set(EXPECTED) == set(TRANSIENT_KINDS)


@pytest.mark.parametrize("kind", TRANSIENT_KINDS)
async def test_each_transient_kind_surfaces_typed(kind: TransientKind) -> None:
    plan = FaultPlan(transient=1.0, kinds=(kind,), slow_delay=0.4)
    async with FakeHostUp(api_key=API_KEY, faults=plan) as fake:
        async with client_for(fake, max_retries=0, timeout=0.15) as client:
            with pytest.raises(EXPECTED[kind]) as info:
                await client.get_vm_details(8)
            fake.faults = None
            vm = await client.get_vm_details(8)
    assert vm.hostname == "vm8.example.net"
    # aiohttp itself resends a GET once when the connection closes before any answer.
    assert fake.stats.faults[kind] == (2 if kind == "drop" else 1)
    if kind.startswith("html_"):
        assert "nginx" in getattr(info.value, "body", "")
    if kind == "drop":
        assert fake.stats.dropped == 2


async def test_custom_fault_serves_exact_bytes_and_headers(fake: FakeHostUp) -> None:
    fake.inject(Fault.custom(b'{"success": true, "data": {"hostname": "x"}}', status=200))
    fake.inject(Fault.custom(b"busy", status=429, headers={"Retry-After": "0.02"}))
    async with client_for(fake, max_retries=0) as client:
        vm = await client.get_vm_details(3)
        assert vm.hostname == "x"
        with pytest.raises(RateLimitError) as info:
            await client.get_vm_details(3)
    assert info.value.retry_after == 0.02
    assert info.value.body == "busy"


# -- permanent faults: typed per-item errors, the rest succeeds --------------------------


async def test_permanent_faults_are_typed_per_item_and_not_retried() -> None:
    plan = FaultPlan(seed=4, forbidden=0.05, missing=0.05, unsuccessful=0.05, mismatched=0.05)
    vmids = list(range(1, 201))
    async with FakeHostUp(api_key=API_KEY, faults=plan, usage_log_hours=2) as fake:
        async with client_for(fake) as client:
            results = await client.fetch_vms(vmids)
    expected: dict[Any, type[HostUpError]] = {
        "forbidden": PermissionDeniedError,
        "missing": NotFoundError,
        "unsuccessful": APIError,
        "mismatched": DecodeError,
    }
    seen: Counter[str] = Counter()
    for vmid, result in zip(vmids, results, strict=True):
        assert result.vmid == vmid
        kind = plan.permanent(vmid)
        if kind is None:
            assert result.ok and result.details is not None
            assert result.details.hostname == f"vm{vmid}.example.net"
        else:
            seen[kind] += 1
            assert type(result.error) is expected[kind], (vmid, kind, result.error)
    assert set(seen) == set(expected)  # the seed covers every kind
    assert sum(seen.values()) < 60  # and most VMs still succeed
    assert fake.stats.requests == len(vmids)  # permanent faults are never retried
    # A 200 whose envelope says success: false is the API's error, with its code and id.
    unsuccessful = [r.error for r in results if plan.permanent(r.vmid) == "unsuccessful"]
    assert all(
        isinstance(e, APIError)
        and e.status == 200
        and e.code == "OPERATION_FAILED"
        and e.request_id
        for e in unsuccessful
    ), unsuccessful


# -- the fault storm -------------------------------------------------------------------


# Every transient kind but the 429: a 429 also brings the client's pace down to what the
# server takes, and a storm of them is a pacing scenario (every VM is recovered, and the rate
# comes down, in test_adaptive's gateway styles); here they would only make the storm slow.
STORM_KINDS = tuple(kind for kind in TRANSIENT_KINDS if kind != "429")


async def test_fault_storm_recovers_every_vm() -> None:
    """1 in 5 VMs faulted (up to twice per endpoint) across every kind of failed answer, plus noise."""
    # A timeout far above a loopback answer's time even on a loaded machine (a normal answer
    # timed out would be a retry no fault caused), and a stall far above the timeout.
    plan = FaultPlan(
        seed=11, flaky=0.2, streak=2, transient=0.02, slow_delay=3.0, kinds=STORM_KINDS
    )
    vmids = list(range(1, 201))
    budget = RetryBudget()
    async with FakeHostUp(api_key=API_KEY, faults=plan, usage_log_hours=2) as fake:
        async with client_for(fake, timeout=1.0, max_retries=4, retry_budget=budget) as client:
            results = await client.fetch_vms(vmids, billing_cycle=True)
    failed = [(r.vmid, r.error) for r in results if not r.ok]
    assert not failed
    assert [r.vmid for r in results] == vmids
    assert all(r.details is not None and r.billing_cycle is not None for r in results)
    assert set(fake.stats.faults) == set(STORM_KINDS), fake.stats.faults
    faults = sum(fake.stats.faults.values())
    assert faults > 0.2 * len(vmids)
    # Every fault cost one retry (aiohttp may resend a dropped keep-alive request itself).
    assert faults - fake.stats.faults["drop"] <= client.stats.retries <= faults
    # The storm never came near exhausting the retry budget; successes refilled it.
    assert budget.tokens > budget.capacity // 2


async def test_sustained_failure_exhausts_the_budget_and_stops_multiplying_load() -> None:
    plan = FaultPlan(transient=1.0, kinds=("503",))
    budget = RetryBudget(50, retry_cost=5)
    async with FakeHostUp(api_key=API_KEY, faults=plan) as fake:
        async with client_for(fake, max_retries=3, retry_budget=budget) as client:
            results = await client.fetch_vms(range(1, 41), usage_log=False)
            assert all(not r.ok for r in results)
            exhausted = [r for r in results if isinstance(r.error, RetryBudgetExhaustedError)]
            assert exhausted
            assert all(isinstance(r.error.last_error, ServerError) for r in exhausted)  # type: ignore[union-attr]
            # 40 calls with 3 retries each would be 160 requests; the budget allowed 10 retries.
            assert fake.stats.requests == 40 + 10
            fake.faults = None  # the API recovers: calls succeed and refill the budget
            ok = await client.fetch_vms(range(1, 41), usage_log=False)
    assert all(r.ok for r in ok)
    assert budget.tokens == 40


# -- the hidden rate limit's windows ---------------------------------------------------


async def _burst(fake: FakeHostUp, count: int) -> list[tuple[int, str | None]]:
    async with aiohttp.ClientSession() as session:

        async def one(vmid: int) -> tuple[int, str | None]:
            url = f"{fake.url}/vm/{vmid}/billing-cycle"
            async with session.get(url, headers={"X-API-Key": API_KEY}) as response:
                body = msgspec.json.decode(await response.read())
                return response.status, body.get("retryAfter")

        return [await one(v) for v in range(1, count + 1)]


@pytest.mark.parametrize("mode", ["fixed", "sliding"])
async def test_hidden_limit_refuses_past_the_window_and_says_when(mode: str) -> None:
    # A window far longer than a burst takes, however busy the machine: all 8 fall in it.
    limits: dict[str, Any] = {"rate_limit": 5, "rate_window": 60.0, "rate_mode": mode}
    async with FakeHostUp(api_key=API_KEY, **limits) as fake:
        answers = await _burst(fake, 8)
    assert [s for s, _ in answers] == [200] * 5 + [429] * 3
    waits = [float(w) for s, w in answers if s == 429 and w is not None]
    assert len(waits) == 3 and all(0 < w <= 60 for w in waits)
    assert fake.stats.faults["rate_limit"] == 3
    assert fake.stats.by_status == {200: 5, 429: 3}


def test_plan_latency_is_drawn_per_request_within_its_spread() -> None:
    plan = FaultPlan(seed=3, latency=0.05, latency_spread=0.05)
    again = FaultPlan(seed=3, latency=0.05, latency_spread=0.05)
    draws = [(v, e, n) for v in range(1, 101) for e in ("details", "billing-cycle") for n in (0, 1)]
    delays = [plan.delay(*d) for d in draws]
    assert all(0.05 <= d <= 0.1 for d in delays)
    assert len(set(delays)) == len(draws)  # spread over the range, not one fixed latency
    assert delays == [again.delay(*d) for d in draws]  # the same seed, the same delays
    assert FaultPlan(latency=0.05).delay(1, "details", 0) == 0.05  # no spread: exactly it


async def test_the_fake_waits_the_plans_latency_before_answering() -> None:
    plan = FaultPlan(latency=0.05, latency_spread=0.05)
    async with FakeHostUp(api_key=API_KEY, faults=plan) as fake:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await _burst(fake, 3)  # one after another: each answer waits its own delay
        elapsed = loop.time() - start
    # At least what the plan drew for those three requests; an upper bound would be a
    # measure of the machine's load, not of the fake.
    assert elapsed >= sum(plan.delay(vmid, "billing-cycle", 0) for vmid in (1, 2, 3))


async def test_a_port_in_use_raises_and_leaves_nothing_running() -> None:
    async with FakeHostUp() as first:
        port = int(first.url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(OSError):
            await FakeHostUp(port=port).start()
