"""The pacing scenarios of issue 17, run on the simulator and judged by their figures.

Each scenario is a function of a seed returning its figures for one run (a dict of
floats); ``distribution`` runs one over many seeds and gives the median and the worst 5%
of each figure. The tests run a few dozen seeds; ``nox -s bench -- pacing`` runs hundreds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ._limits import RateMode
from ._simulator import Gateway, Hint, Run, Workload, simulate

__all__ = [
    "HIGHER_IS_BETTER",
    "MATRIX_HINTS",
    "MATRIX_STYLES",
    "cold_start",
    "distribution",
    "matrix_cell",
    "moving_limit",
    "newcomer",
    "reach",
    "service_burst",
    "tenants",
]

Figures = dict[str, float]

#: The gateway styles of the pacing matrix (a 100 req/s limit).
MATRIX_STYLES: dict[str, dict[str, object]] = {
    "token bucket": {"mode": "token_bucket"},
    "fixed 1 s": {"mode": "fixed"},
    "sliding 1 s": {"mode": "sliding"},
    "fixed 10 s": {"mode": "fixed", "window": 10.0, "limit": 1000},
}
#: How the matrix's gateways write their 429 hint.
MATRIX_HINTS: dict[str, dict[str, object]] = {
    "body, exact": {"hint": "body"},
    "body, whole s": {"hint": "body", "whole_seconds": True},
    "header, whole s": {"hint": "header", "whole_seconds": True},
    "none": {"hint": "none"},
    "quota headers": {"hint": "none", "quota_headers": True},
}

#: Figures for which more is better (the worst 5% is the low end); the rest, less is.
HIGHER_IS_BETTER = frozenset(
    {"share", "total", "min_share", "burst_share", "floor_after_drop", "with_newcomer"}
)

LIMIT = 100


def reach(per_second: Sequence[int], start: int, level: float, *, hold: int = 3) -> float:
    """Seconds from ``start`` until ``hold`` whole seconds in a row each take ``level``.

    ``math.inf`` when it never happens in the run.
    """
    run = 0
    for s in range(start, len(per_second)):
        run = run + 1 if per_second[s] >= level else 0
        if run == hold:
            return float(s - hold + 1 - start)
    return math.inf


def matrix_cell(style: str, hint: str, items: int = 2000) -> Callable[[int], Figures]:
    """One cell of the pacing matrix: a client set to 400 req/s streams ``items`` VMs."""
    options = {**MATRIX_STYLES[style], **MATRIX_HINTS[hint]}
    gateway = Gateway(**options)  # type: ignore[arg-type]

    def run(seed: int) -> Figures:
        result = simulate(
            gateway, [Workload(rate_limit=400.0, items=items)], seed=seed, duration=120.0
        )
        client = result.clients[0]
        finished = client.finished if client.finished is not None else math.inf
        return {"share": items / (finished * LIMIT), "refused": result.refused_share}

    return run


def cold_start(seed: int) -> Figures:
    """A bulk fetch at rate_limit=100 against a 100 req/s bucket: the 6th request gets a 429."""
    gateway = Gateway(mode="token_bucket", hint="body", whole_seconds=True, stray=(6,))
    result = simulate(gateway, [Workload(rate_limit=100.0, items=3000)], seed=seed, duration=30.0)
    return {"to_80": reach(result.per_second(), 0, 0.8 * LIMIT), "refused": result.refused_share}


def service_burst(seed: int) -> Figures:
    """A service at 4 req/s (rate_limit=100) meets one stray 429; 10 s later, 300 calls at once."""
    gateway = Gateway(mode="token_bucket", hint="body", whole_seconds=True, stray=(21,))
    # The 21st request goes at about 5 s; the burst comes 10 s after it.
    work = Workload(rate_limit=100.0, demand=4.0, stop=30.0, bursts=((15.0, 300),))
    result = simulate(gateway, [work], seed=seed, duration=40.0)
    answers = result.clients[0].answers
    taken = sorted(t for t, status in answers if status == 200 and t >= 15.0)
    # Done when the burst and the service's own calls made meanwhile are all through.
    done = next((t for k, t in enumerate(taken, 1) if k >= 300 + 4.0 * (t - 15.0)), math.inf)
    return {"burst_share": min(1.0, 300 / ((done - 15.0) * LIMIT))}


def tenants(mode: RateMode, rate_limit: float | None) -> Callable[[int], Figures]:
    """Four clients on one key (no shared_limit), each at ``rate_limit``, for 60 s."""
    gateway = Gateway(mode=mode)
    share = LIMIT / 4

    def run(seed: int) -> Figures:
        work = [Workload(rate_limit=rate_limit, items=100_000) for _ in range(4)]
        result = simulate(gateway, work, seed=seed, duration=60.0)
        return {
            "total": result.accepted_between(20.0, 60.0) / (40.0 * LIMIT),
            "refused": result.refused_share,
            "min_share": _min_share(result, range(4), share, 20.0, 60.0),
        }

    return run


def newcomer(mode: RateMode, rate_limit: float | None) -> Callable[[int], Figures]:
    """Four clients on one key; a fifth like them joins at second 30."""
    gateway = Gateway(mode=mode)
    joins = 30

    def run(seed: int) -> Figures:
        work = [Workload(rate_limit=rate_limit, items=100_000) for _ in range(4)]
        work.append(Workload(rate_limit=rate_limit, items=100_000, start=float(joins)))
        result = simulate(gateway, work, seed=seed, duration=60.0)
        return {
            "to_half_share": reach(result.per_second(4), joins, LIMIT / 5 / 2),
            "with_newcomer": result.accepted_between(40.0, 60.0) / (20.0 * LIMIT),
            "refused": result.refused_share,
        }

    return run


def moving_limit(
    mode: RateMode, hint: Hint = "none", whole: bool = False
) -> Callable[[int], Figures]:
    """A client at 400 req/s; the limit is 100, 50 from second 10, 150 from second 25; no hint."""
    gateway = Gateway(mode=mode, hint=hint, whole_seconds=whole, changes=((10.0, 50), (25.0, 150)))

    def run(seed: int) -> Figures:
        result = simulate(
            gateway, [Workload(rate_limit=400.0, items=100_000)], seed=seed, duration=50.0
        )
        per_second = result.per_second()
        to_drop = reach(per_second, 10, 0.85 * 50)
        after = per_second[10 + int(min(to_drop, 15.0)) : 25]
        return {
            "to_85_of_50": to_drop,
            "floor_after_drop": min(after) / 50 if after else 0.0,
            "to_85_of_150": reach(per_second, 25, 0.85 * 150),
            "refused": result.refused_share,
        }

    return run


def _min_share(
    result: Run, clients: Sequence[int], share: float, start: float, end: float
) -> float:
    """The least any of ``clients`` took in a 10-s window of [start, end), over its fair share."""
    least = math.inf
    for i in clients:
        t = start
        while t + 10.0 <= end:
            least = min(least, result.clients[i].accepted_between(t, t + 10.0) / (10.0 * share))
            t += 10.0
    return least


def distribution(
    scenario: Callable[[int], Figures], seeds: Sequence[int]
) -> dict[str, dict[str, float]]:
    """Run ``scenario`` over ``seeds``; each figure's median and worst 5% (by its own sense)."""
    runs = [scenario(seed) for seed in seeds]
    out: dict[str, dict[str, float]] = {}
    for name in runs[0]:
        values = sorted(run[name] for run in runs)
        if name not in HIGHER_IS_BETTER:
            values.reverse()  # worst first
        worst = values[: max(1, len(values) // 20)]
        out[name] = {"median": _median(values), "worst_5": worst[-1], "worst": values[0]}
    return out


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
