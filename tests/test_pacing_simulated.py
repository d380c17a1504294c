"""Pacing judged on the simulator: the SDK's own pacer against gateway models, in virtual time.

Each scenario runs over several seeds (latency, jitter, retry and pause spreads) and
asserts on the worst of them; ``nox -s bench -- pacing`` runs the same scenarios over
hundreds of seeds and reports the distributions. Nothing here sleeps: a run of a minute
of traffic takes a fraction of a second, whatever the machine's load.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hostup_async.testing._limits import RateMode
from hostup_async.testing._scenarios import (
    MATRIX_HINTS,
    MATRIX_STYLES,
    cold_start,
    matrix_cell,
    moving_limit,
    newcomer,
    reach,
    service_burst,
    tenants,
)
from hostup_async.testing._simulator import Gateway, Workload, simulate

from .conftest import unmeasured

SEEDS = range(6)


def over_seeds(scenario: Callable[[int], dict[str, float]]) -> list[dict[str, float]]:
    """The scenario's figures for each of ``SEEDS``; coverage measures the first run only."""
    first = scenario(SEEDS[0])
    with unmeasured():
        return [first, *(scenario(seed) for seed in SEEDS[1:])]


def worst(scenario: Callable[[int], dict[str, float]], name: str, *, high: bool) -> float:
    """The worst of one figure over ``SEEDS`` (the lowest when ``high`` is better)."""
    values = [run[name] for run in over_seeds(scenario)]
    return min(values) if high else max(values)


def test_a_run_repeats_exactly_for_its_seed_and_differs_for_another() -> None:
    gateway = Gateway(mode="sliding", hint="body", whole_seconds=True)
    work = [Workload(rate_limit=400.0, items=500)]
    one, again = simulate(gateway, work, seed=3), simulate(gateway, work, seed=3)
    other = simulate(gateway, work, seed=4)
    assert one.clients[0].answers == again.clients[0].answers
    assert one.clients[0].answers != other.clients[0].answers
    assert one.clients[0].succeeded == 500 and one.clients[0].failed == 0


def test_reach_counts_seconds_until_a_level_holds() -> None:
    assert reach([0, 90, 10, 90, 95, 99, 20], 0, 85) == 3
    assert reach([90, 90], 0, 85) == float("inf")


@pytest.mark.parametrize("hint", list(MATRIX_HINTS))
@pytest.mark.parametrize("style", list(MATRIX_STYLES))
def test_the_matrix_cell_gets_90_percent_of_the_limit_with_few_429s(style: str, hint: str) -> None:
    cell = matrix_cell(style, hint)
    assert worst(cell, "share", high=True) >= 0.90
    assert worst(cell, "refused", high=False) <= 0.02


def test_a_stray_429_at_cold_start_costs_seconds_not_minutes() -> None:
    # One 429 among the first 10 requests: back at 0.8 of the limit within 10 s.
    assert worst(cold_start, "to_80", high=False) <= 10


def test_a_light_service_meeting_one_429_runs_its_next_burst_at_the_real_limit() -> None:
    assert worst(service_burst, "burst_share", high=True) >= 0.9


@pytest.mark.parametrize(("mode", "settles"), [("token_bucket", 8), ("fixed", 5)])
def test_a_limit_that_moves_is_followed_down_without_stop_go_and_found_again_up(
    mode: RateMode, settles: int
) -> None:
    # 100 -> 50 at second 10 -> 150 at second 25, no hint; the client set to 400.
    runs = over_seeds(moving_limit(mode))
    assert max(r["to_85_of_50"] for r in runs) <= settles
    assert min(r["floor_after_drop"] for r in runs) >= 0.3  # then no second under 0.3 of 50
    assert max(r["to_85_of_150"] for r in runs) <= 20
    assert max(r["refused"] for r in runs) <= 0.03


@pytest.mark.parametrize("rate_limit", [100.0, None], ids=["at R", "unlimited"])
@pytest.mark.parametrize("mode", ["token_bucket", "fixed"])
def test_four_clients_on_one_key_get_the_limit_and_none_falls_to_the_floor(
    mode: RateMode, rate_limit: float | None
) -> None:
    scenario = tenants(mode, rate_limit)
    runs = over_seeds(scenario)
    assert min(r["total"] for r in runs) >= 0.85
    assert max(r["refused"] for r in runs) <= 0.03
    # Every client keeps a real share in every 10-s window after the first 20 s (the
    # issue's target is half its fair share in the worst 5% of 200 seeds; the bench
    # reports 0.59-0.92 there; these seeds give 0.58-0.92).
    assert min(r["min_share"] for r in runs) >= 0.55


@pytest.mark.parametrize("mode", ["token_bucket", "fixed"])
def test_a_fifth_client_joining_gets_half_its_share_within_15_seconds(mode: RateMode) -> None:
    assert worst(newcomer(mode, 100.0), "to_half_share", high=False) <= 15


# -- the gateway styles of the real-HTTP tests, simulated --------------------------------

GATEWAYS: dict[str, Gateway] = {
    "token bucket, whole-second body hint": Gateway(
        mode="token_bucket", limit=10, hint="body", whole_seconds=True
    ),
    "token bucket, Retry-After header only": Gateway(mode="token_bucket", limit=10, hint="header"),
    "token bucket, no hint": Gateway(mode="token_bucket", limit=10, hint="none"),
    "fixed window, exact hints": Gateway(mode="fixed", limit=10),
    "fixed window, no hint": Gateway(mode="fixed", limit=10, hint="none"),
    "sliding log, whole seconds": Gateway(mode="sliding", limit=10, whole_seconds=True),
    "2 s window, whole seconds": Gateway(mode="fixed", limit=20, window=2.0, whole_seconds=True),
    "quota headers, no hint": Gateway(mode="fixed", limit=10, hint="none", quota_headers=True),
}


@pytest.mark.parametrize("gateway", list(GATEWAYS.values()), ids=list(GATEWAYS))
@pytest.mark.parametrize("seed", range(3))
def test_every_gateway_style_gets_every_call_and_brings_the_rate_down(
    gateway: Gateway, seed: int
) -> None:
    # A client set to 1,000 req/s against a limit of 10 a second, 100 calls.
    run = simulate(gateway, [Workload(rate_limit=1000.0, items=100, max_concurrency=8)], seed=seed)
    client = run.clients[0]
    assert (client.succeeded, client.failed) == (100, 0)
    assert client.finished is not None
    # The rate when the last call ended (idle afterwards, it climbs back).
    rate = next(rate for t, rate in reversed(client.rates) if t <= client.finished)
    assert rate is not None and rate < 100
    assert run.refused_share < 0.5
