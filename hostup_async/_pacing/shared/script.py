"""``StoreScript``: the client of ``store.lua``, one method per operation, typed replies.

The script's keys, arguments and replies are written out at the top of ``store.lua``; this
module is the only Python that knows them. Every call carries a request id, so a call that
the Redis client library retries (redis-py 8 retries a caller's client by default) never
reserves twice: the script hands back its first reply instead.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Sequence
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import msgspec

from ..._constants import RATE_BURST_SECONDS
from ..._events import ClientStats

if TYPE_CHECKING:
    from .connect import AnyRedis

__all__ = [
    "Decided",
    "Noted",
    "Outdated",
    "Paused",
    "Pong",
    "Refused",
    "Reserved",
    "StoreScript",
    "Timing",
]

#: The script's source, read from the package's ``store.lua``.
SOURCE = files(__package__).joinpath("store.lua").read_text(encoding="utf-8")


class Timing(msgspec.Struct, frozen=True):
    """How long the store keeps things, in seconds."""

    #: Every key outlives the last call by this much (beyond any pause).
    keep: float
    #: After a loss of the state, nothing is reserved for this long.
    recovery: float
    #: Send times are kept this long (the policy's longest look back).
    log_span: float
    #: A client counts as live this long after its last call.
    live: float


class Reserved(msgspec.Struct, frozen=True, gc=False):
    """Send times reserved for this client, on Redis' clock (fewer than asked: come back)."""

    now: float
    generation: str
    live: int
    times: list[float]
    #: When the first time not reserved would be (``None``: every one asked was).
    next_at: float | None


class Paused(msgspec.Struct, frozen=True, gc=False):
    """Nothing reserved: the key is paused after a refusal."""

    now: float
    generation: str
    live: int
    #: Seconds left of the key's pause.
    left: float
    #: Seconds left of what the server asked for, which may be longer.
    asked: float


class Outdated(msgspec.Struct, frozen=True, gc=False):
    """Nothing reserved: the caller's policy is older than the key's (here it is)."""

    now: float
    generation: str
    live: int
    version: int
    policy: bytes


class Refused(msgspec.Struct, frozen=True, gc=False):
    """A refusal recorded: the key's pause and policy, and the logs the policy measures."""

    now: float
    generation: str
    version: int
    policy: bytes
    left: float
    asked: float
    #: The key's first send (``None``: none yet).
    first: float | None
    sends: list[float]
    refusals: list[float]


class Decided(msgspec.Struct, frozen=True, gc=False):
    """The policy stored now: the caller's (``stored``), or another client's first."""

    now: float
    stored: bool
    version: int
    policy: bytes


class Pong(msgspec.Struct, frozen=True, gc=False):
    """Redis answered, and took a write."""

    now: float
    generation: str
    live: int


class Noted(msgspec.Struct, frozen=True, gc=False):
    """Send times recorded."""

    now: float
    generation: str


class StoreScript:
    """Runs ``store.lua`` for one client on one key namespace; each call bounded in time."""

    def __init__(
        self,
        redis: AnyRedis,
        namespace: str,
        *,
        timing: Timing,
        timeout: float,
        redis_time: bool = True,
        stats: ClientStats | None = None,
    ) -> None:
        self._client_id = os.urandom(8).hex()
        self._keys = [
            f"{namespace}:state",
            f"{namespace}:sends",
            f"{namespace}:refusals",
            f"{namespace}:clients",
            f"{namespace}:reply:{self._client_id}",
        ]
        self._script = redis.register_script(SOURCE)
        self._timing = [
            repr(timing.keep),
            repr(timing.recovery),
            repr(timing.log_span),
            repr(timing.live),
        ]
        self._timeout = timeout
        self._redis_time = redis_time
        self._requests = itertools.count()
        #: The state generation last seen ('' before the first reply).
        self.generation = ""
        #: Counts the round trips (``shared_round_trips``).
        self.stats = stats if stats is not None else ClientStats()

    async def reserve(
        self,
        *,
        count: int,
        ahead: int,
        lease_horizon: float,
        cap: float,
        rate: float | None,
        window_margin: float,
        version: int,
        now: float,
        late: float = 0.0,
    ) -> Reserved | Paused | Outdated:
        """Reserve ``count`` send times, and up to ``ahead`` more due within ``lease_horizon``.

        A slot leased ahead may go up to ``late`` seconds after its time: the key's log
        counts it then.
        """
        reply = await self._call(
            "reserve",
            now,
            str(count),
            str(ahead),
            repr(lease_horizon),
            repr(cap),
            _number(rate),
            repr(RATE_BURST_SECONDS),
            repr(window_margin),
            str(version),
            repr(late),
        )
        kind, at, generation, live = (
            _text(reply[0]),
            float(reply[1]),
            _text(reply[2]),
            int(reply[3]),
        )
        if kind == "slots":
            following = _text(reply[4])
            return Reserved(
                at,
                generation,
                live,
                _times(reply[5]),
                float(following) if following else None,
            )
        if kind == "paused":
            return Paused(at, generation, live, float(reply[4]), float(reply[5]))
        return Outdated(at, generation, live, int(reply[4]), _bytes(reply[5]))

    async def refuse(
        self,
        *,
        sent_at: float,
        pause: float,
        asked: float,
        look_back: float,
        refused: bool,
        taken_since: bool,
        now: float,
    ) -> Refused:
        """Record a refusal and the key's pause; read the logs ``look_back`` s before it."""
        reply = await self._call(
            "refuse",
            now,
            repr(sent_at),
            repr(pause),
            repr(asked),
            repr(look_back),
            "1" if refused else "0",
            "1" if taken_since else "0",
        )
        first = _text(reply[7])
        return Refused(
            float(reply[1]),
            _text(reply[2]),
            int(reply[3]),
            _bytes(reply[4]),
            float(reply[5]),
            float(reply[6]),
            float(first) if first else None,
            _times(reply[8]),
            _times(reply[9]),
        )

    async def decide(self, *, version: int, policy: bytes, now: float) -> Decided:
        """Store ``policy`` if the key's is still ``version`` (compare and set)."""
        reply = await self._call("decide", now, str(version), policy)
        return Decided(
            float(reply[1]), _text(reply[0]) == "decided", int(reply[2]), _bytes(reply[3])
        )

    async def ping(self, *, now: float) -> Pong:
        """Check that Redis answers and takes a write (a read-only replica does not)."""
        reply = await self._call("ping", now)
        return Pong(float(reply[1]), _text(reply[2]), int(reply[3]))

    async def note(self, times: Sequence[float], *, now: float) -> Noted:
        """Record sends at ``times`` (the policy's table tests drive the log so)."""
        reply = await self._call("note", now, *map(repr, times))
        return Noted(float(reply[1]), _text(reply[2]))

    async def _call(self, op: str, now: float, *args: str | bytes) -> list[Any]:
        request = f"{self._client_id}-{next(self._requests)}"
        argv = [
            op,
            "" if self._redis_time else repr(now),
            self._client_id,
            request,
            self.generation,
            *self._timing,
            *args,
        ]
        self.stats.shared_round_trips += 1
        reply = list(await _within(self._script(keys=self._keys, args=argv), self._timeout))
        if op != "decide":
            self.generation = _text(reply[2])
        return reply


async def _within(call: Awaitable[Any], seconds: float) -> Any:
    """``call``'s result, or ``TimeoutError`` after ``seconds``.

    ``asyncio.timeout`` where there is one (3.11+): it runs the call in the caller's task,
    where ``wait_for`` before 3.12 starts a task of its own: 4% of a round trip's
    CPU.
    """
    if _TIMEOUT is None:  # Python 3.10
        return await asyncio.wait_for(call, seconds)
    async with _TIMEOUT(seconds):
        return await call


_TIMEOUT = getattr(asyncio, "timeout", None)


def _text(value: Any) -> str:
    """A reply element as text (a caller's Redis may decode replies, ours does not)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _times(value: Any) -> list[float]:
    """A reply's list of times (one element: the times separated by spaces)."""
    return [float(t) for t in value.split()]


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _number(value: float | None) -> str:
    return "" if value is None else repr(value)
