"""The API's answers as the fake server builds them: success envelopes, errors, ``success: false``.

The server and the fault injector (``_faults``) both build from here, so neither imports
the other for them.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from ._data import new_request_id, now_stamp

__all__ = ["TITLES", "error_body", "error_response", "success_head", "unsuccessful_response"]

#: The ``error`` title of the API's error envelope, by status.
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def success_head() -> bytes:
    """Return the start of a success envelope, up to the ``data`` value."""
    return (
        b'{"success":true,"timestamp":"'
        + now_stamp().encode()
        + b'","requestId":"'
        + new_request_id().encode()
        + b'","data":'
    )


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    """Return the API's error envelope for ``status``."""
    return {
        "error": TITLES.get(status, "Error"),
        "message": message,
        "code": code,
        "timestamp": now_stamp(),
        "requestId": new_request_id(),
    }


def error_response(status: int, code: str, message: str) -> web.Response:
    """Return an error answer in the API's JSON error envelope."""
    return web.Response(
        status=status,
        body=msgspec.json.encode(error_body(status, code, message)),
        content_type="application/json",
    )


def unsuccessful_response() -> web.Response:
    """Return a 200 whose envelope says ``success: false``, as some real endpoints do."""
    body = {"success": False, **error_body(200, "OPERATION_FAILED", "The operation failed")}
    return web.Response(body=msgspec.json.encode(body), content_type="application/json")
