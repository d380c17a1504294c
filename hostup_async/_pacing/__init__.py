"""Pacing: the rate limit, the pause after a 429, the adaptive rate and the shared limit."""

from .pacer import Clock, LocalPacer, LoopClock, Pacer, PauseTooLong

__all__ = ["Clock", "LocalPacer", "LoopClock", "Pacer", "PauseTooLong"]
