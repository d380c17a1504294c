"""Checks on what callers pass in, run before any I/O so bad input never reaches the API."""

from __future__ import annotations

import math
import os
from typing import Any, overload
from urllib.parse import urlsplit

from ._constants import API_KEY_ENV
from ._exceptions import ConfigurationError, InvalidVMIDError, InvalidVMIDTypeError

__all__ = [
    "check_api_key",
    "check_base_url",
    "check_count",
    "check_hook",
    "check_positive",
    "check_user_agent",
    "check_vmid",
]


def check_vmid(vmid: Any) -> int:
    """Return ``vmid`` if it is an int of at least 1; raise a TypeError or ValueError otherwise."""
    if isinstance(vmid, bool) or not isinstance(vmid, int):
        raise InvalidVMIDTypeError(f"vmid must be an int, not {type(vmid).__name__}: {vmid!r:.40}")
    if vmid < 1:
        raise InvalidVMIDError(f"vmid must be 1 or more, got {vmid}")
    return int(vmid)


def check_api_key(api_key: Any) -> str:
    """Return the key to use, falling back to ``HOSTUP_API_KEY``; refuse a missing or unsafe key."""
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV)
        source = f"the {API_KEY_ENV} environment variable"
    else:
        source = "api_key"
    if api_key is None or (isinstance(api_key, str) and not api_key.strip()):
        raise ConfigurationError(
            f"no API key: pass api_key=... or set the {API_KEY_ENV} environment variable"
        )
    if not isinstance(api_key, str):
        raise TypeError(f"api_key must be a str, not {type(api_key).__name__}")
    if not (api_key.isascii() and api_key.isprintable()) or api_key != api_key.strip():
        # Never echo the key itself: say where it came from and what is wrong with it. A key
        # goes into an HTTP header, so control characters (CR/LF above all) are refused.
        raise ConfigurationError(
            f"the API key from {source} contains control characters, non-ASCII characters "
            "or surrounding whitespace"
        )
    return api_key


def check_base_url(base_url: Any) -> str:
    """Return ``base_url`` without a trailing slash; it must be an absolute http(s) URL."""
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a str, not {type(base_url).__name__}")
    if not (base_url.isascii() and base_url.isprintable()) or " " in base_url:
        raise ConfigurationError("base_url must not contain whitespace or control characters")
    parts = urlsplit(base_url)
    if "@" in parts.netloc:
        # Credentials in the URL would show in reprs and logs (the key goes in a header),
        # so this is checked first and the URL is never echoed.
        raise ConfigurationError("base_url must not contain credentials (user:password@)")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
    if parts.query or parts.fragment:
        raise ConfigurationError("base_url must not have a query or fragment: paths follow it")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port range only when asked
    except ValueError:
        raise ConfigurationError("base_url has an invalid port") from None
    return base_url.rstrip("/")


def check_user_agent(user_agent: Any) -> str | None:
    """Return a ``User-Agent`` product token to send before the SDK's, or ``None``."""
    if user_agent is None:
        return None
    if not isinstance(user_agent, str):
        raise TypeError(f"user_agent must be a str, not {type(user_agent).__name__}")
    # It goes into a header: CR/LF would split it, so only printable ASCII is allowed.
    if not user_agent.strip() or not (user_agent.isascii() and user_agent.isprintable()):
        raise ConfigurationError("user_agent must be printable ASCII text, such as 'my-app/1.2'")
    return user_agent.strip()


@overload
def check_positive(name: str, value: Any) -> float: ...
@overload
def check_positive(name: str, value: Any, *, allow_none: bool) -> float | None: ...
def check_positive(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    """Return ``value`` as a float if it is a finite number above zero (or ``None`` when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{name} must be a finite number above 0, got {value!r}")
    return float(value)


def check_count(name: str, value: Any, *, minimum: int) -> int:
    """Return ``value`` if it is an int of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ConfigurationError(f"{name} must be {minimum} or more, got {value}")
    return value


def check_hook(name: str, hook: Any) -> None:
    """Refuse a hook that is neither ``None`` nor callable, before it would fail mid-request."""
    if hook is not None and not callable(hook):
        raise TypeError(f"{name} must be callable, not {type(hook).__name__}")
