"""``LocalPacer``: one client's pacing in this process (the bucket, the policy, the pause).

The decisions are synchronous and take the time as a parameter (``delay``, ``take``,
``refused``, ``accepted``); the coroutines only sleep between them. The pacing simulator
drives the same synchronous core in virtual time.
"""

from __future__ import annotations

import asyncio
import logging
import math

from .._constants import DEFAULT_MAX_RETRY_AFTER
from .adaptive import AdaptiveRate, Decision
from .bucket import SendBucket
from .pacer import Clock, LoopClock
from .pause import Pause

__all__ = ["LocalPacer"]

logger = logging.getLogger("hostup_async")

# How often a send re-reads the adaptive rate, in seconds: it changes smoothly.
_RATE_REFRESH = 0.1


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
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._policy = AdaptiveRate(rate_limit, max_pause=max_pause)
        self._pause = Pause(max_pause)
        self._bucket: SendBucket | None = None
        self._refresh_at = -math.inf
        # One waiter at a time sleeps on the bucket; the rest queue here in order.
        self._turn = asyncio.Lock()

    @property
    def max_pause(self) -> float:
        """Most seconds one refusal pauses the client, whatever the server asks."""
        return self._pause.max_pause

    @property
    def rate_limit(self) -> float | None:
        """Configured requests per second, the most the adaptive rate grows back to."""
        return self._policy.ceiling

    @property
    def rate(self) -> float | None:
        """Requests per second allowed now, idle or not (``None``: no limit)."""
        return self._policy.rate_at(self._clock.now())

    @property
    def lowered(self) -> int:
        """Times a refusal lowered the rate."""
        return self._policy.lowered

    def paused_for(self) -> float:
        """While paused after a refusal, the seconds the server asked for that are left."""
        return self._pause.left(self._clock.now())

    def try_acquire(self) -> float | None:
        """Take a send permit at once if no waiting is needed; ``None`` means ``acquire()``.

        The common case costs no coroutine at all, which matters on the bulk hot path.
        """
        now = self._clock.now()
        if self._turn.locked() or self.delay(now) > 0:
            return None
        self.take(now)
        return now

    async def acquire(self, max_pause: float = math.inf) -> float:
        """Wait for the pause and the rate limit, then return the send time."""
        clock = self._clock
        while True:
            while (pause := self._pause.wait(clock.now(), max_pause)) > 0:
                await clock.sleep(pause)  # a refusal may extend the pause meanwhile
            async with self._turn:
                while True:
                    now = clock.now()
                    if self._pause.until > now:
                        break  # refused while queued: sit out the new pause first
                    wait = self.delay(now)
                    if wait <= 0:
                        self.take(now)
                        return now
                    # Re-checked after the sleep: a refusal may have come meanwhile.
                    await clock.sleep(wait)

    def on_accepted(self, sent_at: float, quota_wait: float | None = None) -> None:
        """Report an answer that was not a refusal; a spent quota counts as a refusal."""
        if quota_wait is None:  # the common case, on every request: no clock read needed
            self._pause.forget_ask(sent_at)
            return
        self.accepted(self._clock.now(), sent_at, quota_wait)

    def on_rate_limited(self, sent_at: float, retry_after: float | None) -> None:
        """Report a 429: pause the client, and lower the rate once per burst."""
        self.refused(self._clock.now(), sent_at, retry_after)

    async def aclose(self) -> None:
        """Nothing to release: a local pacer holds no connection."""

    # -- the synchronous core, with the time as a parameter ------------------------------

    def delay(self, now: float) -> float:
        """Seconds from ``now`` until a send fits the pause and the rate (0: it fits now)."""
        pause = self._pause.until - now
        if pause > 0:
            return pause
        bucket = self._bucket_at(now)
        return bucket.delay(now) if bucket is not None else 0.0

    def take(self, now: float) -> None:
        """Record a send at ``now`` (call only when ``delay(now)`` is 0)."""
        bucket = self._bucket
        if bucket is not None:
            bucket.take(now)
        self._policy.on_send(now)

    def accepted(self, now: float, sent_at: float, quota_wait: float | None = None) -> None:
        """An answer at ``now`` took the request sent at ``sent_at``."""
        self._pause.forget_ask(sent_at)  # taken since the pause: its long wait is over
        if quota_wait is not None:
            self._apply(now, self._policy.on_refused(now, sent_at, quota_wait, refused=False))

    def refused(self, now: float, sent_at: float, retry_after: float | None) -> Decision:
        """A 429 at ``now`` refused the request sent at ``sent_at``; return the decision."""
        decision = self._policy.on_refused(now, sent_at, retry_after)
        self._apply(now, decision)
        return decision

    def _apply(self, now: float, decision: Decision) -> None:
        self._pause.start(now, decision.asked)
        if decision.rate is not None:
            self._refresh_at = -math.inf  # the next send reads the new rate
            logger.debug(
                "rate lowered to %.1f req/s (the server accepted about %.1f req/s%s)",
                decision.rate,
                decision.measured,
                ", at least" if decision.thin else "",
            )
        bucket = self._bucket_at(now)
        if bucket is not None:
            bucket.hold(self._pause.until)  # no burst the moment the pause ends

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
