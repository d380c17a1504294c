"""Pacing: the rate limit, the pause after a 429, the adaptive rate and the shared limit.

Modules: the contract (``pacer``), the pause (``pause``), the send bucket (``bucket``), the
adaptive rate policy (``adaptive``), the local pacer (``local``), the shared limit
(``shared``); the pacing simulator lives in ``hostup_async.testing``.
"""

from .local import LocalPacer
from .pacer import Clock, LoopClock, Pacer
from .pause import Pause, PauseTooLong

__all__ = ["Clock", "LocalPacer", "LoopClock", "Pacer", "Pause", "PauseTooLong"]
