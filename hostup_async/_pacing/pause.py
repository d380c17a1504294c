"""The pause after a refusal: how far its waiters spread out when it ends."""

from __future__ import annotations

from .._constants import PAUSE_JITTER, PAUSE_JITTER_CAP

__all__ = ["pause_spread"]


def pause_spread(pause: float) -> float:
    """Return how far past a client-wide pause of ``pause`` seconds its waiters spread out.

    Each request held by the pause wakes at the pause's end plus a uniform share of this,
    never earlier, so they do not all hit the server at the same instant.
    """
    return min(PAUSE_JITTER_CAP, max(pause, 0.0) * PAUSE_JITTER)
