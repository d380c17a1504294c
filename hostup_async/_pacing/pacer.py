"""The pacing contract: what the transport asks before each send and tells after each answer.

``Pacer`` is the interface the transport talks to: a permit to send, and what the server
answered, already parsed (accepted, maybe with a spent quota's wait; or refused, with the
server's wait). Two pacers keep it: ``LocalPacer`` (``local``) paces one client in this
process; ``SharedPacer`` (``shared``) paces every client on one API key through Redis.
Both keep their client-wide pause in a ``Pause`` (``pause``), so ``paused_for()`` and what
a call meets while paused are the same whichever paces it, and both take their rate from
``AdaptiveRate`` (``adaptive``).

Time comes from a ``Clock``; tests and the pacing simulator pass one they drive by hand,
so pacing needs no real sleeps to test.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "LoopClock", "Pacer"]


class Clock(Protocol):
    """Where pacing gets the time and how it waits."""

    def now(self) -> float:
        """Seconds on a monotonic clock."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""


class LoopClock:
    """The running event loop's clock and ``asyncio.sleep``."""

    __slots__ = ()

    def now(self) -> float:
        """The running loop's time; ``time.monotonic()``, which asyncio's loops keep, outside one."""
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:  # a property read from synchronous code, such as a notebook cell
            return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(seconds)


class Pacer(Protocol):
    """What the transport needs of pacing: a send permit, and reports of what came back.

    Send times are on the pacer's own clock; the transport hands them back unchanged.
    """

    @property
    def rate(self) -> float | None:
        """Requests per second allowed now (``None``: no limit)."""

    def paused_for(self) -> float:
        """While paused after a refusal, the seconds the server asked for that are left.

        0 once the pause (at most ``max_pause`` seconds) is over; see ``pause.Pause``.
        """

    def try_acquire(self) -> float | None:
        """Take a send permit at once if no waiting is needed; ``None`` means ``acquire()``."""

    async def acquire(self, max_pause: float) -> float:
        """Wait for a send permit and return the send time.

        Raise ``PauseTooLong`` rather than sit out a pause longer than ``max_pause`` seconds.
        A permit is given only as this returns: cancelled while waiting (the call's task
        cancelled, the client closed, a deadline), the pacer keeps any permit it was about
        to give for the next caller.
        """

    def on_accepted(self, sent_at: float, quota_wait: float | None = None) -> None:
        """Report an answer that was not a refusal.

        ``quota_wait``: the seconds until the quota resets when the answer said none is
        left (``X-RateLimit-Remaining: 0``), else ``None``.
        """

    def on_rate_limited(self, sent_at: float, retry_after: float | None) -> None:
        """Report a 429 for the request sent at ``sent_at``, with the server's wait if any."""

    async def aclose(self) -> None:
        """Release what the pacer holds."""
