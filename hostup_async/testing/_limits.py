"""Hidden rate limits for the fake server, in the styles real gateways use.

Each style counts requests with the time as a parameter (``admit(now)``), so its rules are
tested without a clock, and says what a gateway would put in its ``X-RateLimit-*``
headers (``quota(now)``). Refused requests never count against the limit.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal, Protocol

__all__ = ["FixedWindow", "HiddenLimit", "RateMode", "SlidingLog", "TokenBucket", "hidden_limit"]

#: How a hidden limit counts: fixed windows aligned to the first request, a sliding log of
#: the last window's requests, or a token bucket holding a window's worth of requests.
RateMode = Literal["fixed", "sliding", "token_bucket"]


class HiddenLimit(Protocol):
    """A gateway's rate limit: ``limit`` requests per ``window`` seconds."""

    limit: int
    window: float

    def admit(self, now: float) -> float | None:
        """Count a request at ``now``; ``None`` if admitted, else seconds until one fits."""

    def quota(self, now: float) -> tuple[int, float]:
        """Return ``(remaining, seconds until the quota resets)`` at ``now``."""

    def set_limit(self, limit: int, now: float) -> None:
        """Allow ``limit`` requests per window from ``now`` on (a limit that moves)."""


class FixedWindow:
    """At most ``limit`` requests in each fixed window, windows aligned to the first request."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._start: float | None = None
        self._count = 0

    def _roll(self, now: float) -> float:
        if self._start is None:
            self._start = now
        elif now - self._start >= self.window:
            # Windows stay aligned to the first request, as a gateway's clock would.
            self._start = now - (now - self._start) % self.window
            self._count = 0
        return self._start

    def admit(self, now: float) -> float | None:
        """Count a request; return ``None`` if admitted, else seconds until the window resets."""
        start = self._roll(now)
        if self._count < self.limit:
            self._count += 1
            return None
        return start + self.window - now

    def quota(self, now: float) -> tuple[int, float]:
        """Requests left in this window, and seconds until it ends."""
        start = self._roll(now)
        return max(0, self.limit - self._count), start + self.window - now

    def set_limit(self, limit: int, now: float) -> None:
        """Allow ``limit`` requests per window from ``now`` on (this window's count stays)."""
        self._roll(now)
        self.limit = limit


class SlidingLog:
    """At most ``limit`` requests in any ``window`` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._admitted: deque[float] = deque()

    def _expire(self, now: float) -> deque[float]:
        admitted = self._admitted
        while admitted and now - admitted[0] >= self.window:
            admitted.popleft()
        return admitted

    def admit(self, now: float) -> float | None:
        """Count a request; return ``None`` if admitted, else seconds until one more fits."""
        admitted = self._expire(now)
        if len(admitted) < self.limit:
            admitted.append(now)
            return None
        return admitted[0] + self.window - now

    def quota(self, now: float) -> tuple[int, float]:
        """Requests that fit now, and seconds until the log is empty again."""
        admitted = self._expire(now)
        reset = admitted[-1] + self.window - now if admitted else 0.0
        return max(0, self.limit - len(admitted)), reset

    def set_limit(self, limit: int, now: float) -> None:
        """Allow ``limit`` requests per window from ``now`` on (the log stays)."""
        self.limit = limit


class TokenBucket:
    """A bucket of ``limit`` tokens, refilled at ``limit / window`` per second; starts full."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._rate = limit / window
        self._tokens = float(limit)
        self._stamp: float | None = None

    def _refill(self, now: float) -> float:
        if self._stamp is not None and now > self._stamp:
            self._tokens = min(self.limit, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now if self._stamp is None else max(self._stamp, now)
        return self._tokens

    def admit(self, now: float) -> float | None:
        """Take a token; return ``None`` if there was one, else seconds until the next."""
        tokens = self._refill(now)
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return None
        return (1.0 - tokens) / self._rate

    def quota(self, now: float) -> tuple[int, float]:
        """Whole tokens left, and seconds until the bucket is full."""
        tokens = self._refill(now)
        return math.floor(tokens), (self.limit - tokens) / self._rate

    def set_limit(self, limit: int, now: float) -> None:
        """Hold ``limit`` tokens, refilled at ``limit / window`` a second, from ``now`` on."""
        tokens = self._refill(now)  # what accrued at the old rate stays accrued
        self.limit = limit
        self._rate = limit / self.window
        self._tokens = min(tokens, float(limit))


def hidden_limit(mode: RateMode, limit: int, window: float) -> HiddenLimit:
    """Return the hidden limit of style ``mode``: ``limit`` requests per ``window`` seconds."""
    if mode == "fixed":
        return FixedWindow(limit, window)
    if mode == "sliding":
        return SlidingLog(limit, window)
    return TokenBucket(limit, window)
