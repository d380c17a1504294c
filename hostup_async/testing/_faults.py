"""Faults the fake server can inject: the ways real gateways and servers fail.

Two ways to use them:

- ``Fault``: one fault, queued with ``FakeHostUp.inject(...)`` for the next request(s).
- ``FaultPlan``: seeded shares of faults over a whole run, passed as
  ``FakeHostUp(faults=FaultPlan(...))``. Every decision is a hash of the seed, the vmid,
  the endpoint and how many requests that endpoint has had, so a run faults the same
  requests whatever order concurrent requests arrive in.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from aiohttp import web

from ._responses import error_response, unsuccessful_response

__all__ = [
    "PERMANENT_KINDS",
    "TRANSIENT_KINDS",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "PermanentKind",
    "TransientKind",
    "apply_fault",
]

#: The kinds of fault: an error status, a connection dropped before or during the answer,
#: a body cut short, malformed JSON, ``success: false`` in a 200, a slow answer, an answer
#: that stalls halfway through its body, or a caller-given body.
FaultKind = Literal[
    "status", "drop", "truncate", "malformed", "unsuccessful", "slow", "stall", "custom"
]

#: Faults a retry can get past (what the SDK retries), as ``FaultPlan`` names them.
TransientKind = Literal[
    "429",
    "500",
    "502",
    "503",
    "504",
    "html_500",
    "html_502",
    "html_503",
    "html_504",
    "drop",
    "truncate",
    "malformed",
    "slow",
    "stall",
]

#: Faults that stay with a VM (what the SDK does not retry), as ``FaultPlan`` names them:
#: 403, 404, a 200 with ``success: false``, and a 200 whose ``data`` does not fit the schema.
PermanentKind = Literal["forbidden", "missing", "unsuccessful", "mismatched"]

#: Every transient kind, the default mix of ``FaultPlan.kinds``.
TRANSIENT_KINDS: tuple[TransientKind, ...] = get_args(TransientKind)

#: Every permanent kind, in the order ``FaultPlan`` draws them.
PERMANENT_KINDS: tuple[PermanentKind, ...] = get_args(PermanentKind)

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
    """HTTP status for ``status`` and ``custom`` faults."""
    html: bool = False
    """Send an HTML gateway page instead of the JSON error envelope."""
    retry_after: float = 1.0
    """Seconds to put in ``retryAfter`` for a 429."""
    delay: float = 0.0
    """Seconds to stall for ``slow`` and ``stall`` faults."""
    body: bytes = b""
    """The body of a ``custom`` fault."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra headers of a ``custom`` fault."""

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
        """Answer 200 with a body that is not valid JSON (cut short, with a proxy's trailer)."""
        return cls("malformed")

    @classmethod
    def unsuccessful(cls) -> Fault:
        """Answer 200 with ``success: false`` and an error code."""
        return cls("unsuccessful")

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Stall ``delay`` seconds, then answer normally (slower than a short client timeout)."""
        return cls("slow", delay=delay)

    @classmethod
    def stall(cls, delay: float) -> Fault:
        """Send the headers and half the body, stall ``delay`` seconds, then send the rest."""
        return cls("stall", delay=delay)

    @classmethod
    def custom(
        cls,
        body: bytes,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer with exactly ``body`` and ``status`` (for fuzzing and odd real-world answers)."""
        return cls("custom", status=status, body=bytes(body), headers=dict(headers or {}))


def _unit(*parts: object) -> float:
    """Return a float in [0, 1) fixed by ``parts``: a seeded draw that needs no shared state."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True)
class FaultPlan:
    """Seeded, deterministic faults for a whole run: ``FakeHostUp(faults=FaultPlan(...))``.

    Transient faults are what the SDK retries (429, 5xx, dropped or cut connections,
    malformed JSON, answers slower than the client's timeout). They come two ways:

    - ``flaky``: that share of vmids fail their first 1 to ``streak`` requests to each
      endpoint, then answer normally, so a client with ``max_retries >= streak`` recovers
      every one of them.
    - ``transient``: that share of every request fails, each drawn independently, so a
      request can fail several times in a row (a share ``p`` fails ``n`` times in a row
      with probability ``p**n``).

    Permanent faults stay with a vmid on every request (``forbidden``, ``missing``,
    ``unsuccessful``, ``mismatched``: shares of vmids, drawn disjointly). Ask the plan
    which vmids it faults with ``permanent(vmid)`` and ``is_flaky(vmid)``.

    Every draw hashes ``seed`` with the vmid, the endpoint and that endpoint's request
    count, so the same seed faults the same requests whatever the order of arrival.
    """

    seed: int = 0
    """Seed of every draw; another seed faults other vmids and requests."""
    flaky: float = 0.0
    """Share of vmids whose first requests to each endpoint fail transiently."""
    streak: int = 1
    """Most failures in a row for a flaky vmid's endpoint (each draws 1 to ``streak``)."""
    transient: float = 0.0
    """Share of all requests that fail transiently, each drawn on its own."""
    kinds: tuple[TransientKind, ...] = TRANSIENT_KINDS
    """Transient kinds to draw from, evenly (repeat a kind to weight it)."""
    forbidden: float = 0.0
    """Share of vmids answered 403 every time."""
    missing: float = 0.0
    """Share of vmids answered 404 every time."""
    unsuccessful: float = 0.0
    """Share of vmids answered 200 with ``success: false`` every time."""
    mismatched: float = 0.0
    """Share of vmids answered 200 with a ``data`` value that does not fit the schema."""
    retry_after: float = 0.05
    """Seconds put in ``retryAfter`` of an injected 429 (small, to keep tests quick)."""
    slow_delay: float = 1.0
    """Seconds a ``slow`` or ``stall`` fault stalls; make it longer than the client's timeout."""
    latency: float = 0.0
    """Seconds added before every answer."""
    latency_spread: float = 0.0
    """Up to this many seconds more before every answer, drawn per request."""

    def __post_init__(self) -> None:
        shares = {
            "flaky": self.flaky,
            "transient": self.transient,
            "forbidden": self.forbidden,
            "missing": self.missing,
            "unsuccessful": self.unsuccessful,
            "mismatched": self.mismatched,
        }
        for name, share in shares.items():
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be a share between 0 and 1, got {share!r}")
        if self.forbidden + self.missing + self.unsuccessful + self.mismatched > 1.0:
            raise ValueError("the permanent shares add up to more than 1")
        if self.streak < 1:
            raise ValueError(f"streak must be 1 or more, got {self.streak!r}")
        if not self.kinds or any(kind not in TRANSIENT_KINDS for kind in self.kinds):
            raise ValueError(f"kinds must be a non-empty tuple of {TRANSIENT_KINDS}")
        for name in ("retry_after", "slow_delay", "latency", "latency_spread"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more")

    def permanent(self, vmid: int) -> PermanentKind | None:
        """Return the permanent fault of ``vmid``, or ``None`` when it has none."""
        draw = _unit(self.seed, "permanent", vmid)
        for kind in PERMANENT_KINDS:
            share: float = getattr(self, kind)
            if draw < share:
                return kind
            draw -= share
        return None

    def is_flaky(self, vmid: int) -> bool:
        """Tell whether ``vmid`` is one of the ``flaky`` share."""
        return _unit(self.seed, "flaky", vmid) < self.flaky

    def transient_fault(self, vmid: int, endpoint: str, nth: int) -> Fault | None:
        """Return the transient fault for the ``nth`` (0-based) request to a vmid's endpoint."""
        faulted = (
            self.is_flaky(vmid)
            and nth < 1 + int(_unit(self.seed, "streak", vmid, endpoint) * self.streak)
        ) or _unit(self.seed, "transient", vmid, endpoint, nth) < self.transient
        if not faulted:
            return None
        kind = self.kinds[int(_unit(self.seed, "kind", vmid, endpoint, nth) * len(self.kinds))]
        return self.fault_of(kind)

    def fault_of(self, kind: TransientKind) -> Fault:
        """Return the ``Fault`` a transient kind stands for, with this plan's delays."""
        if kind == "drop":
            return Fault.drop()
        if kind == "truncate":
            return Fault.truncate()
        if kind == "malformed":
            return Fault.malformed()
        if kind == "slow":
            return Fault.slow(self.slow_delay)
        if kind == "stall":
            return Fault.stall(self.slow_delay)
        html = kind.startswith("html_")
        status = int(kind.removeprefix("html_"))
        return Fault.http(status, html=html, retry_after=self.retry_after)

    def delay(self, vmid: int, endpoint: str, nth: int) -> float:
        """Return the latency added to the ``nth`` request to a vmid's endpoint."""
        if not self.latency_spread:
            return self.latency
        return self.latency + self.latency_spread * _unit(self.seed, "latency", vmid, endpoint, nth)


def fault_label(fault: Fault) -> str:
    """Return a short name for counting faults, such as ``503``, ``html_502`` or ``drop``."""
    if fault.kind == "status":
        return f"html_{fault.status}" if fault.html else str(fault.status)
    return fault.kind


#: What ``apply_fault`` returns for a dropped connection: no answer reached the client.
DROPPED = web.Response(status=499)


async def apply_fault(
    fault: Fault,
    request: web.Request,
    body: bytes,
    *,
    rate_limited: Callable[[float], web.StreamResponse],
) -> web.StreamResponse | None:
    """Carry out ``fault`` for ``request``; ``None`` means "now answer normally" (after a stall).

    ``body`` is the normal answer's body (cut short by some faults); ``rate_limited`` builds
    the server's own 429 for a wait in seconds. A dropped connection returns ``DROPPED``,
    which the server does not count as an answer.
    """
    if fault.kind == "slow":
        await asyncio.sleep(fault.delay)
        return None
    if fault.kind == "status":
        if fault.status == 429 and not fault.html:
            return rate_limited(fault.retry_after)
        if fault.html:
            title = web.Response(status=fault.status).reason.encode()
            page = _GATEWAY_HTML % (fault.status, title, fault.status, title)
            return web.Response(status=fault.status, body=page, content_type="text/html")
        return error_response(fault.status, "FAULT_INJECTED", "Injected fault")
    if fault.kind == "custom":
        headers = {"Content-Type": "application/json", **fault.headers}
        return web.Response(status=fault.status, body=fault.body, headers=headers)
    if fault.kind == "malformed":
        return web.Response(body=body[: len(body) // 2] + b"<!--", content_type="application/json")
    if fault.kind == "unsuccessful":
        return unsuccessful_response()
    transport = request.transport
    if fault.kind == "drop":
        if transport is not None:
            transport.abort()
        return DROPPED
    # truncate and stall: promise the whole body and send half of it first.
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    if fault.kind == "stall":
        await asyncio.sleep(fault.delay)
        try:
            await response.write(body[len(body) // 2 :])
            await response.write_eof()
        except ConnectionError:
            pass  # the client gave up waiting, which is the point of a stall
    elif transport is not None:
        transport.abort()
    return response
