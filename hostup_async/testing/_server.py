"""``FakeHostUp``: an aiohttp.web app that emulates HostUp's VM endpoints on loopback."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

import msgspec
from aiohttp import web

from ._data import (
    billing_cycle_data,
    new_request_id,
    now_stamp,
    usage_log_json,
    usage_log_variant,
    vm_data,
)
from ._faults import Fault, apply_fault

__all__ = [
    "FakeHostUp",
    "FakeStats",
    "RecordedRequest",
    "error_response",
    "rate_limited_response",
    "unsuccessful_response",
]

_TITLES = {
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


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake server received."""

    method: str
    """HTTP method."""
    path: str
    """Request path, such as ``/api/vm/7/details``."""
    headers: dict[str, str]
    """Request headers, with ``X-API-Key`` replaced by whether it matched."""
    at: float
    """``time.monotonic()`` when the request arrived."""


@dataclass
class FakeStats:
    """What the fake server has seen: counts by status, concurrency, and recent requests."""

    requests: int = 0
    """Requests received."""
    by_status: Counter[int] = field(default_factory=Counter)
    """Answers sent, by HTTP status."""
    in_flight: int = 0
    """Requests being answered right now."""
    max_in_flight: int = 0
    """Most requests that were being answered at once."""
    recent: deque[RecordedRequest] = field(default_factory=lambda: deque(maxlen=100_000))
    """The latest requests, oldest first (bounded)."""


class _FixedWindow:
    """A hidden rate limit with fixed-window semantics, as many API gateways implement it."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._start = 0.0
        self._count = 0

    def admit(self, now: float) -> float | None:
        """Count a request; return ``None`` if admitted, else seconds until the window resets."""
        if now - self._start >= self.window:
            self._start = now - ((now - self._start) % self.window) if self._start else now
            self._count = 0
        if self._count < self.limit:
            self._count += 1
            return None
        return self._start + self.window - now


class FakeHostUp:
    """A fake HostUp API with realistic generated VMs, served over real HTTP on loopback.

    Any vmid has a deterministic VM, except those in ``missing`` or above ``max_vmid``
    (404) and those in ``forbidden`` (403). A wrong ``X-API-Key`` gets 401. With
    ``rate_limit`` set, more than that many requests per ``rate_window`` seconds get 429
    with ``retryAfter``, like a real gateway's fixed window.
    """

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        usage_log_hours: int = 24,
        forbidden: Collection[int] = (),
        missing: Collection[int] = (),
        max_vmid: int | None = None,
        rate_limit: int | None = None,
        rate_window: float = 1.0,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if usage_log_hours < 0:
            raise ValueError("usage_log_hours must be 0 or more")
        self.api_key = api_key
        """The only key the server accepts."""
        self.usage_log_hours = usage_log_hours
        """Hourly samples in each VM's usage log."""
        self.forbidden = frozenset(forbidden)
        """vmids answered with 403."""
        self.missing = frozenset(missing)
        """vmids answered with 404."""
        self.max_vmid = max_vmid
        """vmids above this are answered with 404 (``None``: no limit)."""
        self.latency = latency
        """Seconds added before every answer."""
        self.stats = FakeStats()
        """What the server has seen so far."""
        self._limit = _FixedWindow(rate_limit, rate_window) if rate_limit else None
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._injected: dict[int | None, deque[Fault]] = {}
        self._log_end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        self.app = self._make_app()
        """The aiohttp.web application, to run under your own runner if you prefer."""

    def inject(self, *faults: Fault, vmid: int | None = None) -> None:
        """Queue one-shot faults, used in order by the next requests (for ``vmid`` only, if given).

        Faults queued for a vmid are used before those queued for any vmid.
        """
        self._injected.setdefault(vmid, deque()).extend(faults)

    def _next_fault(self, vmid: int) -> Fault | None:
        for key in (vmid, None):
            queue = self._injected.get(key)
            if queue:
                return queue.popleft()
        return None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> str:
        """Start serving on loopback and return the base URL to give a client."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        self._port = port
        return self.url

    async def stop(self) -> None:
        """Stop serving and close every connection."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeHostUp:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Base URL of the running server, such as ``http://127.0.0.1:54321/api``."""
        if self._runner is None:
            raise RuntimeError("the fake server is not running; call start() first")
        return f"http://{self._host}:{self._port}/api"

    # -- handlers ----------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/vm/{vmid}/details", self._details)
        app.router.add_get("/api/vm/{vmid}/billing-cycle", self._billing_cycle)
        return app

    async def _details(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, self._details_body)

    async def _billing_cycle(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, self._billing_body)

    async def _answer(self, request: web.Request, build: Any) -> web.StreamResponse:
        """Run the checks every endpoint shares, then build the body for a valid request."""
        stats = self.stats
        stats.requests += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            response = await self._respond(request, build)
        finally:
            stats.in_flight -= 1
        stats.by_status[response.status] += 1
        return response

    async def _respond(self, request: web.Request, build: Any) -> web.StreamResponse:
        key_ok = request.headers.get("X-API-Key") == self.api_key
        headers = dict(request.headers)
        if "X-API-Key" in headers:
            headers["X-API-Key"] = "<valid>" if key_ok else "<invalid>"
        self.stats.recent.append(
            RecordedRequest(request.method, request.path, headers, time.monotonic())
        )
        if not key_ok:
            return error_response(401, "UNAUTHORIZED", "Authentication required")
        if self._limit is not None:
            wait = self._limit.admit(time.monotonic())
            if wait is not None:
                return rate_limited_response(wait)
        if self.latency:
            await asyncio.sleep(self.latency)
        try:
            vmid = int(request.match_info["vmid"])
        except ValueError:
            vmid = 0
        fault = self._next_fault(vmid)
        if fault is not None:
            faulted = await apply_fault(fault, request, build(max(vmid, 1)))
            if faulted is not None:
                return faulted
        if vmid < 1:
            return error_response(400, "INVALID_VMID", "vmid must be a positive integer")
        if vmid in self.missing or (self.max_vmid is not None and vmid > self.max_vmid):
            return error_response(404, "NOT_FOUND", "Servern hittades inte")
        if vmid in self.forbidden:
            return error_response(403, "FORBIDDEN", "You do not have access to this server")
        body: bytes = build(vmid)
        return web.Response(body=body, content_type="application/json")

    def _details_body(self, vmid: int) -> bytes:
        data = msgspec.json.encode(vm_data(vmid))
        log = usage_log_json(self.usage_log_hours, usage_log_variant(vmid), self._log_end)
        return b"".join((_head(), data[:-1], b',"usage_log":', log, b"}}"))

    def _billing_body(self, vmid: int) -> bytes:
        return b"".join((_head(), msgspec.json.encode(billing_cycle_data(vmid)), b"}"))


def _head() -> bytes:
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
        "error": _TITLES.get(status, "Error"),
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


def rate_limited_response(wait: float) -> web.Response:
    """Return a 429 as HostUp sends it: ``retryAfter`` as a string, no ``code``, plus headers."""
    seconds = math.ceil(wait) if wait >= 1 else round(wait, 3)
    body = {
        "error": "Too Many Requests",
        "message": "Rate limit exceeded, please slow down",
        "retryAfter": str(seconds),
        "requestId": new_request_id(),
    }
    return web.Response(
        status=429,
        body=msgspec.json.encode(body),
        content_type="application/json",
        headers={"Retry-After": str(seconds), "X-RateLimit-Remaining": "0"},
    )
