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
from typing import Any, Literal

import msgspec
from aiohttp import web

from ._data import (
    billing_cycle_data,
    new_request_id,
    usage_log_json,
    usage_log_variant,
    vm_data,
)
from ._faults import DROPPED, Fault, FaultPlan, apply_fault, fault_label
from ._limits import HiddenLimit, RateMode, hidden_limit
from ._responses import error_response, success_head, unsuccessful_response

#: Where a 429 of the hidden rate limit says how long to wait.
RateHint = Literal["body", "header", "both", "none"]

__all__ = [
    "FakeHostUp",
    "RateHint",
    "FakeStats",
    "RecordedRequest",
    "rate_limited_response",
]


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
    faults: Counter[str] = field(default_factory=Counter)
    """Faults carried out, by kind (``503``, ``html_502``, ``drop``, ``forbidden``...);
    ``rate_limit`` counts 429s of the hidden rate limit."""
    dropped: int = 0
    """Connections closed without an answer."""


class FakeHostUp:
    """A fake HostUp API with realistic generated VMs, served over real HTTP on loopback.

    Any vmid has a deterministic VM, except those in ``missing`` or above ``max_vmid``
    (404) and those in ``forbidden`` (403). A wrong ``X-API-Key`` gets 401.

    With ``rate_limit`` set, a hidden rate limit answers 429 once more than ``rate_limit``
    requests arrive per ``rate_window`` seconds, counted the way gateways do
    (``rate_mode``): in fixed windows aligned to the first request (``"fixed"``), in any
    window (``"sliding"``), or by a bucket of ``rate_limit`` tokens refilled over
    ``rate_window`` (``"token_bucket"``). Refused requests do not count against the limit.
    The 429 says how long to wait (the seconds until a request would fit) in the body's
    ``retryAfter``, the ``Retry-After`` header, both or neither (``rate_hint``), to the
    millisecond or rounded up to whole seconds (``rate_hint_whole_seconds``, as most
    gateways send it). ``rate_headers=True`` adds ``X-RateLimit-Limit``, ``-Remaining``
    and ``-Reset`` (seconds) to every answer.

    ``faults`` takes a seeded ``FaultPlan`` of transient and permanent faults; ``inject``
    queues one-shot faults, which go first. ``stats`` counts what happened.
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
        rate_mode: RateMode = "fixed",
        rate_hint: RateHint = "both",
        rate_hint_whole_seconds: bool = False,
        rate_headers: bool = False,
        latency: float = 0.0,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if usage_log_hours < 0:
            raise ValueError("usage_log_hours must be 0 or more")
        if rate_limit is not None and rate_limit < 1:
            raise ValueError("rate_limit must be 1 or more (or None for no limit)")
        if rate_window <= 0:
            raise ValueError("rate_window must be above 0")
        if rate_mode not in ("fixed", "sliding", "token_bucket"):
            raise ValueError("rate_mode must be 'fixed', 'sliding' or 'token_bucket'")
        if rate_hint not in ("body", "header", "both", "none"):
            raise ValueError("rate_hint must be 'body', 'header', 'both' or 'none'")
        if faults is not None and not isinstance(faults, FaultPlan):
            raise TypeError("faults must be a FaultPlan")
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
        self.faults = faults
        """The seeded fault plan, or ``None``; it may be swapped between requests."""
        self.stats = FakeStats()
        """What the server has seen so far."""
        self._limit: HiddenLimit | None = (
            hidden_limit(rate_mode, rate_limit, rate_window) if rate_limit is not None else None
        )
        self._hint = rate_hint
        self._whole_seconds = rate_hint_whole_seconds
        self._rate_headers = rate_headers
        self._seen: Counter[str] = Counter()
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
        # A short shutdown timeout: stopping must not wait for stalled fault handlers.
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=0.1
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()  # a port in use must not leave the runner behind
            raise
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
        if response is DROPPED:
            stats.dropped += 1
        else:
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
                self.stats.faults["rate_limit"] += 1
                refusal = rate_limited_response(
                    wait, hint=self._hint, whole_seconds=self._whole_seconds
                )
                return self._with_quota(refusal)
        try:
            vmid = int(request.match_info["vmid"])
        except ValueError:
            vmid = 0
        plan = self.faults
        # Count per endpoint of a vmid, so the plan's draws do not depend on arrival order.
        endpoint = request.path.rsplit("/", 1)[-1]
        nth = self._seen[request.path]
        self._seen[request.path] += 1
        delay = self.latency + (plan.delay(vmid, endpoint, nth) if plan is not None else 0.0)
        if delay:
            await asyncio.sleep(delay)
        fault = self._next_fault(vmid)
        if fault is None and plan is not None:
            fault = plan.transient_fault(vmid, endpoint, nth)
        if fault is not None:
            self.stats.faults[fault_label(fault)] += 1
            # A 429 fault is answered as the hidden rate limit answers: one builder for both.
            faulted = await apply_fault(
                fault, request, build(max(vmid, 1)), rate_limited=rate_limited_response
            )
            if faulted is not None:
                return faulted
        if vmid < 1:
            return error_response(400, "INVALID_VMID", "vmid must be a positive integer")
        if vmid in self.missing or (self.max_vmid is not None and vmid > self.max_vmid):
            return error_response(404, "NOT_FOUND", "Servern hittades inte")
        if vmid in self.forbidden:
            return error_response(403, "FORBIDDEN", "You do not have access to this server")
        permanent = plan.permanent(vmid) if plan is not None else None
        if permanent is not None:
            self.stats.faults[permanent] += 1
            return _permanent_response(permanent)
        body: bytes = build(vmid)
        return self._with_quota(web.Response(body=body, content_type="application/json"))

    def _with_quota(self, response: web.Response) -> web.Response:
        """Add the ``X-RateLimit-*`` headers to an answer when the server sends them."""
        limit = self._limit
        if self._rate_headers and limit is not None:
            remaining, reset = limit.quota(time.monotonic())
            response.headers["X-RateLimit-Limit"] = str(limit.limit)
            response.headers["X-RateLimit-Remaining"] = str(remaining)
            response.headers["X-RateLimit-Reset"] = _hint_text(reset, self._whole_seconds)
        return response

    def _details_body(self, vmid: int) -> bytes:
        data = msgspec.json.encode(vm_data(vmid))
        log = usage_log_json(self.usage_log_hours, usage_log_variant(vmid), self._log_end)
        return b"".join((success_head(), data[:-1], b',"usage_log":', log, b"}}"))

    def _billing_body(self, vmid: int) -> bytes:
        return b"".join((success_head(), msgspec.json.encode(billing_cycle_data(vmid)), b"}"))


def _permanent_response(kind: str) -> web.Response:
    """Return the answer a vmid with a permanent fault always gets."""
    if kind == "forbidden":
        return error_response(403, "FORBIDDEN", "You do not have access to this server")
    if kind == "missing":
        return error_response(404, "NOT_FOUND", "Servern hittades inte")
    if kind == "unsuccessful":
        return unsuccessful_response()
    # mismatched: valid JSON, success true, but ``data`` is not an object.
    return web.Response(
        body=success_head() + b'["not", "a", "vm"]}', content_type="application/json"
    )


def _hint_text(seconds: float, whole_seconds: bool) -> str:
    """Write a wait as gateways do: whole seconds rounded up, or to the millisecond."""
    if whole_seconds or seconds >= 1:
        return str(math.ceil(seconds))
    return str(round(seconds, 3))


def rate_limited_response(
    wait: float, *, hint: RateHint = "both", whole_seconds: bool = False
) -> web.Response:
    """Return a 429 as HostUp sends it: ``retryAfter`` as a string, no ``code``.

    ``hint`` says where the wait goes: the body's ``retryAfter``, the ``Retry-After``
    header, both, or neither.
    """
    text = _hint_text(wait, whole_seconds)
    body: dict[str, Any] = {
        "error": "Too Many Requests",
        "message": "Rate limit exceeded, please slow down",
    }
    if hint in ("body", "both"):
        body["retryAfter"] = text
    body["requestId"] = new_request_id()
    headers = {"Retry-After": text} if hint in ("header", "both") else {}
    return web.Response(
        status=429, body=msgspec.json.encode(body), content_type="application/json", headers=headers
    )
