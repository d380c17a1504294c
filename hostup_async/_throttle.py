"""Client-wide pacing: an adaptive request rate limit, plus the pause every request honours after a 429.

How the adaptive limit works (in the spirit of the AWS SDKs' "adaptive" retry mode, but
driven by plain 429s and their ``retryAfter``):

- The rate starts at the configured ``rate_limit`` (or unlimited when it is ``None``).
- A 429 pauses the whole client for the server's wait (each request then wakes with a
  little jitter), and lowers the rate to ``ADAPTIVE_BACKOFF`` times what the server was
  measured to take: the requests this client sent in the server's current window before
  the refused one, divided by that window. The window is taken as ``max(1 s, retryAfter)``
  and to end when the wait does, so a gateway that allows 100 per second and refuses the
  101st at 0.2 s with ``retryAfter`` 0.8 gives 100 / 1.0 s, and so does one refusing at
  0.97 s with ``retryAfter`` 0.03 in steady state. Without ``retryAfter`` the client looks
  back one second and divides by it plus the default pause: a cautious estimate.
- The 429s of requests sent before that decision are the same burst and change nothing
  more; a 429 that arrives before anything was accepted only pauses, since it says
  nothing about the rate.
- ``ADAPTIVE_PROBE_HOLD`` seconds after the pause, while no 429 arrives and the client
  actually uses its rate, the rate climbs by ``ADAPTIVE_PROBE_STEP`` every
  ``ADAPTIVE_PROBE_INTERVAL`` seconds, never above the configured ``rate_limit``. A client
  without a configured limit keeps a limit from its first lowering on, since it was told
  once that unlimited is too fast, and probes up from it with no ceiling.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import deque

from aiolimiter import AsyncLimiter

from ._constants import (
    ADAPTIVE_BACKOFF,
    ADAPTIVE_MIN_RATE,
    ADAPTIVE_PROBE_HOLD,
    ADAPTIVE_PROBE_INTERVAL,
    ADAPTIVE_PROBE_STEP,
    RATE_BURST_SECONDS,
    RATE_LIMIT_PAUSE,
)
from ._retry import pause_spread

__all__ = ["AdjustableLimiter", "Throttle"]

logger = logging.getLogger("hostup_async")

# Longest span of accepted requests a rate estimate looks back over, and how many send
# times are kept for it: enough for a one-minute server window at a few hundred req/s.
_MAX_SPAN = 60.0
# Share of the server's window by which its start is moved earlier, for the server's lag.
_WINDOW_SLACK = 0.05
_MAX_KEPT = 50_000
# A probe raises the rate only when the client sent at least this share of it: a client
# that is not using its rate learns nothing by raising it.
_BUSY_SHARE = 0.8
# Slack on the 1-s window cap, so timer jitter cannot put R + 1 sends in one second.
_WINDOW_MARGIN = 0.005


def _bucket(rate: float) -> tuple[float, float]:
    """Return aiolimiter's ``(max_rate, time_period)`` for ``rate`` per second and a short burst."""
    capacity = max(1.0, rate * RATE_BURST_SECONDS)
    return capacity, capacity / rate


class AdjustableLimiter(AsyncLimiter):
    """aiolimiter's leaky bucket, with a rate that can change while tasks wait on it.

    Subclassed rather than rebuilt on every change: a new limiter would strand the tasks
    queued on the old one, which would then drain at the old rate. Changing the rate in
    place keeps the queue and its order. Only what every aiolimiter 1.x has is touched:
    ``max_rate``, ``time_period``, ``_rate_per_sec``, ``_level`` and ``_leak()``; the
    waker (aiolimiter 1.2+) is re-armed when present.
    """

    __slots__ = ()

    def __init__(self, rate: float) -> None:
        super().__init__(*_bucket(rate))

    @property
    def rate(self) -> float:
        """Requests per second allowed now."""
        return self._rate_per_sec

    def try_take(self) -> bool:
        """Take one request's capacity now if there is room and nobody queued first."""
        if self._waiters or not self.has_capacity():
            return False
        self._level += 1
        return True

    def give_back(self) -> None:
        """Return one request's capacity that was taken but not used."""
        self._level = max(0.0, self._level - 1)

    def set_rate(self, rate: float) -> None:
        """Allow ``rate`` requests per second from now on (a burst of ``RATE_BURST_SECONDS``)."""
        self._leak()  # settle what drained at the old rate before switching
        self.max_rate, self.time_period = _bucket(rate)
        self._rate_per_sec = rate
        self._level = min(self._level, self.max_rate)
        wake = getattr(self, "_wake_next", None)
        if wake is not None:
            wake()  # the sleeping waiter's timer was set for the old rate


class Throttle:
    """Paces every request of one client: an adaptive rate limit, plus a shared pause after a 429.

    The pause is what keeps one 429 from turning into a retry storm: every request of the
    client, not just the one that was refused, waits until the server's wait is over.
    The rate limit adapts to what the server accepts, as the module docstring explains.
    """

    def __init__(self, rate_limit: float | None) -> None:
        #: Configured requests per second, the ceiling of the adaptive rate (``None``: none).
        self.rate_limit = rate_limit
        self._limiter = AdjustableLimiter(rate_limit) if rate_limit is not None else None
        self._paused_until = 0.0
        self._pause_spread = 0.0
        #: Times a 429 lowered the rate.
        self.lowered = 0
        self._sends: deque[float] = deque(maxlen=_MAX_KEPT)
        self._window: deque[float] = deque()
        self._first_send: float | None = None
        self._epoch = -math.inf
        self._next_probe = math.inf
        self._sent = 0
        self._probe_mark = (0.0, 0)  # (time, sends) when the probe interval began

    @property
    def rate(self) -> float | None:
        """Requests per second allowed now, or ``None`` while there is no limit."""
        return self._limiter.rate if self._limiter is not None else None

    def pause(self, seconds: float) -> None:
        """Hold every request of the client for ``seconds`` from now (never shortening a pause)."""
        until = asyncio.get_running_loop().time() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self._pause_spread = pause_spread(seconds)

    async def acquire(self) -> float:
        """Wait for the pause to end and the rate limit to allow a request; return the send time."""
        loop = asyncio.get_running_loop()
        while True:
            await self._sit_out_pause(loop)
            limiter = self._limiter  # a first 429 may have created one during the pause
            if limiter is None:
                break
            await limiter.acquire()
            await self._cap_window(loop, limiter.rate)
            now = loop.time()
            if self._paused_until <= now:
                self._note_window(now)
                return self.note_send(now)
            # A 429 arrived while this request queued: its place was earned at the old rate,
            # so hand it back, sit out the pause and queue again at the new one.
            limiter.give_back()
        return self.note_send(loop.time())

    def try_acquire(self) -> float | None:
        """Take a send slot at once when nothing needs waiting for; ``None`` means ``acquire()``.

        The common case costs no coroutine at all, which matters on the bulk hot path.
        """
        now = asyncio.get_running_loop().time()
        if self._paused_until > now:
            return None
        limiter = self._limiter
        if limiter is not None:
            if self._window_delay(now, limiter.rate) > 0 or not limiter.try_take():
                return None
            self._note_window(now)
        return self.note_send(now)

    def note_send(self, now: float) -> float:
        """Record a send at ``now`` (for rate estimates and probing) and return ``now``."""
        if self._first_send is None:
            self._first_send = now
        self._sends.append(now)
        self._sent += 1
        if now >= self._next_probe:
            self._probe(now)
        return now

    async def _cap_window(self, loop: asyncio.AbstractEventLoop, rate: float) -> None:
        """Wait until one more send fits ``floor(rate)`` sends in any 1-s window (not recorded)."""
        # Re-check after every sleep: others woken at the same time may have taken the slot.
        while (delay := self._window_delay(loop.time(), rate)) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)

    def _window_delay(self, now: float, rate: float) -> float:
        """Seconds until one more send fits ``floor(rate)`` sends in any 1-s window."""
        cap = max(1, int(rate))
        sent = self._window
        if len(sent) < cap:
            return 0.0
        return sent[-cap] + 1.0 + _WINDOW_MARGIN - now

    def _note_window(self, now: float) -> None:
        """Record a send in the 1-s window and forget sends older than it."""
        sent = self._window
        sent.append(now)
        horizon = now - 1.0 - _WINDOW_MARGIN
        while sent and sent[0] <= horizon:
            sent.popleft()

    async def _sit_out_pause(self, loop: asyncio.AbstractEventLoop) -> None:
        """Sleep until the pause is over, plus this waiter's own share of the spread."""
        # A loop, not an Event: another 429 may extend the pause while we sleep. Each
        # waiter wakes at its own random point after the pause, so they do not go together.
        while (delay := self._paused_until - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay + self._pause_spread * random.random())

    def on_rate_limited(self, sent_at: float, retry_after: float | None) -> None:
        """React to a 429 for a request sent at ``sent_at``: pause, and lower the rate once."""
        now = asyncio.get_running_loop().time()
        wait = RATE_LIMIT_PAUSE if retry_after is None else retry_after
        self.pause(wait)
        if sent_at < self._epoch or self._first_send is None:
            return  # part of a burst already acted on
        window = min(max(1.0, wait), _MAX_SPAN)  # the server's window: at least a second
        if retry_after is not None and wait < window:
            # A window that resets when the wait ends began ``window - wait`` before the
            # refusal: what the client sent in it before the refused request got through.
            # The server sees our sends a little late (a round trip, new connections), so
            # the window is taken to start a little earlier than that.
            slack = max(now - sent_at, _WINDOW_SLACK * window)
            start, span = sent_at + wait - window - slack, window
        else:
            # No usable wait: look back one window and count the pause too (cautious).
            start, span = sent_at - window, window + wait
        through = 0
        for t in reversed(self._sends):
            if t < start:
                break
            through += t < sent_at
        if through == 0:
            return  # nothing got through first: the pause is all this 429 tells us
        measured = through / span
        current = self.rate if self.rate is not None else math.inf
        new = max(ADAPTIVE_MIN_RATE, min(current, measured) * ADAPTIVE_BACKOFF)
        self._set_rate(new)
        self.lowered += 1
        self._epoch = now
        self._next_probe = now + wait + ADAPTIVE_PROBE_HOLD
        self._probe_mark = (now + wait, self._sent)
        logger.debug(
            "429: rate lowered to %.1f req/s (server accepted about %.1f req/s)", new, measured
        )

    def _probe(self, now: float) -> None:
        """Raise the rate one step if the client used it over the last interval."""
        rate = self.rate
        if rate is None:  # pragma: no cover - probes are only scheduled once a rate is set
            self._next_probe = math.inf
            return
        since, sent = self._probe_mark
        used = (self._sent - sent) / max(now - since, 1e-9)
        self._probe_mark = (now, self._sent)
        self._next_probe = now + ADAPTIVE_PROBE_INTERVAL
        if used < rate * _BUSY_SHARE:
            return
        new = rate * ADAPTIVE_PROBE_STEP
        if self.rate_limit is not None and new >= self.rate_limit:
            new = self.rate_limit
            self._next_probe = math.inf  # back at the configured rate: nothing to probe
        self._set_rate(new)
        logger.debug("no 429 lately: rate raised to %.1f req/s", new)

    def _set_rate(self, rate: float) -> None:
        if self._limiter is None:
            self._limiter = AdjustableLimiter(rate)
        else:
            self._limiter.set_rate(rate)
