"""The one place an HTTP answer becomes a HostUp error: status, message, code, request id, hint.

Every string taken from the server is cut to a bound, and the transport masks the API key
in the raw body before any of this runs, so no error made here can carry it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .._constants import BASE_URL_ENV, DEFAULT_BASE_URL
from .._exceptions import APIError, NotFoundError, RateLimitError, error_for_status
from .._models import text_or_none
from .hints import parse_retry_after

__all__ = ["api_error"]

# Bounds on the server's text kept in an error: a message or a non-JSON body (an HTML
# page). A hostile server may send megabytes of either.
_MAX_TEXT = 500
# Deepest nesting of an error body kept as decoded JSON; real ones nest two or three deep.
_MAX_DEPTH = 64

_BASE_URL_HINT = (
    "; a 404 that is not HostUp's JSON usually means the base URL{at} is wrong: check "
    f"base_url (or ${BASE_URL_ENV}); HostUp's API root is {DEFAULT_BASE_URL}, ending in /api"
)


def api_error(
    status: int,
    raw: bytes | bytearray | memoryview | str,
    retry_after: str | None = None,
    *,
    base_url: str | None = None,
) -> APIError:
    """Build the error for an answer that is one: a non-2xx status, or ``success: false``.

    The body is parsed once. One that is not JSON (a gateway's HTML page) maps by status,
    with its first characters as ``body``. ``retry_after`` is the ``Retry-After`` header,
    read for a 429; ``base_url`` is named in the hint a bare 404 gets.
    """
    try:
        doc: Any = msgspec.json.decode(raw)
    except (msgspec.DecodeError, ValueError, RecursionError):
        doc = None
    fields = doc if isinstance(doc, dict) else {}
    body: Any = doc
    if doc is None or not _shallow(doc):
        # Not JSON, or JSON nested so deep that printing, copying or pickling the error
        # would exhaust the recursion limit: keep the start of its text instead.
        text = (
            raw if isinstance(raw, str) else bytes(raw[: _MAX_TEXT * 4]).decode("utf-8", "replace")
        )
        body = text[:_MAX_TEXT]
    message = text_or_none(fields.get("message"), _MAX_TEXT) or text_or_none(
        fields.get("error"), _MAX_TEXT
    )
    code = text_or_none(fields.get("code"))
    request_id = text_or_none(fields.get("requestId"))
    cls = error_for_status(status) if status >= 400 else APIError
    if not message:
        message = (
            f"the API answered {status} without an error message"
            if status >= 300
            else "the API reported success: false"
        )
        if cls is NotFoundError and not fields:
            message += _BASE_URL_HINT.format(at=f" ({base_url})" if base_url else "")
    if cls is RateLimitError:
        return RateLimitError(
            message,
            status=status,
            code=code,
            request_id=request_id,
            body=body,
            retry_after=parse_retry_after(fields.get("retryAfter"), retry_after),
        )
    return cls(message, status=status, code=code, request_id=request_id, body=body)


def _shallow(value: Any, limit: int = _MAX_DEPTH) -> bool:
    """Whether ``value`` nests lists and objects at most ``limit`` deep (walked without recursion)."""
    stack = [(value, 1)] if isinstance(value, (list, dict)) else []
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return False
        stack.extend((c, depth + 1) for c in children if isinstance(c, (list, dict)))
    return True
