"""Client-wide pacing: the request rate limit and the pause every request honours after a 429."""

from __future__ import annotations

import asyncio

from aiolimiter import AsyncLimiter

__all__ = ["Throttle"]


class Throttle:
    """Paces every request of one client: a rate limit, plus a shared pause after a 429.

    The pause is what keeps one 429 from turning into a retry storm: every request of the
    client, not just the one that was refused, waits until the server's wait is over.
    """

    def __init__(self, rate_limit: float | None) -> None:
        #: Requests per second, or ``None`` for no client-side limit.
        self.rate_limit = rate_limit
        # Burst capacity equals one second of rate, aiolimiter's own leaky bucket.
        self._limiter = AsyncLimiter(rate_limit, 1.0) if rate_limit is not None else None
        self._paused_until = 0.0
        #: Seconds spent waiting for the limiter or a pause, summed over all requests.
        self.waited = 0.0

    def pause(self, seconds: float) -> None:
        """Hold every request of the client for ``seconds`` from now (never shortening a pause)."""
        until = asyncio.get_running_loop().time() + seconds
        self._paused_until = max(self._paused_until, until)

    async def acquire(self) -> None:
        """Wait for the pause to end and for the rate limit to allow one more request."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        # A loop, not an Event: another 429 may extend the pause while we sleep.
        while (delay := self._paused_until - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)
        if self._limiter is not None:
            await self._limiter.acquire()
        self.waited += loop.time() - start
