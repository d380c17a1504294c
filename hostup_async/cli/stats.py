"""Run statistics: counts and latencies of one run, for the closing summary and fail-fast checks."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from .._bulk import VMResult
from .._client import HostUpClient
from .._events import AttemptEvent
from .diagnosis import connect_failure
from .output import plural

__all__ = ["RunStats", "_percentile"]

# -- run statistics -----------------------------------------------------------------------


_LATENCY_SAMPLE = 10_000

# Attempts that failed to connect, with none answered, before the URL counts as unreachable:
# more than one, so a single refused connection (a server restarting) is still retried.
_CONNECT_FAILURES_TO_GIVE_UP = 3


@dataclass
class RunStats:
    """Counts and latencies of one run, for the closing summary and the fail-fast checks."""

    started: float = field(default_factory=time.perf_counter)
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    ok: int = 0
    attempts: int = 0
    answered: int = 0
    """Attempts that got an HTTP answer (any status): the URL reaches some server."""
    connect_failures: int = 0
    """Attempts that could not connect at all (refused, reset, unreachable; not a 429)."""
    unreachable: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the first attempts all failed to connect: the URL is wrong or the server down."""
    attempt_time: float = 0.0
    """Seconds spent in attempts, summed over all of them."""

    def on_attempt(self, event: AttemptEvent) -> None:
        """Record one HTTP attempt's latency (the client's ``on_attempt`` hook)."""
        # A uniform sample of at most _LATENCY_SAMPLE latencies (reservoir sampling), so
        # the percentiles stay honest while memory stays flat however long the run.
        self.attempts += 1
        self.attempt_time += event.elapsed
        if event.status is not None:
            self.answered += 1
        elif connect_failure(event.error):
            self.connect_failures += 1
            if not self.answered and self.connect_failures >= _CONNECT_FAILURES_TO_GIVE_UP:
                self.unreachable.set()
        if len(self.latencies) < _LATENCY_SAMPLE:
            self.latencies.append(event.elapsed)
        else:
            slot = random.randrange(self.attempts)
            if slot < _LATENCY_SAMPLE:
                self.latencies[slot] = event.elapsed

    def add(self, result: VMResult) -> None:
        """Count one result."""
        if result.error is None:
            self.ok += 1
        else:
            self.failures[type(result.error).__name__] += 1

    @property
    def done(self) -> int:
        """Results counted so far."""
        return self.ok + sum(self.failures.values())

    def summary(self, client: HostUpClient, *, total: int | None = None) -> str:
        """Return the closing summary: outcomes, request rate, latency, 429s and retries.

        ``total`` is given when the run was interrupted: the summary says how far it got.
        """
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        failed = sum(self.failures.values())
        kinds = ", ".join(f"{kind} {n}" for kind, n in self.failures.most_common())
        stats = client.stats
        lat = sorted(self.latencies)
        p50 = _percentile(lat, 0.50) * 1000
        p95 = _percentile(lat, 0.95) * 1000
        if total is None:
            head = f"{plural(self.done, 'VM')} in {elapsed:.1f} s"
        else:
            head = f"interrupted after {self.done} of {plural(total, 'VM')} ({elapsed:.1f} s)"
        return (
            f"{head}: {self.ok} ok, {failed} failed"
            + (f" ({kinds})" if kinds else "")
            + f"\nrequests {stats.requests} ({stats.requests / elapsed:.1f}/s), "
            f"latency p50 {p50:.1f} ms p95 {p95:.1f} ms, "
            f"429s {stats.rate_limited}, retries {stats.retries}, "
            f"rate-limit wait {_per(stats.throttle_wait, stats.requests) * 1000:.0f} ms/request"
            + _rate_note(client)
            + self._wait_hint(client, elapsed)
        )

    def _wait_hint(self, client: HostUpClient, elapsed: float) -> str:
        """Say what to change when waiting for the client's own rate limit took most of the run."""
        stats = client.stats
        if stats.rate_limited or client.rate_limit is None or elapsed < 1.0:
            return ""  # 429s: the server set the pace, and _rate_note says so
        if stats.throttle_wait <= self.attempt_time:
            return ""
        return (
            f"\nhint: requests spent most of their time waiting for the client-side rate limit "
            f"of {client.rate_limit:g} req/s; if your account allows more, raise --rate "
            "(--rate 0: no client-side limit)"
        )


def _rate_note(client: HostUpClient) -> str:
    """Say where adaptive limiting left the rate, when 429s moved it."""
    now = client.effective_rate_limit
    if now is None or now == client.rate_limit:
        return ""
    configured = f"{client.rate_limit:g}" if client.rate_limit is not None else "no limit"
    return f"\nadaptive rate limit now {now:.0f} req/s (configured: {configured})"


def _per(total: float, count: int) -> float:
    """Return ``total / count``, or 0 when nothing was counted."""
    return total / count if count else 0.0


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Return the ``q`` quantile of already sorted values (nearest rank), 0 when empty."""
    if not sorted_values:
        return 0.0
    # The nearest rank is ceil(q * n); rounded first so that 0.95 * 20 is rank 19, not 20.
    rank = math.ceil(round(q * len(sorted_values), 9))
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]
