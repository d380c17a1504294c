"""``SlotStore``: send times reserved in Redis, held locally until a send takes them.

A slot is a reserved send time on Redis' clock (what the pacer hands out as the send
time) and on this client's clock (when to send). Slots leased ahead, or left by a
cancelled waiter, wait here for the next send; one too late to use is dropped.
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


class Slot:
    """A reserved send time: on Redis' clock (``at``) and on this client's (``due``)."""

    __slots__ = ("at", "due")

    def __init__(self, at: float, due: float) -> None:
        self.at = at
        self.due = due


class SlotStore:
    """Spare slots in order of when they are due, and the offset between the two clocks."""

    def __init__(self) -> None:
        self._spare: list[Slot] = []
        #: Spare slots that went stale unused.
        self.dropped = 0
        self._offset = math.inf  # our clock minus Redis'
        self._offset_stamp = 0.0

    def __len__(self) -> int:
        return len(self._spare)

    @property
    def offset(self) -> float:
        """Our clock minus Redis' (0 before the first reply)."""
        return 0.0 if self._offset == math.inf else self._offset

    def fleet_time(self, local: float) -> float:
        """A time on our clock, on Redis'."""
        return local - self.offset

    def slots(self, times: list[float], *, local: float, server_now: float) -> list[Slot]:
        """Turn reserved times from a reply read at ``local`` into slots."""
        offset = self.observe(local, server_now)
        return [Slot(t, t + offset) for t in times]

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
        while spare and spare[0].due < now - STALE_SLOT:
            del spare[0]  # too late to use: sending now would bunch with later slots
            self.dropped += 1
        return spare[0] if spare else None

    def take_first(self) -> None:
        """Remove the slot ``first`` returned."""
        del self._spare[0]

    def keep(self, slot: Slot) -> None:
        """Keep a slot for a later send."""
        bisect.insort(self._spare, slot, key=_due)

    def clear(self) -> None:
        """Drop every spare slot (a pause began: they would land in it)."""
        self._spare.clear()


def _due(slot: Slot) -> float:
    return slot.due
