"""pacing: how close adaptive pacing gets to a hidden server limit, for each gateway style.

The fake server limits at 100 req/s in the way real gateways do (a token bucket, fixed
windows, a sliding log, long windows) and says how long to wait in the body's
``retryAfter``, the ``Retry-After`` header, both or neither, exactly or in whole seconds.
The client is configured four times too high (400 req/s) and streams 2,000 VMs. Each cell
runs against a fresh server process.

A reference row per style runs botocore's CUBIC rule (its documented constants,
reimplemented here, the benchmark only) in the same harness: a rate clocker, a CUBIC
rate adjustor and a token bucket, no client-wide pause.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from hostup_async import AttemptEvent, HostUpClient
from hostup_async._pacing.bucket import SendBucket

from ._harness import Table, fake_server
from ._server import API_KEY
from ._targets import Target

TITLE = "Pacing against hidden limits"
TARGETS = (
    Target("pacing {}: share of the limit", ("cells", "*", "share"), ">=", 0.90),
    Target("pacing {}: share answered 429", ("cells", "*", "refused_share"), "<=", 0.02),
)

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
    """Every style and hint, then the CUBIC reference per style, each on a fresh server."""
    n = 300 if quick else 2000
    styles = dict(list(STYLES.items())[:2]) if quick else STYLES
    hints = dict(list(HINTS.items())[1:3]) if quick else HINTS
    plan = [(s, h, False) for s in styles for h in hints]
    plan += [(s, "body, whole s", True) for s in styles]
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
    # The reference rows are not the SDK's: they carry no targets.
    return {
        "vms": n,
        "cells": {k: v for k, v in cells.items() if v["client"] == "hostup-async"},
        "reference": {k: v for k, v in cells.items() if v["client"] != "hostup-async"},
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
    """The matrix, then the CUBIC reference rows."""
    header = ["gateway", "429 hint", "client", "share of limit", "429s", "seconds", "steady from"]
    return [
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
