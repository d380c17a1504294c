"""``SharedPacer``: one rate limit, one 429 pause and one adaptive rate for every client on a key.

The pacer contract (``Pacer``) on top of four parts: the store script (``script``, one
round trip per call, atomic, on Redis' clock), the spare slots (``slots``), the key's
policy (``policy``: ``AdaptiveRate`` run here on the key's logs) and the pacing apart from
Redis (``fallback``).

A send permit is a reserved send time: the waiter sleeps locally until then, so nobody
polls. Concurrent waiters of one client share a round trip: one dispatcher takes the slots
of everyone queued. Redis never fails a call: when it is unreachable, slow, restarting or
read-only, the client paces alone at its share (``fallback``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from typing import TYPE_CHECKING, Any

from ..._constants import (
    DEFAULT_MAX_RETRY_AFTER,
    SHARED_LEASE_HORIZON,
    SHARED_LEASE_MAX,
    SHARED_RESERVE_AHEAD,
    SHARED_TIMEOUT,
)
from ..._events import ClientStats
from ..adaptive import Decision
from ..bucket import _WINDOW_MARGIN
from ..pacer import Clock, LoopClock
from ..pause import Pause, pause_spread
from .connect import close_redis
from .fallback import Fallback
from .policy import LOG_SPAN, FleetPolicy
from .script import Outdated, Paused, Reserved, StoreScript, Timing
from .slots import LATE_MAX, STALE_SLOT, Slot, SlotStore

if TYPE_CHECKING:
    from .connect import AnyRedis

__all__ = ["SharedPacer"]

logger = logging.getLogger("hostup_async")

# The name of the tasks that tell Redis of a refusal (aclose lets them finish).
_REPORT = "hostup-async: shared refusal report"
#: A client that made no call for this long no longer counts as live.
LIVE_SECONDS = 10.0
# Seconds every key outlives the last call (beyond any pause): longer than the policy's
# longest look back, so a quiet minute forgets nothing it would use.
_KEEP = LOG_SPAN + 60.0
# Nothing is reserved (or paced alone) this long after a loss: sends reserved before it
# may still go until SHARED_RESERVE_AHEAD after it (a spare one a little later still),
# and a send bucket's burst more keeps the two apart.
RECOVERY = SHARED_RESERVE_AHEAD + STALE_SLOT + 0.2
# Tries at a decision that another client's decision overtook.
_DECIDE_TRIES = 3
# Seconds over which this client's own pace of sends is measured (leases are sized by it).
_PACE_WINDOW = 0.25
# Weight of the newest sample in the running estimates (pace, round trip time).
_NEWEST = 0.5


class _Wait:
    """What a queued waiter gets when it has no slot: sit out a pause, or pace alone."""

    __slots__ = ()


_NO_SLOT = _Wait()


class SharedPacer:
    """Paces every client on one API key together, through Redis; see the module docstring."""

    def __init__(
        self,
        redis: AnyRedis,
        *,
        namespace: str,
        rate_limit: float | None,
        owns_redis: bool = False,
        clock: Clock | None = None,
        max_pause: float = DEFAULT_MAX_RETRY_AFTER,
        stats: ClientStats | None = None,
        timeout: float = SHARED_TIMEOUT,
        lease_ahead: bool = True,
        redis_time: bool = True,
    ) -> None:
        self._redis = redis
        self._owns_redis = owns_redis
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._stats = stats if stats is not None else ClientStats()
        self._script = StoreScript(
            redis,
            namespace,
            timing=Timing(keep=_KEEP, recovery=RECOVERY, log_span=LOG_SPAN, live=LIVE_SECONDS),
            timeout=timeout,
            redis_time=redis_time,
            stats=self._stats,
        )
        self._policy = FleetPolicy(rate_limit, max_pause=max_pause)
        self._rate_limit = rate_limit
        self._timeout = timeout
        self._live = 1  # clients live on the key (see _count_live)
        self._live_at = -math.inf
        self._pause = Pause(max_pause)  # on our clock
        self._taken_since = False
        self._next_free = -math.inf  # when the key's next free send time is due, on our clock
        self._queue: deque[asyncio.Future[Slot | _Wait]] = deque()
        self._slots = SlotStore()
        self._lease_ahead = lease_ahead
        # This client's own pace of sends, which sizes its leases (see _lease).
        self._taken = 0  # slots taken since _counted_since
        self._counted_since: float | None = None
        self._pace: float | None = None  # slots taken per second, a running estimate
        self._dispatcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fallback: Fallback | None = None
        self._closed = False

    # -- the Pacer interface ------------------------------------------------------------

    @property
    def max_pause(self) -> float:
        """Most seconds one refusal pauses the clients, whatever the server asks."""
        return self._pause.max_pause

    @property
    def rate(self) -> float | None:
        """Requests per second allowed now, fleet-wide (this client's share while away)."""
        fallback = self._fallback
        if fallback is not None and fallback.away:
            return fallback.rate
        return self._policy.rate_at(self._fleet_now())

    @property
    def sharing(self) -> bool:
        """Whether pacing goes through Redis now (``False`` while it is unavailable)."""
        return self._fallback is None or not self._fallback.away

    def paused_for(self) -> float:
        """While paused after a refusal, the seconds the server asked for that are left."""
        return self._pause.left(self._clock.now())

    def try_acquire(self) -> float | None:
        """Take a send permit at once if one is at hand; ``None`` means ``acquire()``.

        Sharing, a permit is at hand when a slot leased ahead (or left by a cancelled
        waiter) is due.
        """
        now = self._clock.now()
        if now < self._pause.until:
            return None
        fallback = self._current_fallback()
        if fallback is not None:
            return fallback.try_acquire() if fallback.away else None
        slot = self._slots.first(now)
        if slot is None or slot.due > now:
            return None
        self._slots.take_first()
        self._taken += 1
        return slot.at

    async def acquire(self, max_pause: float = math.inf) -> float:
        """Wait for the pause and a send slot, then return the send time."""
        clock = self._clock
        while True:
            while (pause := self._pause.wait(clock.now(), max_pause)) > 0:
                await clock.sleep(pause)  # a refusal may extend the pause meanwhile
            fallback = self._current_fallback()
            if fallback is not None:
                sent = await fallback.acquire(max_pause)
                if fallback.away:
                    return sent
                # Back, but keeping to the share a while: a shared slot as well.
            slot = self._slots.first(clock.now())
            if slot is not None:
                self._slots.take_first()
            else:
                grant = await self._ask()
                if not isinstance(grant, Slot):
                    continue  # paused, or Redis went away: start over
                slot = grant
            try:
                wait = slot.due - clock.now()
                if wait > 0:
                    await clock.sleep(wait)
            except BaseException:
                self._slots.keep(slot)  # cancelled: the next waiter sends in our slot
                raise
            if clock.now() < self._pause.until:
                self._slots.keep(slot)  # a refusal came while we slept
                continue
            self._taken += 1
            return slot.at

    def on_accepted(self, sent_at: float, quota_wait: float | None = None) -> None:
        """Report an answer that was not a refusal; a spent quota counts as a refusal."""
        sent_here = sent_at + self._slots.offset  # on our clock, as the pause is
        if sent_here > self._pause.began:
            # Taken since the pause began: the server's long ask is over, here and (with
            # the next refusal report) for the key.
            self._pause.forget_ask(sent_here)
            self._taken_since = True
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
            self._fallback.tally(self._clock.now())
        if self._owns_redis:
            with contextlib.suppress(Exception):
                await close_redis(self._redis)

    # -- reserving send times -----------------------------------------------------------

    async def _ask(self) -> Slot | _Wait:
        """Queue for a slot; the dispatcher's next round trip brings it."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Slot | _Wait] = loop.create_future()
        self._queue.append(waiter)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = loop.create_task(self._dispatch())
        try:
            return await waiter
        except asyncio.CancelledError:
            # The reply may have been set just before the cancel: keep its slot for others.
            if waiter.done() and not waiter.cancelled():
                grant = waiter.result()
                if isinstance(grant, Slot):
                    self._slots.keep(grant)
            raise

    async def _dispatch(self) -> None:
        """Run round trips while waiters queue; each takes slots for up to a lease of them.

        It runs apart from the waiters, so cancelling one never cancels a command in
        flight (no lost reply, no reply crossed onto the next command).
        """
        queue = self._queue
        while queue and self.sharing:
            # The key's schedule is booked ahead: a send asked for now would be due no
            # sooner than its next free time anyway. Wait until just before it, and ask
            # once for everyone who queued meanwhile (fewer round trips, no later sends).
            linger = self._next_free - SHARED_LEASE_HORIZON - self._clock.now()
            if linger > 0:
                await self._clock.sleep(linger)
            self._serve_spares()
            batch: list[asyncio.Future[Slot | _Wait]] = []
            while queue and len(batch) < SHARED_LEASE_MAX:
                waiter = queue.popleft()
                if not waiter.done():
                    batch.append(waiter)
            if not batch:
                continue
            # Lease ahead once the spares are used up: a few more slots, due within
            # SHARED_LEASE_HORIZON, which later sends take without a round trip
            # (try_acquire). Any nobody takes in time are dropped, unused.
            local = self._clock.now()
            ahead, late = 0, STALE_SLOT
            if self._lease_ahead and not self._slots:
                ahead, late = self._lease(local, SHARED_LEASE_MAX - len(batch))
            rate = self._policy.rate_at(self._slots.fleet_time(local))
            try:
                reply = await self._script.reserve(
                    count=len(batch),
                    ahead=ahead,
                    lease_horizon=SHARED_LEASE_HORIZON,
                    cap=SHARED_RESERVE_AHEAD,
                    rate=rate,
                    window_margin=_WINDOW_MARGIN,
                    version=self._policy.version,
                    now=local,
                    late=max(0.0, late - STALE_SLOT),
                )
            except Exception as exc:  # never fail a call because of Redis
                self._fall_back(exc)
                for waiter in batch:
                    if not waiter.done():
                        waiter.set_result(_NO_SLOT)
                break
            self._count_live(reply.live)
            if isinstance(reply, Outdated):
                self._policy.load(reply.version, reply.policy)
                queue.extendleft(reversed(batch))  # ask again with the key's rate
                continue
            if isinstance(reply, Paused):
                self._pause_locally(self._clock.now(), reply.left, reply.asked)
                for waiter in batch:
                    if not waiter.done():
                        waiter.set_result(_NO_SLOT)
                continue
            self._hand_out(batch, reply, rate, late)
            if reply.next_at is not None and queue:
                # Reserved up to the cap: come back when half of it is free again.
                due = reply.next_at - SHARED_RESERVE_AHEAD / 2 + self._slots.offset
                await self._clock.sleep(max(0.0, due - self._clock.now()))
        while queue:  # fell back: release whoever is still queued
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(_NO_SLOT)

    def _hand_out(
        self,
        batch: list[asyncio.Future[Slot | _Wait]],
        reply: Reserved,
        rate: float | None,
        late: float,
    ) -> None:
        """Give each waiter a slot; keep the rest; queue again whoever got none."""
        slots = self._slots.slots(
            reply.times,
            local=self._clock.now(),
            server_now=reply.now,
            leased_from=len(batch),
            late=late,
        )
        if slots and rate is not None:
            self._next_free = slots[-1].due + 1.0 / rate
        got = 0
        for waiter in batch:
            if waiter.done():  # cancelled while we were asking
                continue
            if got == len(slots):
                self._queue.appendleft(waiter)  # (order among those left matters little)
                continue
            waiter.set_result(slots[got])
            got += 1
        for slot in slots[got:]:
            self._slots.keep(slot)

    def _serve_spares(self) -> None:
        """Give queued waiters spare slots first (a lease may have come in meanwhile)."""
        queue, now = self._queue, self._clock.now()
        while queue and (slot := self._slots.first(now)) is not None:
            waiter = queue.popleft()
            if not waiter.done():
                self._slots.take_first()
                waiter.set_result(slot)

    def _lease(self, now: float, most: int) -> tuple[int, float]:
        """How many slots to lease ahead (up to ``most``), and how late each may still go.

        Sized by this client's own pace of sends: a client that could not take its slots
        before they went stale does not lease them (stale slots are the key's capacity
        wasted); a slow one gets fewer slots, each usable longer, so a lease still lasts
        it about as many sends. At its pace a fast client's lease is as before.
        """
        since = self._counted_since
        if since is None or now - since >= _PACE_WINDOW:
            if since is not None:
                sample = self._taken / (now - since)
                pace = self._pace
                self._pace = sample if pace is None else pace + _NEWEST * (sample - pace)
            self._taken, self._counted_since = 0, now
        pace, lag = self._pace, self._slots.lag
        if not pace:
            return most, STALE_SLOT  # not measured yet (or idle)
        ahead = min(most, max(1, math.floor(pace * (LATE_MAX - lag))))
        return ahead, min(LATE_MAX, max(STALE_SLOT, ahead / pace + lag))

    # -- refusals -----------------------------------------------------------------------

    def _refused(self, sent_at: float, wait: float | None, *, refused: bool) -> None:
        """Pause here at once; tell Redis in the background (the transport can't wait)."""
        now = self._clock.now()
        fallback = self._fallback
        if fallback is not None and fallback.away:
            if refused:
                fallback.on_rate_limited(sent_at, wait)
            else:
                fallback.on_accepted(sent_at, wait)
        pause = self._policy.pause_for(wait)
        self._pause_locally(now, pause.pause, pause.asked)
        if (fallback is not None and fallback.away) or self._closed:
            return
        task = asyncio.get_running_loop().create_task(
            self._report(sent_at, wait, refused), name=_REPORT
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, sent_at: float, wait: float | None, refused: bool) -> Decision | None:
        """Record a refusal in Redis, decide it on the key's logs, and store the decision.

        Return the decision (``None`` if Redis failed, or another client's won).
        """
        policy = self._policy
        pause = policy.pause_for(wait)
        decision = None
        try:
            for _ in range(_DECIDE_TRIES):
                local = self._clock.now()
                record = await self._script.refuse(
                    sent_at=sent_at,
                    pause=pause.pause,
                    asked=pause.asked,
                    look_back=policy.look_back(sent_at),
                    refused=refused,
                    taken_since=self._taken_since,
                    now=local,
                )
                self._taken_since = False
                self._pause_locally(self._clock.now(), record.left, record.asked)
                policy.load(record.version, record.policy)
                decision, state = policy.decide(
                    record.policy,
                    now=record.now,
                    sent_at=sent_at,
                    wait=wait,
                    refused=refused,
                    first=record.first,
                    sends=record.sends,
                    refusals=record.refusals,
                )
                if state is None:
                    return decision  # only the pause
                decided = await self._script.decide(
                    version=record.version,
                    policy=state,
                    now=self._clock.now(),
                )
                policy.load(decided.version, decided.policy)
                if decided.stored:
                    logger.debug(
                        "429: shared rate lowered to %.1f req/s "
                        "(the key's clients got about %.1f req/s)",
                        decision.rate,
                        decision.measured,
                    )
                    return decision
        except Exception as exc:  # never fail a call because of Redis
            self._fall_back(exc)
        return None

    def _pause_locally(self, now: float, left: float, asked: float) -> None:
        """Take on the key's pause: ``left`` seconds of it, the server having asked ``asked``.

        As ``Pause.start``, with the bound already applied by whoever was refused.
        """
        pause = self._pause
        if now >= pause.until:
            pause.asked_until = -math.inf  # a new pause: an older ask no longer counts
            pause.began = now
        pause.asked_until = max(pause.asked_until, now + asked)
        if left > 0 and now + left > pause.until:
            pause.until = now + left
            pause.spread = pause_spread(left)
            self._slots.clear()  # slots from before the pause would land in it

    # -- when Redis goes away -----------------------------------------------------------

    def _current_fallback(self) -> Fallback | None:
        """The fallback in force (dropped once it is over)."""
        fallback = self._fallback
        if fallback is not None and fallback.over():
            self._fallback = fallback = None
        return fallback

    def _fall_back(self, exc: BaseException) -> None:
        """Pace alone at this client's share of the rate until Redis answers again."""
        if (self._fallback is not None and self._fallback.away) or self._closed:
            return
        relapse = self._current_fallback() is not None  # back, but not yet for long
        clock = _FleetClock(self._clock, self._slots.offset)
        now = clock.now()
        rate = self._policy.rate_at(now)
        self._fallback = fallback = Fallback(
            share=None if rate is None else rate / max(1, self._live),
            rate=rate,
            hold_until=now + RECOVERY,
            clock=clock,
            max_pause=self.max_pause,
            stats=self._stats,
            reason=exc,
            relapse=relapse,
        )
        task = asyncio.get_running_loop().create_task(fallback.reconnect(self._ping))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ping(self) -> None:
        local = self._clock.now()
        pong = await self._script.ping(now=local)
        self._slots.observe(self._clock.now(), pong.now)
        self._count_live(pong.live)

    def _count_live(self, live: int) -> None:
        """Take the key's count of live clients; a lower one only once the higher is stale.

        A loss of the state forgets the clients too: the first reply after it counts one.
        Each other client still counts as live for ``LIVE_SECONDS`` after it was last seen,
        here as in the script, so a client that falls back then keeps to its real share.
        """
        now = self._clock.now()
        if live >= self._live or now - self._live_at > LIVE_SECONDS:
            self._live = live
            self._live_at = now

    def _fleet_now(self) -> float:
        return self._slots.fleet_time(self._clock.now())


class _FleetClock:
    """Our clock read as Redis' (a fixed offset): send times paced alone are on the key's clock."""

    __slots__ = ("_clock", "_offset")

    def __init__(self, clock: Clock, offset: float) -> None:
        self._clock = clock
        self._offset = offset

    def now(self) -> float:
        return self._clock.now() - self._offset

    async def sleep(self, seconds: float) -> None:
        await self._clock.sleep(seconds)
