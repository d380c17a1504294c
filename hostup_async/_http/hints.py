"""The server's hints about waiting: ``retryAfter``, ``Retry-After`` and a spent quota."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from typing import Any

from .._constants import RATE_LIMIT_PAUSE

__all__ = ["parse_retry_after", "quota_spent_wait"]

_MAX_SERVER_WAIT = 3600.0
# A reset above this is a Unix time, not seconds from now (a year in seconds is far below).
_EPOCH_SECONDS = 1_000_000_000.0
# Bounds on what a retry hint may be before it is read: numbers are clamped here (above
# any Unix time, and far above any cap applied after reading), and text longer than any
# date or number is junk.
_MAX_HINT = 10**12
_MAX_HINT_TEXT = 64


def parse_retry_after(
    body_value: Any, header: str | None, *, now: float | None = None
) -> float | None:
    """Return the server's requested wait in seconds, from the body's ``retryAfter`` or the header.

    The body wins because HostUp documents it; the header may be seconds or an HTTP date.
    Unusable values give ``None``; absurd ones are capped at an hour.
    """
    for value in (body_value, header):
        seconds = _seconds(value, now)
        if seconds is not None:
            return min(seconds, _MAX_SERVER_WAIT)
    return None


def _seconds(value: Any, now: float | None) -> float | None:
    """Read one retry hint: a number, a numeric string, or an HTTP date."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        # A 400-digit JSON number is a Python int that float() cannot hold: clamp it.
        seconds = float(min(max(value, 0), _MAX_HINT))
    elif isinstance(value, float):
        seconds = value
    elif isinstance(value, str) and len(value) <= _MAX_HINT_TEXT:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(text)
                seconds = when.timestamp() - (time.time() if now is None else now)
            except (TypeError, ValueError, IndexError, OverflowError):
                return None  # not a date, or a year no datetime can hold
    else:
        return None  # a list, an object, or text far too long to be a wait
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(seconds, 0.0)


def quota_spent_wait(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Return the seconds until the quota resets when an answer says none is left, else ``None``.

    Reads ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (seconds, or a Unix time as
    some gateways send it). A spent quota with no usable reset gives the default pause.
    """
    remaining = headers.get("X-RateLimit-Remaining")
    if remaining is None or remaining.strip() != "0":
        return None
    reset = _seconds(headers.get("X-RateLimit-Reset"), None)
    if reset is not None and reset > _EPOCH_SECONDS:
        reset = max(0.0, reset - (time.time() if now is None else now))
    return RATE_LIMIT_PAUSE if reset is None else min(reset, _MAX_SERVER_WAIT)
