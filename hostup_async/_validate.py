"""Checks on what callers pass in, run before any I/O so bad input never reaches the API."""

from __future__ import annotations

import ipaddress
import math
import os
import ssl
import sys
from typing import Any, overload
from urllib.parse import urlsplit

from ._constants import API_KEY_ENV, MAX_VMID
from ._exceptions import ConfigurationError, InvalidVMIDError, InvalidVMIDTypeError

__all__ = [
    "check_api_key",
    "check_base_url",
    "check_count",
    "check_hook",
    "check_positive",
    "check_tls",
    "check_user_agent",
    "check_vmid",
    "describe",
]


def check_vmid(vmid: Any) -> int:
    """Return ``vmid`` if it is an int from 1 to 2**63 - 1; raise a TypeError or ValueError otherwise."""
    if isinstance(vmid, bool) or not isinstance(vmid, int):
        raise InvalidVMIDTypeError(
            f"vmid must be an int, not {type(vmid).__name__}: {describe(vmid)}"
        )
    if vmid < 1:
        raise InvalidVMIDError(f"vmid must be 1 or more, got {describe(vmid)}")
    if vmid > MAX_VMID:
        raise InvalidVMIDError(f"vmid must be at most 2**63 - 1, got {describe(vmid)}")
    return int(vmid)


def describe(value: Any, width: int = 40) -> str:
    """Return a short repr of a caller's value for an error message; it never raises.

    A 5000-digit int has no str (Python's digit limit) and a caller's object may have a
    repr that fails or runs to megabytes: neither may turn a clear error into a crash.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an int of {value.bit_length()} bits"
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__}>"
    return text if len(text) <= width else text[: width - 3] + "..."


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


def check_base_url(base_url: Any, *, allow_http: bool = False) -> str:
    """Return ``base_url`` without a trailing slash; it must be an absolute http(s) URL.

    Plain ``http://`` would send the API key in cleartext, so it is refused for any host
    but loopback unless ``allow_http`` is set.
    """
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
        raise ConfigurationError(
            f"base_url must be an absolute http(s) URL, got {describe(base_url, 200)}"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError("base_url must not have a query or fragment: paths follow it")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port range only when asked
    except ValueError:
        raise ConfigurationError("base_url has an invalid port") from None
    if parts.scheme == "http" and not allow_http and not is_loopback(parts.hostname):
        raise ConfigurationError(
            f"base_url {describe(base_url, 200)} is plain http to a host other than loopback: "
            "the API key would travel in cleartext. Use https, or pass allow_http=True "
            "if the network in between is yours"
        )
    return base_url.rstrip("/")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a URL's host name) names this machine: ``localhost`` or a loopback IP."""
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    """Return ``value`` as a float if it is a finite normal number above zero (or ``None`` when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # an int like 10**400 is a number no float can hold
        number = math.inf
    # A denormal (1e-320) is refused too: its reciprocal, a period, overflows to infinity.
    if not math.isfinite(number) or number < sys.float_info.min:
        raise ConfigurationError(f"{name} must be a finite number above 0, got {describe(value)}")
    return number


def check_count(name: str, value: Any, *, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int from ``minimum`` to ``maximum`` (no upper bound by default)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ConfigurationError(f"{name} must be {minimum} or more, got {describe(value)}")
    if maximum is not None and value > maximum:
        raise ConfigurationError(f"{name} must be at most {maximum}, got {describe(value)}")
    return int(value)


def check_tls(tls: Any) -> ssl.SSLContext | None:
    """Return the SSL context for ``tls``: a context as given, or one trusting a CA bundle file."""
    if tls is None or isinstance(tls, ssl.SSLContext):
        return tls
    if not isinstance(tls, (str, os.PathLike)):
        raise TypeError(
            f"tls must be an ssl.SSLContext or a CA bundle path, not {type(tls).__name__}"
        )
    try:
        return ssl.create_default_context(cafile=os.fspath(tls))
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigurationError(
            f"tls: cannot load a CA bundle from {describe(os.fspath(tls), 200)}: {exc}"
        ) from None


def check_hook(name: str, hook: Any) -> None:
    """Refuse a hook that is neither ``None`` nor callable, before it would fail mid-request."""
    if hook is not None and not callable(hook):
        raise TypeError(f"{name} must be callable, not {type(hook).__name__}")
