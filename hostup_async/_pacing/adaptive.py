"""The adaptive rate policy: events in (sends, refusals, the server's hints), decisions out.

Plain code with the time as a parameter: no event loop, no I/O, so the whole policy is
tested on a table of cases. ``LocalPacer`` feeds it and applies what it decides.

How it decides (in the spirit of the AWS SDKs' adaptive mode, split as botocore splits
rate measurement from rate adjustment):

- **Measure what the server accepts.** On a refusal, the server's rate is taken as the
  requests this client sent in the server's window before the refused one, less those
  that were themselves refused. The window is one second, unless the server asks for a
  longer wait (over ``_LONG_WAIT``): then its window is taken to have begun with the
  earliest of those sends and to end when the wait does. This needs no exact hint: whole
  seconds, a header or no hint at all measure the same.
- **Back off to just below it.** The rate drops to ``ADAPTIVE_BACKOFF`` times the lower
  of that measure and the rate in force, once per burst: refusals of requests sent before
  the decision are the same burst.
- **Grow back on a cubic curve** (CUBIC, as TCP and botocore use it): quickly at first, then
  flat at ``ADAPTIVE_REST`` times the measure (reached ``ADAPTIVE_PLATEAU`` seconds after
  the pause), then faster and faster, never above the configured ceiling. The plateau is
  what makes it polite: the rate rests just below the server's limit instead of tripping
  it every few seconds, and still finds a limit the server raises.
- A refusal before anything was accepted only pauses: it says nothing about the rate.
"""

from __future__ import annotations

import math
from collections import deque

from .._constants import (
    ADAPTIVE_BACKOFF,
    ADAPTIVE_MIN_RATE,
    ADAPTIVE_PLATEAU,
    ADAPTIVE_REST,
    RATE_LIMIT_PAUSE,
)

__all__ = ["AdaptiveRate", "Decision"]

# Longest server window a measure looks back over, in seconds.
_MAX_SPAN = 60.0
# A wait longer than this is taken as a sign of a server window longer than a second
# (a 1-s window rounded up to whole seconds says "1").
_LONG_WAIT = 1.5
# Sends kept for measuring: a minute at a few hundred requests per second.
_MAX_KEPT = 50_000


class Decision:
    """What the policy decided about one refusal: how long to pause, and the new rate."""

    __slots__ = ("asked", "measured", "pause", "rate")

    def __init__(
        self, pause: float, asked: float, rate: float | None, measured: float | None
    ) -> None:
        #: Seconds the whole client holds back from now (at most ``max_pause``).
        self.pause = pause
        #: Seconds the server asked for, which may be more.
        self.asked = asked
        #: The rate from now on, or ``None`` when this refusal leaves it as it is.
        self.rate = rate
        #: Requests per second the server was measured to accept, if it was measured.
        self.measured = measured

    def __repr__(self) -> str:
        return (
            f"Decision(pause={self.pause!r}, asked={self.asked!r}, rate={self.rate!r}, "
            f"measured={self.measured!r})"
        )


class AdaptiveRate:
    """The client's rate: the configured ``ceiling`` until the server refuses, then adapted."""

    __slots__ = (
        "_epoch",
        "_floor",
        "_plateau",
        "_refused",
        "_resume",
        "_sends",
        "_target",
        "backoff",
        "ceiling",
        "lowered",
        "max_pause",
    )

    def __init__(
        self,
        ceiling: float | None,
        *,
        backoff: float = ADAPTIVE_BACKOFF,
        plateau: float = ADAPTIVE_PLATEAU,
        max_pause: float = math.inf,
    ) -> None:
        #: Configured requests per second, the most the rate grows back to (``None``: none).
        self.ceiling = ceiling
        #: Share of the measured rate the client drops to after a refusal.
        self.backoff = backoff
        #: Times a refusal lowered the rate.
        self.lowered = 0
        #: Most seconds a refusal pauses the client, whatever the server asks.
        self.max_pause = max_pause
        self._plateau = plateau
        self._sends: deque[float] = deque(maxlen=_MAX_KEPT)
        self._refused: deque[float] = deque(maxlen=_MAX_KEPT)
        self._epoch = -math.inf  # refusals of sends before this are the burst acted on
        self._target: float | None = None  # the measured rate the curve rests at
        self._floor = 0.0  # the rate right after the last lowering
        self._resume = 0.0  # when the pause of the last lowering ended

    def on_send(self, now: float) -> None:
        """Record a send at ``now``."""
        self._sends.append(now)

    def on_refused(
        self, now: float, sent_at: float, wait: float | None, *, refused: bool = True
    ) -> Decision:
        """Decide about a refusal at ``now`` of the request sent at ``sent_at``.

        ``wait`` is the server's hint in seconds (``None``: none). With ``refused=False``
        the request got through but the server said its quota is spent (a remaining count
        of 0): the same decision, without counting that request as refused.
        """
        asked = RATE_LIMIT_PAUSE if wait is None else wait
        pause = min(asked, self.max_pause)
        if refused:
            self._refused.append(sent_at)
        if sent_at < self._epoch:
            return Decision(pause, asked, None, None)  # the same burst: already acted on
        measured = self._measure(sent_at, asked, including=not refused)
        if measured is None:
            return Decision(pause, asked, None, None)  # nothing got through: only the pause
        current = self.rate_at(now)
        took = min(measured, current or math.inf)
        rate = max(ADAPTIVE_MIN_RATE, took * self.backoff)
        self._target = max(rate, took * ADAPTIVE_REST)
        self._floor = rate
        self._resume = now + pause
        self._epoch = now
        self.lowered += 1
        return Decision(pause, asked, rate, measured)

    def rate_at(self, now: float) -> float | None:
        """Requests per second allowed at ``now`` (``None``: no limit)."""
        target = self._target
        if target is None:
            return self.ceiling
        # CUBIC: floor at the pause's end, flat at the target after the plateau, then faster.
        k = self._plateau
        t = max(0.0, now - self._resume)
        # Never a flat line, even from the minimum rate: the climb after the plateau is at
        # least as steep as a full back-off would make it.
        amplitude = max(target - self._floor, target * (1.0 - self.backoff))
        rate = max(self._floor, target + amplitude * ((t - k) / k) ** 3)
        if self.ceiling is not None and rate >= self.ceiling:
            return self.ceiling
        return rate

    def _measure(self, sent_at: float, wait: float, *, including: bool) -> float | None:
        """Requests per second the server took in its window before ``sent_at``."""
        long = wait > _LONG_WAIT
        start = sent_at - (min(wait, _MAX_SPAN) if long else 1.0)
        earliest = sent_at
        through = 0
        for t in reversed(self._sends):
            if t < start:
                break
            if t < sent_at or (including and t == sent_at):
                through += 1
                earliest = t
        for t in reversed(self._refused):
            if t < start:
                break
            if t < sent_at:
                through -= 1
        if through <= 0:
            return None
        span = max(1.0, sent_at - earliest + wait) if long else 1.0
        return through / span
