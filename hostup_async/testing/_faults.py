"""Faults the fake server can inject: the ways real gateways and servers fail."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

__all__ = ["Fault", "FaultKind", "apply_fault"]

#: The kinds of fault: an error status, a connection dropped before or during the answer,
#: a body cut short, malformed JSON, ``success: false`` in a 200, or a slow answer.
FaultKind = Literal["status", "drop", "truncate", "malformed", "unsuccessful", "slow"]

_GATEWAY_HTML = (
    b"<html><head><title>%d %s</title></head><body><center><h1>%d %s</h1></center>"
    b"<hr><center>nginx</center></body></html>"
)


@dataclass(frozen=True)
class Fault:
    """One injected failure; build it with the class methods, e.g. ``Fault.http(503)``."""

    kind: FaultKind
    """What goes wrong."""
    status: int = 0
    """HTTP status for ``status`` faults."""
    html: bool = False
    """Send an HTML gateway page instead of the JSON error envelope."""
    retry_after: float = 1.0
    """Seconds to put in ``retryAfter`` for a 429."""
    delay: float = 0.0
    """Seconds to stall for ``slow`` faults (then answer normally)."""

    @classmethod
    def http(cls, status: int, *, html: bool = False, retry_after: float = 1.0) -> Fault:
        """Answer with an error ``status`` (a 429 carries ``retryAfter``)."""
        return cls("status", status=status, html=html, retry_after=retry_after)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection before any answer."""
        return cls("drop")

    @classmethod
    def truncate(cls) -> Fault:
        """Start a 200 answer and close the connection halfway through the body."""
        return cls("truncate")

    @classmethod
    def malformed(cls) -> Fault:
        """Answer 200 with a body that is not valid JSON."""
        return cls("malformed")

    @classmethod
    def unsuccessful(cls) -> Fault:
        """Answer 200 with ``success: false`` and an error code."""
        return cls("unsuccessful")

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Stall ``delay`` seconds, then answer normally (slower than a short client timeout)."""
        return cls("slow", delay=delay)


async def apply_fault(fault: Fault, request: web.Request, body: bytes) -> web.StreamResponse | None:
    """Carry out ``fault`` for ``request``; ``None`` means "now answer normally" (after a stall)."""
    from ._server import error_response, rate_limited_response, unsuccessful_response

    if fault.kind == "slow":
        await asyncio.sleep(fault.delay)
        return None
    if fault.kind == "status":
        if fault.status == 429 and not fault.html:
            return rate_limited_response(fault.retry_after)
        if fault.html:
            title = web.Response(status=fault.status).reason.encode()
            page = _GATEWAY_HTML % (fault.status, title, fault.status, title)
            return web.Response(status=fault.status, body=page, content_type="text/html")
        return error_response(fault.status, "FAULT_INJECTED", "Injected fault")
    if fault.kind == "malformed":
        return web.Response(body=body[: len(body) // 2] + b"<!--", content_type="application/json")
    if fault.kind == "unsuccessful":
        return unsuccessful_response()
    transport = request.transport
    if fault.kind == "drop":
        if transport is not None:
            transport.abort()
        return web.Response(status=500)  # never reaches the client: the connection is gone
    # truncate: promise the whole body, send half, then cut the connection.
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    if transport is not None:
        transport.abort()
    return response
