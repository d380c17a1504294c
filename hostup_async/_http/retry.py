"""The retry policy: which failures are retried, the backoff between tries, and the retry budget."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from .._constants import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    RETRYABLE_STATUSES,
)

__all__ = ["Backoff", "RetryBudget", "retryable_status"]


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


def retryable_status(status: int) -> bool:
    """Tell whether an answer with this HTTP status may be different on another try."""
    return status in RETRYABLE_STATUSES


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
