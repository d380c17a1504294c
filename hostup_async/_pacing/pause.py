"""The pause after a refusal: one value for what the server asked, the bounded wait, who waits.

Both pacers (local and shared) keep their pause in a ``Pause`` and answer from it, so a
call meets the same outcome whichever paces it:

- ``start(now, asked)``: the server asked for ``asked`` seconds. The pause lasts at most
  ``max_pause`` of them (the client's ``max_retry_after``); a longer ask is remembered
  for as long as the pause lasts.
- ``left(now)`` is the pacer's ``paused_for()``: while the pause lasts, the seconds the
  server asked for that are left (which may be more than the pause); 0 once it is over.
- ``wait(now, max_wait)`` is what one waiter does: sit out the pause (the seconds until it
  ends, plus this waiter's share of the spread), or, when the server asked for longer
  than ``max_wait``, raise ``PauseTooLong`` at once: a call that will not wait as long as
  the server asked ends rather than wake to a server that still refuses.
- ``forget_ask()``: the server took a request again, so a long ask is over.
"""

from __future__ import annotations

import math
import random

from .._constants import PAUSE_JITTER, PAUSE_JITTER_CAP

__all__ = ["Pause", "PauseTooLong", "pause_spread"]


class PauseTooLong(Exception):
    """The client is paused after a refusal for longer than the caller will wait."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        #: Seconds the server asked for that are left.
        self.seconds = seconds


def pause_spread(pause: float) -> float:
    """Return how far past a client-wide pause of ``pause`` seconds its waiters spread out.

    Each request held by the pause wakes at the pause's end plus a uniform share of this,
    never earlier, so they do not all hit the server at the same instant.
    """
    return min(PAUSE_JITTER_CAP, max(pause, 0.0) * PAUSE_JITTER)


class Pause:
    """The client-wide pause after a refusal, on a pacer's clock (see the module docstring)."""

    __slots__ = ("asked_until", "max_pause", "spread", "until")

    def __init__(self, max_pause: float = math.inf) -> None:
        #: Most seconds one refusal pauses the client, whatever the server asks.
        self.max_pause = max_pause
        #: When the pause ends (the past when there is none).
        self.until = -math.inf
        #: When the wait the server asked for ends (may be after ``until``).
        self.asked_until = -math.inf
        #: Seconds past ``until`` over which waiters wake.
        self.spread = 0.0

    def start(self, now: float, asked: float) -> float:
        """Pause from ``now`` for the server's ``asked`` seconds, at most ``max_pause``.

        A pause already longer stays as it is. Returns the seconds of the pause now in force.
        """
        if now >= self.until:
            self.asked_until = -math.inf  # a new pause: an older ask no longer counts
        self.asked_until = max(self.asked_until, now + asked)
        pause = min(asked, self.max_pause)
        if now + pause > self.until:
            self.until = now + pause
            self.spread = pause_spread(pause)
        return self.until - now

    def left(self, now: float) -> float:
        """Seconds left of what the server asked while the pause lasts (0 once it is over)."""
        left = self.until - now
        return 0.0 if left <= 0 else max(left, self.asked_until - now)

    def wait(self, now: float, max_wait: float = math.inf) -> float:
        """Seconds one waiter sits out from ``now`` (0: none), its share of the spread included.

        Raise ``PauseTooLong`` when the server asked for longer than ``max_wait``.
        """
        left = self.until - now
        if left <= 0:
            return 0.0
        asked = max(left, self.asked_until - now)
        if asked > max_wait:
            raise PauseTooLong(asked)
        return left + self.spread * random.random()

    def forget_ask(self) -> None:
        """The server took a request: what it asked is over (the bounded pause stays)."""
        self.asked_until = min(self.asked_until, self.until)
