"""What the client reports about its own work: per-attempt events and running totals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._exceptions import HostUpError

__all__ = ["AttemptEvent", "AttemptHook", "ClientStats"]


@dataclass(frozen=True)
class AttemptEvent:
    """One finished HTTP attempt, as passed to the ``on_attempt`` and ``on_retry`` hooks."""

    method: str
    """HTTP method, such as ``GET``."""
    path: str
    """Path below the base URL, such as ``/vm/10415/details``."""
    attempt: int
    """1 for the first try, 2 for the first retry, and so on."""
    status: int | None
    """HTTP status, or ``None`` when no answer arrived (transport error or timeout)."""
    error: HostUpError | None
    """The HostUp error this attempt ended in, or ``None`` when it succeeded."""
    elapsed: float
    """Seconds from sending the request to having the whole body (or the failure)."""
    request_id: str | None
    """The answer's ``requestId``, when there was one."""
    retry_in: float | None
    """Seconds until the next try, or ``None`` when no retry follows."""


#: A callback that receives an ``AttemptEvent``; it must be quick and must not raise.
AttemptHook = Callable[[AttemptEvent], None]


@dataclass
class ClientStats:
    """Running totals over a client's life, handy for metrics and summaries."""

    requests: int = 0
    """HTTP attempts sent."""
    retries: int = 0
    """Attempts that were retries of an earlier one."""
    rate_limited: int = 0
    """Answers with status 429."""
    throttle_wait: float = 0.0
    """Seconds requests spent waiting for the rate limiter or a 429 pause before being sent,
    summed (the backoff of a request that is itself retried is not counted here)."""
    shared_fallback: float = 0.0
    """Seconds a client with ``shared_limit`` paced alone because Redis was unavailable."""
    shared_round_trips: int = 0
    """Calls a client with ``shared_limit`` made to Redis (reservations, refusal reports,
    pings); per 1,000 ``requests`` it is the cost of sharing the limit."""
