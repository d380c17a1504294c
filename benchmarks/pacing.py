"""pacing: how close adaptive pacing gets to a hidden server limit, for each gateway style.

The fake server limits at 100 req/s in the way real gateways do (a token bucket, fixed
windows, a sliding log, long windows) and says how long to wait in the body's
``retryAfter``, the ``Retry-After`` header, both or neither, exactly or in whole seconds.
The client is configured four times too high (400 req/s) and streams 2,000 VMs. Each cell
runs against a fresh server process.

A reference row per style runs botocore's CUBIC rule (its documented constants,
reimplemented here, the benchmark only) in the same harness: a rate clocker, a CUBIC
rate adjustor and a token bucket, no client-wide pause.

Then the pacing simulator (``hostup_async.testing._simulator``: the SDK's own pacer in
virtual time) runs issue 17's scenarios over hundreds of seeds each and reports each
figure's median and worst 5%: the matrix, a stray 429 at cold start, a light service
meeting one 429, four and five clients on one key, a limit that moves. Four matrix cells
run both ways validate it: simulated and real-HTTP shares must agree within 5%.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from hostup_async import AttemptEvent, HostUpClient
from hostup_async._pacing.bucket import SendBucket
from hostup_async.testing import _scenarios as scenarios

from ._harness import Table, fake_server
from ._server import API_KEY
from ._targets import Target

TITLE = "Pacing against hidden limits"
TARGETS = (
    Target("pacing {}: share of the limit", ("cells", "*", "share"), ">=", 0.90),
    Target("pacing {}: share answered 429", ("cells", "*", "refused_share"), "<=", 0.02),
    # The simulated distributions: the worst 5% of the seeded runs of each scenario.
    Target(
        "pacing simulated {}: share (worst 5%)", ("simulated", "*", "share", "worst_5"), ">=", 0.90
    ),
    Target(
        "pacing simulated {}: 429s (worst 5%)", ("simulated", "*", "refused", "worst_5"), "<=", 0.02
    ),
    Target(
        "pacing simulated {}: s to 0.8 of the limit (worst 5%)",
        ("scenarios", "*", "to_80", "worst_5"),
        "<=",
        10.0,
    ),
    Target(
        "pacing simulated {}: burst share of the limit (worst 5%)",
        ("scenarios", "*", "burst_share", "worst_5"),
        ">=",
        0.9,
    ),
    Target(
        "pacing simulated {}: share of the limit (worst 5%)",
        ("scenarios", "*", "total", "worst_5"),
        ">=",
        0.85,
    ),
    Target(
        "pacing simulated {}: 429s (worst 5%)", ("scenarios", "*", "refused", "worst_5"), "<=", 0.03
    ),
    Target(
        "pacing simulated {}: least client, share of fair (worst 5%)",
        ("scenarios", "*", "min_share", "worst_5"),
        ">=",
        0.5,
    ),
    Target(
        "pacing simulated {}: s to half a share (worst 5%)",
        ("scenarios", "*", "to_half_share", "worst_5"),
        "<=",
        15.0,
    ),
    Target(
        "pacing simulated {}: s to 0.85 of 50 (worst 5%)",
        ("scenarios", "*", "to_85_of_50", "worst_5"),
        "<=",
        5.0,
    ),
    Target(
        "pacing simulated {}: least second after, share of 50 (worst 5%)",
        ("scenarios", "*", "floor_after_drop", "worst_5"),
        ">=",
        0.3,
    ),
    Target(
        "pacing simulated {}: s to 0.85 of 150 (worst 5%)",
        ("scenarios", "*", "to_85_of_150", "worst_5"),
        "<=",
        20.0,
    ),
    Target(
        "pacing validation {}: simulated vs real share",
        ("validation", "*", "difference"),
        "<=",
        0.05,
    ),
)

#: Seeded runs per simulated scenario (a quick run: a smoke count).
SEEDS = 200
QUICK_SEEDS = 10
#: The matrix cells run both ways to validate the simulator against real HTTP.
VALIDATION = (
    ("token bucket", "body, whole s"),
    ("fixed 1 s", "none"),
    ("sliding 1 s", "header, whole s"),
    ("fixed 10 s", "body, exact"),
)
#: Loopback to the benchmark's server process, as the simulator sees it (round trip,
#: and up to this much more each way).
LOOPBACK = {"latency": 0.002, "jitter": 0.001}

#: The issue's scenarios beyond the matrix, by name (internet-like latency: 10 ms).
SCENARIOS: dict[str, Any] = {
    "cold start, one stray 429": scenarios.cold_start,
    "4 req/s service, one 429, then a burst": scenarios.service_burst,
    "4 clients, token bucket, each at R": scenarios.tenants("token_bucket", 100.0),
    "4 clients, token bucket, unlimited": scenarios.tenants("token_bucket", None),
    "4 clients, fixed window, each at R": scenarios.tenants("fixed", 100.0),
    "4 clients, fixed window, unlimited": scenarios.tenants("fixed", None),
    "5th client joins, token bucket": scenarios.newcomer("token_bucket", 100.0),
    "5th client joins, fixed window": scenarios.newcomer("fixed", 100.0),
    "limit 100 -> 50 -> 150, silent bucket": scenarios.moving_limit("token_bucket"),
    "limit 100 -> 50 -> 150, silent fixed window": scenarios.moving_limit("fixed"),
}

LIMIT = 100  # the server's requests per second
CONFIGURED = 400.0  # the client's rate_limit, four times too high

STYLES: dict[str, dict[str, Any]] = {
    "token bucket": {"rate_mode": "token_bucket"},
    "fixed 1 s": {"rate_mode": "fixed"},
    "sliding 1 s": {"rate_mode": "sliding"},
    "fixed 10 s": {"rate_mode": "fixed", "rate_window": 10.0},
}
HINTS: dict[str, dict[str, Any]] = {
    "body, exact": {"rate_hint": "body"},
    "body, whole s": {"rate_hint": "body", "rate_hint_whole_seconds": True},
    "header, whole s": {"rate_hint": "header", "rate_hint_whole_seconds": True},
    "none": {"rate_hint": "none"},
    "quota headers": {"rate_hint": "none", "rate_headers": True},
}


class CubicReference:
    """botocore's adaptive rule (``retries/adaptive.py``, ``cubic.py``, ``bucket.py``) as a pacer.

    Constants as botocore documents them: beta 0.7, scale 0.4, a rate clocker with 0.5 s
    buckets and smoothing 0.8, a new rate capped at twice the measured send rate. botocore
    sends unthrottled until the first throttle; here it sends at the client's configured
    rate until then, like the SDK. It has no client-wide pause: a 429 only adjusts the rate (the
    transport still waits before retrying the refused request).
    """

    BETA = 0.7
    SCALE = 0.4
    SMOOTHING = 0.8
    BUCKET = 0.5

    def __init__(self, rate: float) -> None:
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._bucket = SendBucket(rate, now, burst=1.0)
        self._w_max = rate
        self._k = 0.0
        self._last_fail = now
        self._measured = 0.0
        self._count = 0
        self._last_bucket = math.floor(now / self.BUCKET) * self.BUCKET
        self._turn = asyncio.Lock()
        self._enabled = False  # botocore paces only once throttled

    @property
    def rate(self) -> float:
        return self._bucket.rate

    def paused_for(self) -> float:
        return 0.0

    def try_acquire(self) -> float | None:
        now = self._loop.time()
        if self._turn.locked() or self._bucket.delay(now) > 0:
            return None
        self._bucket.take(now)
        return now

    async def acquire(self, max_pause: float = math.inf) -> float:
        async with self._turn:
            while (wait := self._bucket.delay(self._loop.time())) > 0:  # noqa: ASYNC110
                await asyncio.sleep(wait)
            now = self._loop.time()
            self._bucket.take(now)
            return now

    def on_accepted(self, sent_at: float, quota_wait: float | None = None) -> None:
        self._answer(throttled=False)

    def on_rate_limited(self, sent_at: float, retry_after: float | None) -> None:
        self._answer(throttled=True)

    async def aclose(self) -> None:
        pass

    def _answer(self, throttled: bool) -> None:
        now = self._loop.time()
        measured = self._clock_rate(now)
        if throttled:
            rate = min(measured, self._bucket.rate)
            self._w_max = rate
            self._k = (rate * (1 - self.BETA) / self.SCALE) ** (1 / 3)
            self._last_fail = now
            new = rate * self.BETA
            self._enabled = True
        elif not self._enabled:
            return  # until the first throttle: the configured rate, as the SDK starts
        else:
            new = self.SCALE * (now - self._last_fail - self._k) ** 3 + self._w_max
        new = min(new, 2.0 * measured) if measured > 0 else new
        self._bucket.set_rate(max(0.5, min(new, CONFIGURED)), now)

    def _clock_rate(self, now: float) -> float:
        self._count += 1
        bucket = math.floor(now / self.BUCKET) * self.BUCKET
        if bucket > self._last_bucket:
            rate = self._count / (bucket - self._last_bucket)
            self._measured = rate * (1 - self.SMOOTHING) + self._measured * self.SMOOTHING
            self._count = 0
            self._last_bucket = bucket
        return self._measured


async def stream(url: str, n: int, reference: bool) -> dict[str, Any]:
    """Stream n VMs at 400 req/s; return the share of the limit, the 429 share, when it settled."""
    answers: list[tuple[float, int | None]] = []

    def on_attempt(event: AttemptEvent) -> None:
        answers.append((time.monotonic(), event.status))

    client = HostUpClient(
        API_KEY,
        base_url=url,
        rate_limit=CONFIGURED,
        max_concurrency=32,
        timeout=30.0,
        max_retries=10,
        on_attempt=on_attempt,
    )
    if reference:  # a benchmark-only stand-in, swapped in before the client first opens
        client._pacer = CubicReference(CONFIGURED)
    async with client:
        start = time.monotonic()
        failed = 0
        async for r in client.stream_vms(range(1, n + 1), usage_log=False):
            failed += not r.ok
        elapsed = time.monotonic() - start
        requests, refused = client.stats.requests, client.stats.rate_limited
    if failed:
        raise RuntimeError(f"pacing run: {failed} of {n} VMs failed")
    return {
        "share": round(n / (elapsed * LIMIT), 4),
        "refused_share": round(refused / requests, 4),
        "refused": refused,
        "seconds": round(elapsed, 2),
        "first_steady_second": first_steady_second([(t - start, s) for t, s in answers]),
    }


def first_steady_second(answers: list[tuple[float, int | None]]) -> int | None:
    """The first whole second from which every full second took ≥ 90% of the limit, no 429."""
    if not answers:
        return None
    seconds = int(max(t for t, _ in answers))  # the last, partial second is left out
    ok = [0] * (seconds + 1)
    refused = [0] * (seconds + 1)
    for t, status in answers:
        i = int(t)
        if i < seconds:
            ok[i] += status == 200
            refused[i] += status == 429
    steady = [ok[i] >= 0.9 * LIMIT and not refused[i] for i in range(seconds)]
    for i in range(seconds):
        if all(steady[i:]):
            return i
    return None


def run(quick: bool) -> dict[str, Any]:
    """The real-HTTP matrix and reference rows, then the simulated distributions."""
    n = 300 if quick else 2000
    styles = dict(list(STYLES.items())[:2]) if quick else STYLES
    hints = dict(list(HINTS.items())[1:3]) if quick else HINTS
    plan = [(s, h, False) for s in styles for h in hints]
    plan += [(s, "body, whole s", True) for s in styles]
    if not quick:  # every validation cell runs over real HTTP
        plan += [(s, h, False) for s, h in VALIDATION if (s, h, False) not in plan]
    cells = {}
    for style, hint, reference in plan:
        options = {"rate_limit": LIMIT, **STYLES[style], **HINTS[hint]}
        options["rate_limit"] = int(LIMIT * options.get("rate_window", 1.0))
        with fake_server(0, **options) as url:
            figures = asyncio.run(stream(url, n, reference))
        who = "botocore CUBIC" if reference else "hostup-async"
        cells[f"{style} / {hint} / {who}"] = {
            "style": style,
            "hint": hint,
            "client": who,
            **figures,
        }
    seeds = range(QUICK_SEEDS if quick else SEEDS)
    simulated = {
        f"{style} / {hint}": scenarios.distribution(
            scenarios.matrix_cell(style, hint, n, **LOOPBACK), seeds
        )
        for style in STYLES
        for hint in HINTS
    }
    validation = {}
    for style, hint in VALIDATION:
        real = cells.get(f"{style} / {hint} / hostup-async")
        if real is None:
            continue  # (a quick run does not run every validation cell)
        sim = simulated[f"{style} / {hint}"]["share"]["median"]
        validation[f"{style} / {hint}"] = {
            "real": real["share"],
            "simulated": round(sim, 4),
            "difference": round(abs(sim - real["share"]) / real["share"], 4),
        }
    # The reference rows are not the SDK's: they carry no targets.
    return {
        "vms": n,
        "seeds": len(seeds),
        "cells": {k: v for k, v in cells.items() if v["client"] == "hostup-async"},
        "reference": {k: v for k, v in cells.items() if v["client"] != "hostup-async"},
        "simulated": _rounded(simulated),
        "scenarios": _rounded(
            {name: scenarios.distribution(run, seeds) for name, run in SCENARIOS.items()}
        ),
        "validation": validation,
    }


def _rounded(figures: dict[str, Any]) -> dict[str, Any]:
    """The distributions, each figure to 4 significant places (infinite: never reached)."""
    return {
        name: {
            figure: {k: (round(v, 4) if math.isfinite(v) else 1e9) for k, v in stats.items()}
            for figure, stats in runs.items()
        }
        for name, runs in figures.items()
    }


def _row(cell: dict[str, Any]) -> list[str]:
    steady = cell["first_steady_second"]
    return [
        cell["style"],
        cell["hint"],
        cell["client"],
        f"{cell['share']:.3f}",
        f"{100 * cell['refused_share']:.2f}%",
        f"{cell['seconds']:.1f}",
        "never" if steady is None else f"{steady} s",
    ]


def tables(result: dict[str, Any]) -> list[Table]:
    """The matrix, the CUBIC reference rows, then the simulated distributions."""
    header = ["gateway", "429 hint", "client", "share of limit", "429s", "seconds", "steady from"]
    out = [
        Table(
            f"pacing: {result['vms']:,} VMs, server at {LIMIT} req/s, client set to {CONFIGURED:g}",
            header,
            [_row(c) for c in result["cells"].values()]
            + [_row(c) for c in result["reference"].values()],
            "Share of the limit: VMs / (seconds x 100). Steady from: the first second from which "
            "every full second got at least 90 answers and no 429. A token bucket holds a "
            "second's worth, so a run can pass 1.0.",
        )
    ]
    if "simulated" not in result:
        return out
    seeds = result["seeds"]
    out.append(
        Table(
            f"pacing, simulated: the same matrix, {seeds} seeded runs a cell (loopback latency)",
            [
                "gateway / 429 hint",
                "share: median",
                "share: worst 5%",
                "429s: median",
                "429s: worst 5%",
            ],
            [
                [
                    name,
                    f"{d['share']['median']:.3f}",
                    f"{d['share']['worst_5']:.3f}",
                    f"{100 * d['refused']['median']:.2f}%",
                    f"{100 * d['refused']['worst_5']:.2f}%",
                ]
                for name, d in result["simulated"].items()
            ],
            "Worst 5%: 95% of the runs did at least this well.",
        )
    )
    out.append(
        Table(
            f"pacing, simulated: issue 17's scenarios, {seeds} seeded runs each (10 ms latency)",
            ["scenario", "figure", "median", "worst 5%", "target"],
            [
                [
                    name,
                    _LABELS.get(figure, figure),
                    _fmt(figure, d["median"]),
                    _fmt(figure, d["worst_5"]),
                    _GOALS.get(figure, ""),
                ]
                for name, figures in result["scenarios"].items()
                for figure, d in figures.items()
            ],
            "Seconds are counted from the event until three whole seconds in a row take "
            "the level; 'never' means not within the run.",
        )
    )
    if result.get("validation"):
        out.append(
            Table(
                "pacing: the simulator against real HTTP, same cells",
                ["gateway / 429 hint", "real share", "simulated (median)", "difference"],
                [
                    [
                        name,
                        f"{v['real']:.3f}",
                        f"{v['simulated']:.3f}",
                        f"{100 * v['difference']:.1f}%",
                    ]
                    for name, v in result["validation"].items()
                ],
            )
        )
    return out


_LABELS = {
    "to_80": "s to 0.8 of the limit",
    "refused": "429s",
    "burst_share": "burst, share of the limit",
    "total": "all clients, share of the limit (s 20-60)",
    "min_share": "least client in a 10-s window, share of fair",
    "to_half_share": "newcomer: s to half a share",
    "with_newcomer": "all 5, share of the limit (s 40-60)",
    "to_85_of_50": "s from the drop to 0.85 of 50",
    "floor_after_drop": "least second after that, share of 50",
    "to_85_of_150": "s from the raise to 0.85 of 150",
}
_GOALS = {
    "to_80": "<= 10",
    "burst_share": ">= 0.9",
    "total": ">= 0.85",
    "refused": "<= 3%",
    "min_share": ">= 0.5",
    "to_half_share": "<= 15",
    "to_85_of_50": "<= 5",
    "floor_after_drop": ">= 0.3",
    "to_85_of_150": "<= 20",
}


def _fmt(figure: str, value: float) -> str:
    if figure == "refused":
        return f"{100 * value:.2f}%"
    if figure.startswith("to_"):
        return "never" if value >= 1e9 else f"{value:.0f}"
    return f"{value:.3f}"
