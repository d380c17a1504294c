"""``Fallback``: pacing one client alone at its share while Redis is away, and rejoining safely.

When a round trip fails, the client paces alone (``LocalPacer``) at its share of the key's
rate (the rate over the clients seen lately). It first holds back until every send the
fleet reserved before the failure has gone (reservations reach at most a set time ahead),
so those and the sends paced alone never meet. Once Redis answers again it shares again,
but keeps to its share for ``SHARED_REJOIN`` seconds more: until then other clients may
still be pacing alone, and their sends are not in Redis.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable

from ..._constants import SHARED_BACKOFF_CAP, SHARED_REJOIN
from ..._events import ClientStats
from ..local import LocalPacer
from ..pacer import Clock

__all__ = ["Fallback"]

logger = logging.getLogger("hostup_async")


class Fallback:
    """One client's pacing apart from Redis: while away, and for a while after it is back."""

    def __init__(
        self,
        *,
        share: float | None,
        rate: float | None,
        hold_until: float,
        clock: Clock,
        max_pause: float,
        stats: ClientStats,
        reason: BaseException,
        relapse: bool = False,
    ) -> None:
        self._clock = clock
        self._pacer = LocalPacer(share, clock=clock, max_pause=max_pause)
        self._hold_until = hold_until
        self._stats = stats
        self._mark = clock.now()
        self._away_since = self._mark
        #: Whether Redis is away now (``False``: back, keeping to the share a while longer).
        self.away = True
        self._rejoined_until = math.inf
        # One warning an outage: Redis failing again while this client still keeps to its
        # share after the last one (a node restarting, a cluster settling) is the same one.
        # The error's type only: its text may name the server, and a URL may hold a password.
        logger.log(
            logging.INFO if relapse else logging.WARNING,
            "shared rate limit: Redis is unavailable%s (%s); pacing this client alone at "
            "%s until it is back",
            " again" if relapse else "",
            type(reason).__name__,
            "no limit" if share is None else f"{share:.3g} req/s (its share of {rate:.3g})",
        )

    @property
    def rate(self) -> float | None:
        """The share of the rate this client paces itself at."""
        return self._pacer.rate

    def over(self) -> bool:
        """Whether the fallback is over: back, and the time keeping to the share has passed."""
        return self._clock.now() >= self._rejoined_until

    def try_acquire(self) -> float | None:
        """A permit at this client's share, at once if one is at hand."""
        now = self._clock.now()
        if now < self._hold_until:
            return None
        self.tally(now)
        return self._pacer.try_acquire()

    async def acquire(self, max_pause: float) -> float:
        """Wait out the hold, then for a permit at this client's share."""
        wait = self._hold_until - self._clock.now()
        if wait > 0:
            await self._clock.sleep(wait)
        self.tally(self._clock.now())
        return await self._pacer.acquire(max_pause)

    def on_accepted(self, sent_at: float, quota_wait: float | None = None) -> None:
        """Report an answer to the local pacer."""
        self._pacer.on_accepted(sent_at, quota_wait)

    def on_rate_limited(self, sent_at: float, retry_after: float | None) -> None:
        """Report a refusal to the local pacer."""
        self._pacer.on_rate_limited(sent_at, retry_after)

    async def reconnect(self, ping: Callable[[], Awaitable[object]]) -> None:
        """Ping Redis with jittered exponential backoff until it answers; then rejoin."""
        delay = 0.1
        while True:
            await self._clock.sleep(delay * (0.5 + random.random()))
            delay = min(SHARED_BACKOFF_CAP, delay * 2)
            try:
                await ping()
            except Exception:
                continue
            now = self._clock.now()
            self.tally(now)
            self.away = False
            self._rejoined_until = now + SHARED_REJOIN
            logger.info(
                "shared rate limit: Redis is back after %.1f s; sharing the rate again",
                now - self._away_since,
            )
            return

    def tally(self, now: float) -> None:
        """Add the time away since the last tally to the stats' seconds in fallback."""
        if self.away:
            self._stats.shared_fallback += max(0.0, now - self._mark)
            self._mark = now
