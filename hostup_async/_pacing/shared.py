"""``SharedPacer``: one rate limit, one 429 pause and one adaptive rate for every client on a key.

Every client built with the same API key, base URL and Redis shares the pacing state kept
in Redis by one Lua script (``shared_script``): each decision is one round trip, atomic,
on Redis' clock. A send permit is a reserved send time: the waiter sleeps locally until
then, so nobody polls. Concurrent waiters of one client share a round trip: the call in
flight takes the slots of everyone queued behind it.

Redis never fails a call. When it is unreachable, slow, restarting or read-only, the
client paces locally (``LocalPacer``) at its share of the rate (the rate over the number
of clients seen lately), logs one WARNING, reconnects with backoff and goes back to
sharing; ``ClientStats.shared_fallback`` counts the seconds spent so.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import logging
import math
import os
import random
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._constants import (
    DEFAULT_MAX_RETRY_AFTER,
    RATE_LIMIT_PAUSE,
    SHARED_BACKOFF_CAP,
    SHARED_LEASE_HORIZON,
    SHARED_LEASE_MAX,
    SHARED_TIMEOUT,
)
from .._events import ClientStats
from .._exceptions import ConfigurationError
from .local import LocalPacer
from .pacer import Clock, LoopClock
from .pause import PauseTooLong, pause_spread
from .shared_script import SCRIPT

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["SharedPacer", "namespace_for", "redis_from"]

logger = logging.getLogger("hostup_async")

_SCHEMES = ("redis", "rediss", "unix")
# The name of the tasks that tell Redis of a refusal (aclose lets them finish).
_REPORT = "hostup-async: shared refusal report"
# How fast the clock offset estimate may creep up, in seconds per second: NTP slews a
# clock by at most 500 ppm.
_DRIFT = 0.0005
# A slot handed back by a cancelled waiter is still worth using this late, in seconds.
_STALE_SLOT = 0.05


def redis_from(shared_limit: Any) -> tuple[Redis, bool]:
    """Return the Redis client for ``shared_limit`` and whether the pacer owns (closes) it.

    A URL is checked here, before any I/O, and never echoed (it may hold a password).
    """
    try:
        import redis.asyncio as aioredis
    except ImportError:
        raise ConfigurationError(
            "shared_limit needs redis-py: pip install 'hostup-async[redis]'"
        ) from None
    if isinstance(shared_limit, aioredis.Redis):
        return shared_limit, False
    if not isinstance(shared_limit, str):
        raise TypeError(
            "shared_limit must be a redis:// URL or a redis.asyncio.Redis, "
            f"not {type(shared_limit).__name__}"
        )
    _check_url(shared_limit)
    try:
        client = aioredis.Redis.from_url(
            shared_limit,
            socket_timeout=SHARED_TIMEOUT,
            socket_connect_timeout=SHARED_TIMEOUT,
            retry_on_timeout=False,
        )
    except (ValueError, TypeError) as exc:
        # redis-py's own parse (query options such as ?ssl_cert_reqs=); its text names
        # the option, not the URL.
        raise ConfigurationError(f"shared_limit is not a usable Redis URL ({exc})") from None
    return client, True


def _check_url(url: str) -> None:
    """Refuse a malformed Redis URL, saying what is wrong without echoing it."""
    if not (url.isascii() and url.isprintable()) or " " in url:
        raise ConfigurationError("shared_limit must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        port = -1
    if port == -1:  # raised out here: the parser's error (it may quote the URL) stays out
        raise ConfigurationError("shared_limit is not a valid URL (check the port)")
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            "shared_limit must be a redis://, rediss:// or unix:// URL "
            "(or a redis.asyncio.Redis you configured)"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigurationError("shared_limit needs a socket path after unix://")
        return
    if not parts.hostname:
        raise ConfigurationError("shared_limit has no host")
    if port == 0:
        raise ConfigurationError("shared_limit has a port outside 1-65535")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ConfigurationError("shared_limit has a database that is not a number")


def namespace_for(api_key: str, base_url: str) -> str:
    """Return the key prefix for one API key on one API: a hash, never the key itself.

    The braces are a Redis Cluster hash tag: every key of the namespace is on one node,
    which the script needs.
    """
    digest = hashlib.sha256(f"hostup-async\n{base_url}\n{api_key}".encode()).hexdigest()
    return f"hostup:{{{digest[:24]}}}"


class _Slot:
    """A reserved send time: on Redis' clock (what the pacer hands out) and on ours."""

    __slots__ = ("at", "due")

    def __init__(self, at: float, due: float) -> None:
        self.at = at
        self.due = due


class _Paused:
    """The reply of a round trip made during a pause: seconds left of it."""

    __slots__ = ("left",)

    def __init__(self, left: float) -> None:
        self.left = left


class _FallBack:
    """What a queued waiter gets when Redis has just gone away: pace locally."""

    __slots__ = ()


_FALLBACK = _FallBack()

_Grant = _Slot | _Paused | _FallBack


class SharedPacer:
    """Paces every client on one API key together, through Redis; see the module docstring."""

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str,
        rate_limit: float | None,
        owns_redis: bool = False,
        clock: Clock | None = None,
        max_pause: float = DEFAULT_MAX_RETRY_AFTER,
        stats: ClientStats | None = None,
        timeout: float = SHARED_TIMEOUT,
        lease_ahead: bool = True,
    ) -> None:
        #: Most seconds one refusal pauses the clients, whatever the server asks.
        self.max_pause = max_pause
        self._redis = redis
        self._owns_redis = owns_redis
        self._script = redis.register_script(SCRIPT)
        self._keys = [f"{namespace}:st", f"{namespace}:w", f"{namespace}:rf", f"{namespace}:c"]
        self._ceiling = "" if rate_limit is None else repr(float(rate_limit))
        self._rate_limit = rate_limit
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._stats = stats if stats is not None else ClientStats()
        self._timeout = timeout
        self._id = os.urandom(8).hex()
        self._rate: float | None = rate_limit
        self._live = 1
        self._paused_until = -math.inf  # on our clock
        self._spread = 0.0
        self._queue: deque[asyncio.Future[_Grant]] = deque()
        self._spare: list[_Slot] = []  # leased ahead or left by cancelled waiters; by due
        self._dropped = 0  # spare slots that went stale unused
        self._lease_ahead = lease_ahead
        self._horizon = repr(SHARED_LEASE_HORIZON)
        self._offset = math.inf  # our clock minus Redis' (see _offset_at)
        self._offset_stamp = 0.0
        self._dispatcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fallback: LocalPacer | None = None
        self._fallback_mark = 0.0
        self._closed = False

    # -- the Pacer interface ------------------------------------------------------------

    @property
    def rate(self) -> float | None:
        """Requests per second allowed now, fleet-wide (this client's share while local)."""
        fallback = self._fallback
        return fallback.rate if fallback is not None else self._rate

    @property
    def sharing(self) -> bool:
        """Whether pacing goes through Redis now (``False`` while it is unavailable)."""
        return self._fallback is None

    def paused_for(self) -> float:
        """Seconds left of the pause after a refusal (0 when there is none)."""
        return max(0.0, self._paused_until - self._clock.now())

    def try_acquire(self) -> float | None:
        """Take a send permit at once if one is at hand; ``None`` means ``acquire()``.

        Sharing, a permit is at hand when a slot leased ahead (or left by a cancelled
        waiter) is due.
        """
        now = self._clock.now()
        if now < self._paused_until:
            return None
        fallback = self._fallback
        if fallback is not None:
            self._tally(now)
            return fallback.try_acquire()
        slot = self._spare_slot(now)
        if slot is None or slot.due > now:
            return None
        del self._spare[0]
        return slot.at

    async def acquire(self, max_pause: float = math.inf) -> float:
        """Wait for the pause and a send slot, then return the send time."""
        clock = self._clock
        while True:
            delay = self._paused_until - clock.now()
            if delay > 0:
                if delay > max_pause:
                    raise PauseTooLong(delay)
                await clock.sleep(delay + self._spread * random.random())
                continue
            fallback = self._fallback
            if fallback is not None:
                self._tally(clock.now())
                return await fallback.acquire(max_pause)
            slot = self._spare_slot(clock.now())
            if slot is not None:
                del self._spare[0]
            else:
                grant = await self._ask()
                if isinstance(grant, _Paused):
                    if grant.left > max_pause:
                        raise PauseTooLong(grant.left)
                    continue  # the reply set our pause: sit it out above
                if not isinstance(grant, _Slot):
                    continue  # Redis went away: pace locally
                slot = grant
            try:
                wait = slot.due - clock.now()
                if wait > 0:
                    await clock.sleep(wait)
            except BaseException:
                self._keep(slot)  # cancelled: the next waiter sends in our slot
                raise
            if clock.now() < self._paused_until:
                self._keep(slot)  # a refusal came while we slept
                continue
            return slot.at

    def on_accepted(self, sent_at: float, quota_wait: float | None = None) -> None:
        """Report an answer that was not a refusal; a spent quota counts as a refusal."""
        if quota_wait is not None:
            self._refused(sent_at, quota_wait, refused=False)

    def on_rate_limited(self, sent_at: float, retry_after: float | None) -> None:
        """Report a 429: pause this client now, and every client on the key via Redis."""
        self._refused(sent_at, retry_after, refused=True)

    async def aclose(self) -> None:
        """Stop the round trips in flight; close the Redis client if the pacer made it."""
        self._closed = True
        reports = [t for t in self._tasks if t.get_name() == _REPORT]
        if reports:
            # A refusal just reported must still reach the others (the pause is theirs
            # too), but Redis gets no longer than one round trip's time to take it.
            await asyncio.wait(reports, timeout=self._timeout)
        tasks = list(self._tasks)
        if self._dispatcher is not None:
            tasks.append(self._dispatcher)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        for waiter in self._queue:
            waiter.cancel()
        self._queue.clear()
        if self._fallback is not None:
            self._tally(self._clock.now())
        if self._owns_redis:
            close = getattr(self._redis, "aclose", None) or self._redis.close  # redis-py < 5
            with contextlib.suppress(Exception):
                await close()

    # -- round trips --------------------------------------------------------------------

    async def _ask(self) -> _Grant:
        """Queue for a slot; the dispatcher's next round trip brings it."""
        waiter: asyncio.Future[_Grant] = asyncio.get_running_loop().create_future()
        self._queue.append(waiter)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())
        try:
            return await waiter
        except asyncio.CancelledError:
            # The reply may have been set just before the cancel: keep its slot for others.
            if waiter.done() and not waiter.cancelled():
                grant = waiter.result()
                if isinstance(grant, _Slot):
                    self._keep(grant)
            raise

    async def _dispatch(self) -> None:
        """Run round trips while waiters queue; each takes slots for up to a lease of them.

        It runs apart from the waiters, so cancelling one never cancels a command in
        flight (no lost reply, no reply crossed onto the next command).
        """
        queue = self._queue
        while queue and self._fallback is None:
            batch: list[asyncio.Future[_Grant]] = []
            while queue and len(batch) < SHARED_LEASE_MAX:
                waiter = queue.popleft()
                if not waiter.done():
                    batch.append(waiter)
            if not batch:
                continue
            # Lease ahead once the spares are used up: a few more slots, due within
            # SHARED_LEASE_HORIZON, which later sends take without a round trip
            # (try_acquire). Any nobody takes in time are dropped, unused.
            ahead = SHARED_LEASE_MAX - len(batch) if self._lease_ahead and not self._spare else 0
            try:
                reply = await self._call("a", str(len(batch)), str(ahead))
            except Exception as exc:  # never fail a call because of Redis
                self._fall_back(exc)
                for waiter in batch:
                    if not waiter.done():
                        waiter.set_result(_FALLBACK)
                break
            grants = self._read_acquire(reply, len(batch))
            for waiter, grant in zip(batch, grants, strict=False):
                if waiter.done():  # cancelled while we were asking
                    if isinstance(grant, _Slot):
                        self._keep(grant)
                else:
                    waiter.set_result(grant)
            for grant in grants[len(batch) :]:
                if isinstance(grant, _Slot):
                    self._keep(grant)
        while queue:  # fell back: release whoever is still queued
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(_FALLBACK)

    async def _call(self, op: str, *args: str, now: str = "") -> list[Any]:
        """Run the script once: ``op`` with its arguments, bounded in time."""
        argv = [op, now, self._ceiling, self._id, repr(self.max_pause), *args]
        if op == "a":
            argv.append(self._horizon)
        reply = await asyncio.wait_for(
            self._script(keys=self._keys, args=argv), timeout=self._timeout
        )
        return list(reply)

    def _read_acquire(self, reply: list[Any], wanted: int) -> list[_Grant]:
        """Turn an acquire reply into one grant per waiter."""
        kind = _text(reply[0])
        local = self._clock.now()
        server_now = float(reply[1])
        if kind == "p":
            left = float(reply[2])
            self._rate = _rate_of(reply[3])
            self._live = int(reply[4])
            self._pause_locally(local, left)
            return [_Paused(left)] * wanted
        self._rate = _rate_of(reply[2])
        self._live = int(reply[3])
        offset = self._offset_at(local, server_now)
        return [_Slot(float(t), float(t) + offset) for t in reply[4:]]

    def _offset_at(self, local: float, server_now: float) -> float:
        """Our clock minus Redis', estimated from the quickest replies.

        A reply's ``local - server_now`` is the true offset plus how long the reply took,
        so the smallest seen is the closest (and never makes a send early). It may creep up
        by ``_DRIFT`` a second, so a clock that slews is followed.
        """
        seen = local - server_now
        best = self._offset + _DRIFT * (local - self._offset_stamp)
        self._offset = seen if seen < best else best
        self._offset_stamp = local
        return self._offset

    def _refused(self, sent_at: float, wait: float | None, *, refused: bool) -> None:
        """Pause here at once; tell Redis in the background (the transport can't wait)."""
        now = self._clock.now()
        fallback = self._fallback
        if fallback is not None:
            if refused:
                fallback.on_rate_limited(sent_at, wait)
            else:
                fallback.on_accepted(sent_at, RATE_LIMIT_PAUSE if wait is None else wait)
        if refused or wait is not None:
            self._pause_locally(
                now, min(RATE_LIMIT_PAUSE if wait is None else wait, self.max_pause)
            )
        if fallback is not None or self._closed:
            return
        task = asyncio.get_running_loop().create_task(
            self._report(sent_at, wait, refused), name=_REPORT
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, sent_at: float, wait: float | None, refused: bool) -> None:
        """Run a refusal through the shared policy and take on the shared pause and rate."""
        try:
            reply = await self._call(
                "r" if refused else "k", repr(sent_at), "" if wait is None else repr(wait)
            )
        except Exception as exc:  # never fail a call because of Redis
            self._fall_back(exc)
            return
        self._pause_locally(self._clock.now(), float(reply[2]))
        rate = _rate_of(reply[3])
        if rate is not None:
            self._rate = rate
            logger.debug(
                "429: shared rate lowered to %.1f req/s (the key's clients got about %.1f req/s)",
                rate,
                float(reply[4]),
            )

    def _pause_locally(self, now: float, seconds: float) -> None:
        """Hold this client's sends for ``seconds`` from ``now`` (never shortening a pause)."""
        if seconds > 0 and now + seconds > self._paused_until:
            self._paused_until = now + seconds
            self._spread = pause_spread(seconds)
            self._spare.clear()  # slots from before the pause would land in it

    def _spare_slot(self, now: float) -> _Slot | None:
        """Return the earliest spare slot still usable (it stays first), dropping stale ones."""
        spare = self._spare
        while spare and spare[0].due < now - _STALE_SLOT:
            del spare[0]  # too late to use: sending now would bunch with later slots
            self._dropped += 1
        return spare[0] if spare else None

    def _keep(self, slot: _Slot) -> None:
        """Keep a slot for a later send, in order of when it is due."""
        bisect.insort(self._spare, slot, key=_due)

    # -- when Redis goes away -----------------------------------------------------------

    def _fall_back(self, exc: BaseException) -> None:
        """Pace locally at this client's share of the rate until Redis answers again."""
        if self._fallback is not None or self._closed:
            return
        rate = self._rate if self._rate is not None else self._rate_limit
        share = None if rate is None else rate / max(1, self._live)
        self._fallback = LocalPacer(share, clock=self._clock, max_pause=self.max_pause)
        self._fallback_mark = self._clock.now()
        # The error's type only: its text may name the server, and a URL may hold a password.
        logger.warning(
            "shared rate limit: Redis is unavailable (%s); pacing this client alone at "
            "%s until it is back",
            type(exc).__name__,
            "no limit" if share is None else f"{share:.3g} req/s (its share of {rate:.3g})",
        )
        task = asyncio.get_running_loop().create_task(self._reconnect())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconnect(self) -> None:
        """Ping Redis with jittered exponential backoff; go back to sharing once it answers."""
        delay = 0.1
        started = self._clock.now()
        while not self._closed:
            await self._clock.sleep(delay * (0.5 + random.random()))
            delay = min(SHARED_BACKOFF_CAP, delay * 2)
            try:
                # The script itself, writing nothing new: a read-only replica fails it too.
                await self._call("s")
            except Exception:
                continue
            now = self._clock.now()
            self._tally(now)
            self._fallback = None
            logger.info(
                "shared rate limit: Redis is back after %.1f s; sharing the rate again",
                now - started,
            )
            return

    def _tally(self, now: float) -> None:
        """Add the time since the last tally to the stats' seconds in fallback."""
        self._stats.shared_fallback += max(0.0, now - self._fallback_mark)
        self._fallback_mark = now


def _due(slot: _Slot) -> float:
    return slot.due


def _text(value: Any) -> str:
    """A reply element as text (a caller's Redis may decode replies, ours does not)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _rate_of(value: Any) -> float | None:
    """A rate in a reply: empty means no limit."""
    text = _text(value)
    return float(text) if text else None
