"""``FleetPolicy``: the adaptive policy (``AdaptiveRate``) for every client on a key.

The policy runs here, in Python, exactly as ``LocalPacer`` runs it; Redis only stores its
state. A refusal is decided on the key's logs (every client's sends and refusals, read
back from Redis) and the stored state, then written back by compare-and-set on the
state's version: when two clients decide at once, the first wins and the other takes its
decision. Between refusals each client reads the rate from its copy of the state.

``AdaptiveRate`` exports and restores its own state (``RateState``); this module stores it.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from ..adaptive import _MAX_SPAN, AdaptiveRate, Decision, RateState

__all__ = ["LOG_SPAN", "FleetPolicy"]

#: Seconds of sends the key's log keeps, and a decision reads: the policy's longest
#: window (a minute), and a little more.
LOG_SPAN = _MAX_SPAN + 2.0


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(RateState).decode


class FleetPolicy:
    """The key's adaptive rate, as last stored in Redis (``version``), and its decisions."""

    def __init__(self, ceiling: float | None, *, max_pause: float) -> None:
        self._ceiling = ceiling
        self._max_pause = max_pause
        self._current = AdaptiveRate(ceiling, max_pause=max_pause)
        #: The version of the stored state this copy holds (0: none stored yet).
        self.version = 0

    @property
    def lowered(self) -> int:
        """Times a refusal lowered the key's rate."""
        return self._current.lowered

    def rate_at(self, now: float) -> float | None:
        """The key's rate at ``now`` (Redis' clock)."""
        return self._current.rate_at(now)

    def pause_for(self, wait: float | None) -> Decision:
        """The pause a refusal with the server's ``wait`` brings, before anything is measured."""
        return AdaptiveRate(None, max_pause=self._max_pause).on_refused(0.0, 0.0, wait)

    def load(self, version: int, state: bytes) -> None:
        """Take the stored state ``version`` (a newer one than held)."""
        if version == self.version:
            return
        self._current = self._restore(state)
        self.version = version

    def look_back(self, sent_at: float) -> float:
        """Seconds of logs before ``sent_at`` a decision reads (0: it decides nothing new).

        All the log keeps, once per burst: the policy looks back over its window, the
        last pause and the time since its last decision.
        """
        return 0.0 if sent_at < self._current.epoch else LOG_SPAN

    def decide(
        self,
        state: bytes,
        *,
        now: float,
        sent_at: float,
        wait: float | None,
        refused: bool,
        first: float | None,
        sends: Iterable[float],
        refusals: Iterable[float],
    ) -> tuple[Decision, bytes | None]:
        """Decide a refusal on the stored ``state`` and the key's logs; the new state if any.

        ``first`` is the key's first send (the policy's window is shorter right after it).
        """
        policy = self._restore(state)
        policy.replay(first, sends, refusals)
        decision = policy.on_refused(now, sent_at, wait, refused=refused)
        if decision.rate is None:
            return decision, None
        return decision, _encode(policy.state())

    def _restore(self, state: bytes) -> AdaptiveRate:
        policy = AdaptiveRate(self._ceiling, max_pause=self._max_pause)
        if state:
            policy.restore(_decode(state))
        return policy
