"""The send bucket: a token bucket with a short burst, plus a cap on sends in any 1-s window.

Pure bookkeeping: every method takes the time as ``now``, nothing sleeps or touches an event
loop, so the pacing rules are tested with the time as a parameter. ``LocalPacer`` does the
waiting.

Why not aiolimiter: its public API cannot change the rate of a limiter that tasks wait on
(earlier releases of this SDK wrote its private ``_level`` and ``_rate_per_sec``), and it
reads the event loop's clock itself, so tests cannot drive its time by hand.
"""

from __future__ import annotations

from collections import deque

from .._constants import RATE_BURST_SECONDS

__all__ = ["SendBucket"]

# Slack on the 1-s window cap, so timer jitter cannot put R + 1 sends in one second.
_WINDOW_MARGIN = 0.005
# Refills are float sums: a token that is 1 - 1e-14 is a whole one (a wait that short
# would not even move a clock reading of 1,000 s).
_ROUNDING = 1e-9


class SendBucket:
    """Allows ``rate`` sends per second: a short burst, and ``floor(rate)`` in any 1-s window.

    The burst is ``burst`` seconds' worth of sends (at least one), after an idle spell.
    """

    __slots__ = ("_burst", "_capacity", "_rate", "_sent", "_stamp", "_tokens")

    def __init__(self, rate: float, now: float, *, burst: float = RATE_BURST_SECONDS) -> None:
        self._burst = burst
        self._rate = rate
        self._capacity = max(1.0, rate * burst)
        self._tokens = self._capacity  # a new bucket starts full
        self._stamp = now
        self._sent: deque[float] = deque()

    @property
    def rate(self) -> float:
        """Sends per second allowed now."""
        return self._rate

    def set_rate(self, rate: float, now: float) -> None:
        """Allow ``rate`` sends per second from ``now`` on."""
        self._refill(now)  # what accrued at the old rate stays accrued
        self._rate = rate
        self._capacity = max(1.0, rate * self._burst)
        self._tokens = min(self._tokens, self._capacity)

    def hold(self, until: float) -> None:
        """Allow nothing until ``until``, then start from an empty bucket: no burst after a pause.

        A burst the moment a pause ends is what a server still counting the refused
        burst (a sliding log) refuses again.
        """
        self._tokens = 0.0
        self._stamp = max(self._stamp, until)

    def delay(self, now: float) -> float:
        """Seconds from ``now`` until one more send fits (0 when it fits now)."""
        self._refill(now)
        wait = 0.0
        if self._tokens < 1.0 - _ROUNDING:  # (a held bucket's stamp is in the future)
            wait = max(0.0, self._stamp - now) + (1.0 - self._tokens) / self._rate
        cap = max(1, int(self._rate))
        sent = self._sent
        if len(sent) >= cap:
            wait = max(wait, sent[-cap] + 1.0 + _WINDOW_MARGIN - now)
        return wait

    def take(self, now: float) -> None:
        """Record a send at ``now`` (call only when ``delay(now)`` is 0)."""
        self._tokens -= 1.0
        sent = self._sent
        sent.append(now)
        horizon = now - 1.0 - _WINDOW_MARGIN
        while sent[0] <= horizon:
            sent.popleft()

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
