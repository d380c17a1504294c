"""Pacing: what the transport asks before each send and tells after each answer.

``Pacer`` is the interface the transport talks to: a permit to send, and what the server
answered (accepted, or refused with a hint). ``LocalPacer`` paces one client in this
process: the send bucket (``bucket``), the adaptive policy (``adaptive``) and the
client-wide pause after a refusal. A shared pacer can take its place to pace every client
on one API key.

Time comes from a ``Clock``; tests pass one they drive by hand, so pacing needs no real
sleeps to test.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from typing import Protocol

from .._constants import DEFAULT_MAX_RETRY_AFTER
from .._http.retry import pause_spread
from .adaptive import AdaptiveRate, Decision
from .bucket import SendBucket

__all__ = ["Clock", "LocalPacer", "LoopClock", "Pacer", "PauseTooLong"]

logger = logging.getLogger("hostup_async")

# How often a send re-reads the adaptive rate, in seconds: it changes smoothly.
_RATE_REFRESH = 0.1


class PauseTooLong(Exception):
    """The client is paused after a refusal for longer than the caller will wait."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        #: Seconds left of the pause.
        self.seconds = seconds


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
        """The event loop's time."""
        return asyncio.get_running_loop().time()

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
        """Seconds left of the pause after a refusal (0 when there is none)."""

    def try_acquire(self) -> float | None:
        """Take a send permit at once if no waiting is needed; ``None`` means ``acquire()``."""

    async def acquire(self, max_pause: float) -> float:
        """Wait for a send permit and return the send time.

        Raise ``PauseTooLong`` rather than sit out a pause longer than ``max_pause`` seconds.
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


class LocalPacer:
    """Paces the sends of one client: an adaptive rate, and a pause after every refusal.

    The pause is what keeps one 429 from turning into a retry storm: every request of the
    client waits until the server's wait is over, each waking at its own random point a
    little after. It lasts ``max_pause`` seconds at most; a call that will not wait as
    long as the server asked ends at once (``PauseTooLong``). The rate adapts as
    ``adaptive`` explains; at most ``floor(rate)`` requests go in any 1-s window.
    """

    def __init__(
        self,
        rate_limit: float | None,
        *,
        clock: Clock | None = None,
        max_pause: float = DEFAULT_MAX_RETRY_AFTER,
    ) -> None:
        #: Most seconds one refusal pauses the client, whatever the server asks.
        self.max_pause = max_pause
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._policy = AdaptiveRate(rate_limit, max_pause=max_pause)
        self._bucket: SendBucket | None = None
        self._refresh_at = -math.inf
        self._paused_until = -math.inf
        self._asked_until = -math.inf  # the pause the server asked for, before max_pause
        self._spread = 0.0
        # One waiter at a time sleeps on the bucket; the rest queue here in order.
        self._turn = asyncio.Lock()

    @property
    def rate_limit(self) -> float | None:
        """Configured requests per second, the most the adaptive rate grows back to."""
        return self._policy.ceiling

    @property
    def rate(self) -> float | None:
        """Requests per second allowed now (``None``: no limit)."""
        bucket = self._bucket
        return bucket.rate if bucket is not None else self._policy.ceiling

    @property
    def lowered(self) -> int:
        """Times a refusal lowered the rate."""
        return self._policy.lowered

    def paused_for(self) -> float:
        """Seconds left of the pause after a refusal (0 when there is none).

        While paused, a server that asked for longer than the pause lasts gives that.
        """
        now = self._clock.now()
        left = self._paused_until - now
        return 0.0 if left <= 0 else max(left, self._asked_until - now)

    def try_acquire(self) -> float | None:
        """Take a send permit at once if no waiting is needed; ``None`` means ``acquire()``.

        The common case costs no coroutine at all, which matters on the bulk hot path.
        """
        now = self._clock.now()
        if now < self._paused_until:
            return None
        bucket = self._bucket_at(now)
        if bucket is not None:
            if self._turn.locked() or bucket.delay(now) > 0:
                return None
            bucket.take(now)
        self._policy.on_send(now)
        return now

    async def acquire(self, max_pause: float = math.inf) -> float:
        """Wait for the pause and the rate limit, then return the send time."""
        clock = self._clock
        while True:
            await self._sit_out_pause(max_pause)
            async with self._turn:
                while True:
                    now = clock.now()
                    if now < self._paused_until:
                        break  # refused while queued: sit out the new pause first
                    bucket = self._bucket_at(now)
                    wait = bucket.delay(now) if bucket is not None else 0.0
                    if wait <= 0:
                        if bucket is not None:
                            bucket.take(now)
                        self._policy.on_send(now)
                        return now
                    # Re-checked after the sleep: a refusal may have come meanwhile.
                    await clock.sleep(wait)

    def on_accepted(self, sent_at: float, quota_wait: float | None = None) -> None:
        """Report an answer that was not a refusal; a spent quota counts as a refusal."""
        self._asked_until = -math.inf  # the server takes requests again: its long wait is over
        if quota_wait is not None:
            now = self._clock.now()
            self._apply(now, self._policy.on_refused(now, sent_at, quota_wait, refused=False))

    def on_rate_limited(self, sent_at: float, retry_after: float | None) -> None:
        """Report a 429: pause the client, and lower the rate once per burst."""
        now = self._clock.now()
        self._apply(now, self._policy.on_refused(now, sent_at, retry_after))

    async def aclose(self) -> None:
        """Nothing to release: a local pacer holds no connection."""

    def _apply(self, now: float, decision: Decision) -> None:
        if now >= self._paused_until:
            self._asked_until = -math.inf  # a new pause: an older request no longer counts
        self._asked_until = max(self._asked_until, now + decision.asked)
        pause = decision.pause
        if now + pause > self._paused_until:
            self._paused_until = now + pause
            self._spread = pause_spread(pause)
        if decision.rate is not None:
            self._refresh_at = -math.inf  # the next send reads the new rate
            logger.debug(
                "rate lowered to %.1f req/s (the server accepted about %.1f req/s)",
                decision.rate,
                decision.measured,
            )
        bucket = self._bucket_at(now)
        if bucket is not None:
            bucket.hold(self._paused_until)  # no burst the moment the pause ends

    def _bucket_at(self, now: float) -> SendBucket | None:
        """Return the bucket with the policy's rate for ``now`` (``None``: no limit)."""
        if now >= self._refresh_at:
            self._refresh_at = now + _RATE_REFRESH
            rate = self._policy.rate_at(now)
            bucket = self._bucket
            if rate is None:
                self._bucket = None
            elif bucket is None:
                self._bucket = SendBucket(rate, now)
            elif rate != bucket.rate:
                bucket.set_rate(rate, now)
        return self._bucket

    async def _sit_out_pause(self, max_pause: float) -> None:
        """Sleep until the pause is over, plus this waiter's own share of the spread."""
        clock = self._clock
        # A loop: another refusal may extend the pause while we sleep.
        while (delay := self._paused_until - clock.now()) > 0:
            # Judged by what the server asked for: a call that will not wait that long
            # ends now, rather than wake to a server that still refuses.
            asked = self._asked_until - clock.now()
            if asked > max_pause:
                raise PauseTooLong(asked)
            await clock.sleep(delay + self._spread * random.random())
