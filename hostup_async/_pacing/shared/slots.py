"""``SlotStore``: send times reserved in Redis, held locally until a send takes them.

A slot is a reserved send time on Redis' clock (what the pacer hands out as the send
time) and on this client's clock (when to send), and the last moment it may still go.
Slots leased ahead, or left by a cancelled waiter, wait here for the next send; one too
late to use is dropped.

The store also measures how late replies arrive (``lag``): a reply read later than the
quickest one did brings slots already that late.
"""

from __future__ import annotations

import bisect
import math

__all__ = ["Slot", "SlotStore"]

# How fast the clock offset estimate may creep up, in seconds per second: NTP slews a
# clock by at most 500 ppm.
_DRIFT = 0.0005
# A spare slot is still worth using this late, in seconds (later, it would bunch sends).
STALE_SLOT = 0.05
#: Most seconds after its time a slot leased ahead may still go: a client too slow to use
#: its lease within ``STALE_SLOT`` has it logged (and counted in the key's 1-s window)
#: this much later instead. Below ``SHARED_RESERVE_AHEAD``, so the wait after a loss of
#: the state (``RECOVERY``) still outlasts every send reserved before it.
LATE_MAX = 0.25
# Weight of the newest sample in the running estimates (reply lag).
_NEWEST = 0.25


class Slot:
    """A reserved send time on Redis' clock (``at``) and on ours (``due``), and its last moment.

    ``until``: the last moment on our clock it may still go.
    """

    __slots__ = ("at", "due", "until")

    def __init__(self, at: float, due: float, until: float) -> None:
        self.at = at
        self.due = due
        self.until = until


class SlotStore:
    """Spare slots in order of when they are due, and the offset between the two clocks."""

    def __init__(self) -> None:
        self._spare: list[Slot] = []
        #: Spare slots that went stale unused.
        self.dropped = 0
        self._offset = math.inf  # our clock minus Redis'
        self._offset_stamp = 0.0
        #: Seconds replies arrive later than the quickest one did (a running average).
        self.lag = 0.0

    def __len__(self) -> int:
        return len(self._spare)

    @property
    def offset(self) -> float:
        """Our clock minus Redis' (0 before the first reply)."""
        return 0.0 if self._offset == math.inf else self._offset

    def fleet_time(self, local: float) -> float:
        """A time on our clock, on Redis'."""
        return local - self.offset

    def slots(
        self,
        times: list[float],
        *,
        local: float,
        server_now: float,
        leased_from: int | None = None,
        late: float = STALE_SLOT,
    ) -> list[Slot]:
        """Turn reserved times from a reply read at ``local`` into slots.

        Those from index ``leased_from`` on were leased ahead: each may go up to ``late``
        seconds after its time (the others ``STALE_SLOT``).
        """
        offset = self.observe(local, server_now)
        lag = local - server_now - offset
        self.lag += _NEWEST * (lag - self.lag)
        cut = len(times) if leased_from is None else leased_from
        grace = max(late, STALE_SLOT)
        return [
            Slot(t, t + offset, t + offset + (STALE_SLOT if i < cut else grace))
            for i, t in enumerate(times)
        ]

    def observe(self, local: float, server_now: float) -> float:
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

    def first(self, now: float) -> Slot | None:
        """The earliest spare slot still usable (it stays in), dropping stale ones."""
        spare = self._spare
        while spare and spare[0].until < now:
            del spare[0]  # too late to use: sending now would bunch with later slots
            self.dropped += 1
        return spare[0] if spare else None

    def take_first(self) -> None:
        """Remove the slot ``first`` returned."""
        del self._spare[0]

    def keep(self, slot: Slot) -> None:
        """Keep a slot for a later send."""
        spare = self._spare
        if not spare or spare[-1].due <= slot.due:
            spare.append(slot)  # the common case: a lease's slots come in order
        else:
            bisect.insort(spare, slot, key=_due)

    def clear(self) -> None:
        """Drop every spare slot (a pause began: they would land in it)."""
        self._spare.clear()


def _due(slot: Slot) -> float:
    return slot.due
