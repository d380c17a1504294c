"""The pacing simulator: clients paced by the SDK's own pacer against a gateway, in virtual time.

Each simulated client runs ``LocalPacer``'s synchronous core (the bucket, the adaptive
policy, the pause: the code the real client runs) and the transport's rules around it: a
call sits out a pause holding no slot, takes one of ``max_concurrency`` slots and sends
at once if a permit is free, else gives the slot back while it waits its turn under the
rate and takes a slot again to send (its send time is its permit's); it holds the slot
while its request is out, and is retried after a 429 as the client's default ``Backoff``
says. Requests reach a gateway model (``_limits``, whose limit may move) after a seeded
latency with jitter, and its answers come back the same way, with the hint written as
that gateway writes it.

Nothing sleeps: one run of a minute of traffic takes a fraction of a second, so a
scenario runs over hundreds of seeds and is judged by its distribution.

```python
gateway = Gateway(mode="token_bucket", limit=100)
run = simulate(gateway, [Workload(rate_limit=400.0, items=2000)], seed=1)
run.clients[0].finished, run.refused_share
```
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .._constants import DEFAULT_MAX_RETRY_AFTER, RATE_LIMIT_PAUSE
from .._http.retry import Backoff
from .._pacing.local import LocalPacer
from .._pacing.pause import pause_spread
from ._limits import HiddenLimit, RateMode, hidden_limit

__all__ = ["ClientRun", "Gateway", "Run", "Workload", "simulate"]

Hint = Literal["body", "header", "both", "none"]


@dataclass(frozen=True)
class Gateway:
    """A gateway's hidden limit and how it answers a refusal."""

    #: How the limit counts (``_limits``).
    mode: RateMode = "token_bucket"
    #: Requests per window at the start.
    limit: int = 100
    #: Seconds per window.
    window: float = 1.0
    #: Where a 429 says how long to wait: ``retryAfter``, ``Retry-After``, both or neither.
    hint: Hint = "both"
    #: Whether the wait is rounded up to whole seconds (as most gateways write it).
    whole_seconds: bool = False
    #: Whether answers carry ``X-RateLimit-Remaining`` / ``-Reset``.
    quota_headers: bool = False
    #: ``(second, limit)``: the limit moves to ``limit`` requests per window at ``second``.
    changes: tuple[tuple[float, int], ...] = ()
    #: Requests (numbered from 1, all clients together) refused whatever the limit says,
    #: with a 1-s hint: stray 429s, as a gateway under load sends them.
    stray: tuple[int, ...] = ()

    def limit_at(self, t: float) -> int:
        """Requests per window allowed at second ``t``."""
        limit = self.limit
        for at, value in self.changes:
            if t >= at:
                limit = value
        return limit


@dataclass(frozen=True)
class Workload:
    """One client: its configuration and the calls it makes."""

    #: The client's ``rate_limit``.
    rate_limit: float | None = 100.0
    #: A bulk run of this many calls, started at ``start``, as fast as pacing allows: as
    #: ``stream_vms`` runs it, one worker per request slot, each making one call at a time.
    items: int = 0
    #: Or calls arriving evenly at this many a second from ``start`` until ``stop``.
    demand: float = 0.0
    #: Bursts: ``(second, calls)`` arriving all at once.
    bursts: tuple[tuple[float, int], ...] = ()
    #: When the client starts, in seconds.
    start: float = 0.0
    #: When steady demand stops (``None``: with the run).
    stop: float | None = None
    #: The client's ``max_concurrency``.
    max_concurrency: int = 32
    #: The client's ``max_retries``.
    max_retries: int = 10
    #: The client's ``max_retry_after``.
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER


@dataclass
class ClientRun:
    """What one client did in a run."""

    #: Every answer the gateway gave it: (second at the gateway, 200 or 429).
    answers: list[tuple[float, int]] = field(default_factory=list)
    #: Calls that succeeded, and that failed (retries or ``max_retry_after`` spent).
    succeeded: int = 0
    failed: int = 0
    #: When its last call ended (``None``: calls were still open when the run ended).
    finished: float | None = None
    #: The adaptive rate sampled every 0.1 s: (second, rate).
    rates: list[tuple[float, float | None]] = field(default_factory=list)

    @property
    def requests(self) -> int:
        """Requests it sent."""
        return len(self.answers)

    @property
    def refused(self) -> int:
        """Of them, answered 429."""
        return sum(1 for _, status in self.answers if status == 429)

    def accepted_between(self, start: float, end: float) -> int:
        """Requests the gateway took from it in ``[start, end)``."""
        return sum(1 for t, status in self.answers if status == 200 and start <= t < end)


@dataclass
class Run:
    """One simulated run: every client's record, and the limit over time."""

    gateway: Gateway
    clients: list[ClientRun]
    duration: float

    @property
    def requests(self) -> int:
        """Requests all clients sent."""
        return sum(c.requests for c in self.clients)

    @property
    def refused_share(self) -> float:
        """Share of all requests answered 429."""
        requests = self.requests
        return sum(c.refused for c in self.clients) / requests if requests else 0.0

    def accepted_between(self, start: float, end: float) -> int:
        """Requests the gateway took from all clients in ``[start, end)``."""
        return sum(c.accepted_between(start, end) for c in self.clients)

    def per_second(self, client: int | None = None) -> list[int]:
        """Requests taken in each whole second of the run (of one client, or of all)."""
        counts = [0] * (int(self.duration) + 1)
        for c in self.clients if client is None else [self.clients[client]]:
            for t, status in c.answers:
                if status == 200 and t < len(counts):
                    counts[int(t)] += 1
        return counts


class _Clock:
    """The simulation's virtual clock, as a pacing ``Clock`` (nothing may sleep on it)."""

    def __init__(self) -> None:
        self.time = 0.0

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        raise RuntimeError("the simulator drives the pacer's synchronous core only")


@dataclass
class _Call:
    attempt: int = 0


class _Client:
    """One client's transport rules around its ``LocalPacer``."""

    def __init__(self, sim: _Sim, index: int, work: Workload) -> None:
        self.sim = sim
        self.index = index
        self.work = work
        self.pacer = LocalPacer(work.rate_limit, clock=sim.clock, max_pause=work.max_retry_after)
        self.record = ClientRun()
        self.free = work.max_concurrency
        # Waiting for a slot: before trying for a permit, or with the permit taken at a time.
        self.slot_queue: deque[tuple[_Call, float | None]] = deque()
        self.turn_queue: deque[_Call] = deque()  # holding no slot, waiting for a permit
        self.turn_timer = False
        self.busy_until = 0.0
        self.open = 0  # calls not yet ended
        self.backlog = 0  # a bulk run's items no worker has taken yet

    # -- arrivals ------------------------------------------------------------------------

    def arrive(self, count: int) -> None:
        """Calls made at once, each its own task."""
        for _ in range(count):
            self.open += 1
            self.ready(_Call())

    def bulk(self, items: int) -> None:
        """A bulk run: ``max_concurrency`` workers take the items one call at a time."""
        self.open += items
        self.backlog = items - min(items, self.work.max_concurrency)
        for _ in range(items - self.backlog):
            self.ready(_Call())

    # -- the transport's steps -----------------------------------------------------------

    def ready(self, call: _Call) -> None:
        """A call wants to send: sit out a pause (holding no slot), then take a slot."""
        now = self.sim.clock.time
        left = self.pacer.paused_for()
        if left > 0:
            if left > self.work.max_retry_after:
                self.end(call, ok=False)
                return
            # As the transport naps: at most a second, then a look at the pause again.
            nap = min(left, 1.0) + pause_spread(left) * self.sim.rng.random()
            self.sim.at(now + nap, self.ready, call)
            return
        if self.free > 0:
            self.free -= 1
            self.try_turn(call)
        else:
            self.slot_queue.append((call, None))

    def try_turn(self, call: _Call) -> None:
        """Holding a slot: send at once if a permit is free, else wait the turn without it."""
        now = self.sim.clock.time
        if (
            not self.turn_queue
            and not self.turn_timer
            and self.busy_until <= now
            and self.pacer.delay(now) <= 0
        ):
            self.pacer.take(now)
            self.busy_until = now + self.sim.send_cost
            self.send(call, now)
            return
        # As the transport does: the slot goes back while the call waits its turn.
        self.turn_queue.append(call)
        self.release_slot()
        self.serve_turns()

    def serve_turns(self) -> None:
        """Hand out permits in order while the pacer allows; else come back when it will."""
        if self.turn_timer:
            return  # the queue is served when the timer is due
        now = self.sim.clock.time
        queue = self.turn_queue
        if queue:
            delay = max(self.pacer.delay(now), self.busy_until - now)
            if delay > 0:
                self.turn_timer = True
                self.sim.at(now + delay, self.turn_due)
                return
            self.pacer.take(now)
            # Each send costs the client some CPU: the next one goes a little later.
            self.busy_until = now + self.sim.send_cost
            call = queue.popleft()
            # The permit is the call's; it sends once it has a slot again.
            if self.free > 0:
                self.free -= 1
                self.send(call, now)
            else:
                self.slot_queue.append((call, now))
            if queue:
                self.turn_timer = True
                self.sim.at(self.busy_until, self.turn_due)

    def turn_due(self) -> None:
        self.turn_timer = False
        self.serve_turns()

    def send(self, call: _Call, sent_at: float) -> None:
        """Send now a call whose permit was taken at ``sent_at`` (the pacer's send time)."""
        call.attempt += 1
        sim = self.sim
        there = sim.clock.time + sim.one_way()
        sim.at(there, sim.gateway_answers, self, call, sent_at)

    def answered(
        self, call: _Call, sent_at: float, status: int, hint: float | None, quota: float | None
    ) -> None:
        """The answer is back: release the slot, tell the pacer, retry or end the call."""
        now = self.sim.clock.time
        self.release_slot()
        if status == 200:
            self.pacer.accepted(now, sent_at, quota)
            self.end(call, ok=True)
            return
        self.pacer.refused(now, sent_at, hint)
        if (
            hint is not None and hint > self.work.max_retry_after
        ) or call.attempt > self.work.max_retries:
            self.end(call, ok=False)
        else:
            wait = self.sim.backoff.delay(call.attempt, hint)
            self.sim.at(now + wait, self.ready, call)

    def release_slot(self) -> None:
        """A slot comes free: the longest waiter for one takes it (as a semaphore hands it)."""
        if self.slot_queue:
            call, sent_at = self.slot_queue.popleft()
            if sent_at is None:
                self.try_turn(call)
            else:
                self.send(call, sent_at)
        else:
            self.free += 1

    def end(self, call: _Call, *, ok: bool) -> None:
        record = self.record
        if ok:
            record.succeeded += 1
        else:
            record.failed += 1
        self.open -= 1
        if self.open == 0:
            record.finished = self.sim.clock.time
        if self.backlog:  # the worker takes the next item
            self.backlog -= 1
            self.ready(_Call())


class _Sim:
    """The event loop: a heap of (time, order, action)."""

    def __init__(
        self,
        gateway: Gateway,
        seed: int,
        latency: float,
        jitter: float,
        duration: float,
        send_cost: float,
    ) -> None:
        self.send_cost = send_cost
        self.clock = _Clock()
        self.rng = random.Random(seed)
        self.backoff = Backoff(random=self.rng.random)  # the client's default backoff
        self.gateway = gateway
        self.limit: HiddenLimit = hidden_limit(gateway.mode, gateway.limit, gateway.window)
        self.latency = latency
        self.jitter = jitter
        self.duration = duration
        self._events: list[tuple[float, int, Callable[..., None], tuple[object, ...]]] = []
        self._order = 0
        self.seen = 0  # requests that reached the gateway

    def at(self, t: float, action: Callable[..., None], *args: object) -> None:
        self._order += 1
        heapq.heappush(self._events, (t, self._order, action, args))

    def one_way(self) -> float:
        """Seconds a request (or an answer) spends on the way: half the latency, plus jitter."""
        return self.latency / 2 + self.jitter * self.rng.random()

    def gateway_answers(self, client: _Client, call: _Call, sent_at: float) -> None:
        now = self.clock.time
        self.seen += 1
        wait = 1.0 if self.seen in self.gateway.stray else self.limit.admit(now)
        status = 200 if wait is None else 429
        client.record.answers.append((now, status))
        g = self.gateway
        hint = quota = None
        if wait is not None and g.hint != "none":
            hint = _written(wait, g.whole_seconds)
        elif wait is not None and g.quota_headers:
            hint = None  # the 429 itself carries no hint; its headers are not read for one
        if wait is None and g.quota_headers:
            remaining, reset = self.limit.quota(now)
            if remaining <= 0:
                quota = _written(reset, g.whole_seconds) if reset > 0 else RATE_LIMIT_PAUSE
        self.at(now + self.one_way(), client.answered, call, sent_at, status, hint, quota)

    def run(self, clients: Sequence[_Client]) -> None:
        events = self._events
        clock = self.clock
        end = self.duration
        while events:
            t, _, action, args = heapq.heappop(events)
            if t > end:
                break
            clock.time = t
            action(*args)


def _written(seconds: float, whole: bool) -> float:
    """A wait as the gateway writes it and the client reads it back."""
    if whole or seconds >= 1:
        return float(math.ceil(seconds))
    return round(seconds, 3)


def simulate(
    gateway: Gateway,
    clients: Sequence[Workload],
    *,
    seed: int,
    duration: float = 60.0,
    latency: float = 0.01,
    jitter: float = 0.005,
    send_cost: float = 0.0001,
) -> Run:
    """Run ``clients`` against ``gateway`` for ``duration`` virtual seconds; return the record.

    ``latency`` is the round trip in seconds; each way adds up to ``jitter`` more at
    random; ``send_cost`` is the client's CPU time per send (sends of one client are at
    least that far apart). ``seed`` fixes every random draw (latency, jitter, retry and pause spread), so
    a run repeats exactly.
    """
    sim = _Sim(gateway, seed, latency, jitter, duration, send_cost)
    simulated = [_Client(sim, i, work) for i, work in enumerate(clients)]
    for client in simulated:
        work = client.work
        if work.items:
            sim.at(work.start, client.bulk, work.items)
        for at, count in work.bursts:
            sim.at(at, client.arrive, count)
        if work.demand > 0:
            stop = duration if work.stop is None else work.stop
            n = int((stop - work.start) * work.demand)
            for i in range(n):
                sim.at(work.start + i / work.demand, client.arrive, 1)
    for at, limit in gateway.changes:
        sim.at(at, sim.limit.set_limit, limit, at)
    for i in range(int(duration * 10)):
        sim.at(i / 10, _sample, simulated, i / 10)
    sim.run(simulated)
    return Run(gateway, [c.record for c in simulated], duration)


def _sample(clients: Sequence[_Client], t: float) -> None:
    for client in clients:
        client.record.rates.append((t, client.pacer.rate))
