"""The retry policy: which failures are retried, the backoff between tries, and the retry budget."""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._constants import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    RATE_LIMIT_PAUSE,
    RETRYABLE_STATUSES,
)
from .._exceptions import (
    APIError,
    DecodeError,
    HostUpError,
    RateLimitError,
    TransportError,
)

__all__ = [
    "Backoff",
    "RetryBudget",
    "is_retryable",
    "parse_retry_after",
    "quota_spent_wait",
    "server_wait_of",
]

_MAX_SERVER_WAIT = 3600.0
# A reset above this is a Unix time, not seconds from now (a year in seconds is far below).
_EPOCH_SECONDS = 1_000_000_000.0
# Bounds on what a retry hint may be before it is read: numbers are clamped here (above
# any Unix time, and far above any cap applied after reading), and text longer than any
# date or number is junk.
_MAX_HINT = 10**12
_MAX_HINT_TEXT = 64


def parse_retry_after(
    body_value: Any, header: str | None, *, now: float | None = None
) -> float | None:
    """Return the server's requested wait in seconds, from the body's ``retryAfter`` or the header.

    The body wins because HostUp documents it; the header may be seconds or an HTTP date.
    Unusable values give ``None``; absurd ones are capped at an hour.
    """
    for value in (body_value, header):
        seconds = _seconds(value, now)
        if seconds is not None:
            return min(seconds, _MAX_SERVER_WAIT)
    return None


def _seconds(value: Any, now: float | None) -> float | None:
    """Read one retry hint: a number, a numeric string, or an HTTP date."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        # A 400-digit JSON number is a Python int that float() cannot hold: clamp it.
        seconds = float(min(max(value, 0), _MAX_HINT))
    elif isinstance(value, float):
        seconds = value
    elif isinstance(value, str) and len(value) <= _MAX_HINT_TEXT:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(text)
                seconds = when.timestamp() - (time.time() if now is None else now)
            except (TypeError, ValueError, IndexError, OverflowError):
                return None  # not a date, or a year no datetime can hold
    else:
        return None  # a list, an object, or text far too long to be a wait
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(seconds, 0.0)


def quota_spent_wait(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Return the seconds until the quota resets when an answer says none is left, else ``None``.

    Reads ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (seconds, or a Unix time as
    some gateways send it). A spent quota with no usable reset gives the default pause.
    """
    remaining = headers.get("X-RateLimit-Remaining")
    if remaining is None or remaining.strip() != "0":
        return None
    reset = _seconds(headers.get("X-RateLimit-Reset"), None)
    if reset is not None and reset > _EPOCH_SECONDS:
        reset = max(0.0, reset - (time.time() if now is None else now))
    return RATE_LIMIT_PAUSE if reset is None else min(reset, _MAX_SERVER_WAIT)


class Backoff:
    """How long a failed attempt waits before its retry: full-jitter exponential backoff.

    Retry *n* waits a uniform draw from ``[0, min(cap, base * 2**(n-1)))``. A wait the server
    asked for is a floor: the delay is that wait plus a jitter spread after it (at most
    ``cap``), so requests told to wait the same time do not all wake together. ``random``
    returns a float in ``[0, 1)``; pass your own for repeatable delays. Tests that retry
    against a fake server set a tiny ``base`` and ``cap`` so no retry waits long.
    """

    __slots__ = ("_random", "base", "cap")

    def __init__(
        self,
        base: float = BACKOFF_BASE,
        cap: float = BACKOFF_CAP,
        *,
        random: Callable[[], float] = random.random,
    ) -> None:
        for name, value in (("base", base), ("cap", cap)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Backoff {name} must be a number of seconds")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"Backoff {name} must be zero or more seconds, not {value!r}")
        if not callable(random):
            raise TypeError("Backoff random must be a callable returning a float in [0, 1)")
        #: First backoff ceiling in seconds; it doubles with every retry.
        self.base = float(base)
        #: Highest backoff ceiling (and most jitter after a server's wait), in seconds.
        self.cap = float(cap)
        self._random = random

    def delay(self, retry: int, server_wait: float | None = None) -> float:
        """Return the seconds to wait before retry number ``retry`` (1 for the first retry)."""
        if server_wait is None:
            ceiling = min(self.cap, self.base * (2.0 ** min(max(retry - 1, 0), 32)))
            return ceiling * self._random()
        spread = min(self.cap, max(self.base, server_wait * 0.5))
        return server_wait + spread * self._random()

    def __repr__(self) -> str:
        return f"Backoff(base={self.base!r}, cap={self.cap!r})"


def is_retryable(error: HostUpError, body_is_json: bool = True) -> bool:
    """Tell whether an attempt that failed with ``error`` is worth another try."""
    if isinstance(error, APIError):
        return error.status in RETRYABLE_STATUSES
    if isinstance(error, TransportError):
        return True
    # A 2xx body that is not JSON at all was mangled on the way (cut short, a proxy's
    # page); a JSON body that does not fit the schema will not change on a retry.
    return isinstance(error, DecodeError) and not body_is_json


def server_wait_of(error: HostUpError, headers: Mapping[str, str] | None = None) -> float | None:
    """Return the wait a failed attempt's answer asked for, if any."""
    if isinstance(error, RateLimitError):
        return error.retry_after
    if isinstance(error, APIError) and headers is not None:
        return parse_retry_after(None, headers.get("Retry-After"))
    return None


class RetryBudget:
    """A client-wide quota of retries, in the spirit of the AWS SDKs' retry quota.

    Each retry spends ``retry_cost`` tokens (``timeout_cost`` after a timeout); a retry that
    then succeeds gives its tokens back, and any other success adds one. When the tokens
    run out, failures are no longer retried, so a failing API sees no more load than
    callers create; successful calls refill it.
    """

    __slots__ = ("_tokens", "capacity", "retry_cost", "timeout_cost")

    def __init__(self, capacity: int = 500, *, retry_cost: int = 5, timeout_cost: int = 10) -> None:
        if capacity < 0 or retry_cost < 0 or timeout_cost < 0:
            raise ValueError("retry budget figures must be zero or more")
        #: Most tokens the budget holds.
        self.capacity = capacity
        #: Tokens one retry spends.
        self.retry_cost = retry_cost
        #: Tokens one retry after a timeout spends.
        self.timeout_cost = timeout_cost
        self._tokens = capacity

    @property
    def tokens(self) -> int:
        """Tokens left now."""
        return self._tokens

    def try_spend(self, cost: int) -> bool:
        """Take ``cost`` tokens for a retry; ``False`` means the budget is exhausted."""
        if cost > self._tokens:
            return False
        self._tokens -= cost
        return True

    def on_success(self, refund: int) -> None:
        """Credit a success: ``refund`` is what its retries spent, or 0 for a first try."""
        self._tokens = min(self.capacity, self._tokens + (refund or 1))

    def __repr__(self) -> str:
        return f"RetryBudget(tokens={self._tokens}/{self.capacity})"
