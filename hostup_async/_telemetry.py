"""OpenTelemetry traces and metrics, through the API only (the ``otel`` extra).

Without ``opentelemetry-api`` installed, ``telemetry_for`` gives ``None`` and the transport
skips every step here. Installed but with no SDK configured (the global providers left
unset, or no-op providers passed), a call costs one attribute read and two module-global
reads: no span, no context and no measurement is made, until an SDK's providers are set.

Traces: one INTERNAL span per SDK call (``get_vm_details``, ``get_billing_cycle``; a bulk
fetch makes one per item and endpoint) with the vmid and the seconds spent waiting for
the rate limit and for 429 pauses; under it one CLIENT span per HTTP attempt with
OpenTelemetry's stable HTTP client attributes. Metrics: ``http.client.request.duration``
and the pacing figures no other instrumentation can see (see ``docs/observability.md``).
Nothing recorded here holds the API key: only the base URL, the path, statuses, error
class names and timings are.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._exceptions import APIError, HostUpError
from ._version import __version__

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Span, TracerProvider

    from ._events import ClientStats
    from ._http.answer import Outcome

try:
    from opentelemetry import context as _context
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
    from opentelemetry.metrics import _internal as _metrics_state
except ImportError:  # the otel extra is not installed: no telemetry at all
    _trace = None  # type: ignore[assignment]

__all__ = ["CallTrace", "Telemetry", "telemetry_for"]

_SCOPE = "hostup_async"
# OpenTelemetry's advisory buckets for http.client.request.duration, in seconds.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
# How often the rate gauge's value is refreshed, in seconds: the rate changes smoothly.
_RATE_EVERY = 0.1
# Distinct (status, error.type) attribute sets kept built; past this they are built per use.
_KEPT = 64
_WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def available() -> bool:
    """Whether ``opentelemetry-api`` is installed."""
    return _trace is not None


def telemetry_for(
    base_url: str,
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    stats: ClientStats,
) -> Telemetry | None:
    """Return the client's telemetry, or ``None`` when ``opentelemetry-api`` is absent.

    ``None`` providers mean the global ones, looked up at each use through OpenTelemetry's
    proxies, so an SDK configured after the client was made still gets its data.
    """
    if _trace is None:
        return None
    return Telemetry(base_url, tracer_provider, meter_provider, stats)


class Telemetry:
    """One client's tracer and instruments, and the attributes every attempt shares."""

    def __init__(
        self,
        base_url: str,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        stats: ClientStats,
    ) -> None:
        from yarl import URL

        url = URL(base_url)
        self.base_url = base_url.rstrip("/")
        self.server: dict[str, Any] = {
            "http.request.method": "GET",
            "server.address": url.host or "",
            "server.port": url.port or (443 if url.scheme == "https" else 80),
        }
        self.tracer = _trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        meter = _metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self.duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS),
        )
        self.wait = meter.create_histogram(
            "hostup.client.wait.duration",
            unit="s",
            description="Time calls waited before sending: for the rate limit, or out a 429 pause.",
            explicit_bucket_boundaries_advisory=list(_WAIT_BUCKETS),
        )
        self.rate_limited_count = meter.create_counter(
            "hostup.client.rate_limited",
            unit="{response}",
            description="Answers with status 429 (each pauses the client).",
        )
        self.retries = meter.create_counter(
            "hostup.client.retries",
            unit="{retry}",
            description="Attempts retried, by the error.type of the attempt that failed.",
        )
        # Whether each signal may record: a provider passed in records unless it is a no-op
        # one; the global ones record once an SDK's provider is set (OpenTelemetry sets each
        # once, so "set" never goes back). Until then a call makes no span and no measurement.
        self._traces = _records(
            tracer_provider,
            _trace.NoOpTracerProvider,
            _trace,
            "_TRACER_PROVIDER",
            "OTEL_PYTHON_TRACER_PROVIDER",
        )
        self._metrics = _records(
            meter_provider,
            _metrics.NoOpMeterProvider,
            _metrics_state,
            "_METER_PROVIDER",
            "OTEL_PYTHON_METER_PROVIDER",
        )
        self._watch_traces = tracer_provider is None and not self._traces
        self._watch_metrics = meter_provider is None and not self._metrics
        #: Whether anything records: the transport's one check per call while nothing does.
        self.live = self._traces or self._metrics
        self._attempt_kind = _trace.SpanKind.CLIENT
        self._call_kind = _trace.SpanKind.INTERNAL
        self._ended: dict[tuple[int | None, str | None], dict[str, Any]] = {}
        #: The client's rate as last seen on its event loop (the gauge's value: the
        #: exporter reads it from its own thread, where the pacer's clock cannot run).
        self.rate: float | None = None
        #: When (pacer time) the rate is next worth reading: it changes smoothly.
        self.rate_due = -math.inf
        source = _Source(self, stats, self.server)
        meter.create_observable_gauge(
            "hostup.client.rate",
            callbacks=[source.rate],
            unit="{request}/s",
            description="Requests per second the client sends at now (lowered after 429s).",
        )
        meter.create_observable_counter(
            "hostup.client.shared_limit.fallback.duration",
            callbacks=[source.fallback],
            unit="s",
            description="Seconds a client with shared_limit paced alone because Redis was away.",
        )

    def saw_rate(self, now: float, rate: float | None) -> None:
        """Note the client's rate at ``now`` (pacer time), for the gauge."""
        self.rate_due = now + _RATE_EVERY
        self.rate = rate

    def notice(self) -> bool:
        """Whether a global provider was set since: then ``live`` from now on."""
        if self._watch_traces and _trace._TRACER_PROVIDER is not None:
            self._traces, self._watch_traces = True, False
        if self._watch_metrics and _metrics_state._METER_PROVIDER is not None:
            self._metrics, self._watch_metrics = True, False
        self.live = self._traces or self._metrics
        return self.live

    def start_call(self, operation: str, vmid: int | None) -> CallTrace:
        """Start one SDK call's telemetry: its INTERNAL span when traces record, else none."""
        span: Span | None = None
        if self._traces:
            span = self.tracer.start_span(
                operation,
                kind=self._call_kind,
                attributes={"hostup.vmid": vmid} if vmid is not None else None,
            )
            if not span.is_recording():
                span = None  # sampled out: no CLIENT spans under it either
        return CallTrace(self, span)

    def attempted(self, outcome: Outcome[Any], elapsed: float) -> None:
        """Record one attempt's duration, by how it ended."""
        if not self._metrics:
            return
        error = outcome.error
        key = (outcome.status, None if error is None else error_type(error))
        attributes = self._ended.get(key)
        if attributes is None:
            # Built once per (status, error.type): recording is on the hot path.
            attributes = dict(self.server)
            if key[0] is not None:
                attributes["http.response.status_code"] = key[0]
            if key[1] is not None:
                attributes["error.type"] = key[1]
            if len(self._ended) < _KEPT:
                self._ended[key] = attributes
        self.duration.record(elapsed, attributes)

    def waited(self, reason: str, seconds: float) -> None:
        """Record ``seconds`` a call waited before an attempt: ``rate_limit`` or ``pause``."""
        if self._metrics:
            self.wait.record(seconds, {**self.server, "hostup.wait.reason": reason})

    def rate_limited(self) -> None:
        """Count a 429."""
        if self._metrics:
            self.rate_limited_count.add(1, self.server)

    def retried(self, error: HostUpError | None) -> None:
        """Count a retry of an attempt that failed with ``error``."""
        if self._metrics:
            self.retries.add(1, {**self.server, "error.type": error_type(error)})


class CallTrace:
    """One SDK call's telemetry: its span (``None`` when traces do not record), its attempts."""

    __slots__ = ("_attempt", "_parent", "_quiet", "_span", "_telemetry", "_waits")

    def __init__(self, telemetry: Telemetry, span: Span | None) -> None:
        self._telemetry = telemetry
        self._span = span
        self._parent = _trace.set_span_in_context(span) if span is not None else None
        self._waits: dict[str, float] | None = None
        self._attempt: Span | None = None
        self._quiet: object = None

    def start_attempt(self, attempt: int, path: str, observed: bool) -> None:
        """Start the CLIENT span of attempt number ``attempt`` (1 for the first).

        While it traces the attempt, aiohttp's own instrumentation is told not to
        (``exchanged`` lifts that once the exchange is over) when ``observed``: when the
        session has trace configs, the only way that instrumentation sees a request.
        """
        if self._span is None:
            return
        telemetry = self._telemetry
        attributes: dict[str, Any] = {**telemetry.server, "url.full": telemetry.base_url + path}
        if attempt > 1:
            attributes["http.request.resend_count"] = attempt - 1
        self._attempt = telemetry.tracer.start_span(
            "GET", context=self._parent, kind=telemetry._attempt_kind, attributes=attributes
        )
        if observed:
            self._quiet = _context.attach(
                _context.set_value(_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY, True)
            )

    def exchanged(self) -> None:
        """The attempt's exchange is over: aiohttp's instrumentation may trace again."""
        token, self._quiet = self._quiet, None
        if token is not None:
            _context.detach(token)  # type: ignore[arg-type]

    def end_attempt(self, outcome: Outcome[Any], elapsed: float) -> None:
        """Record the attempt's duration; end its span with its status and ``error.type``."""
        self._telemetry.attempted(outcome, elapsed)
        span, self._attempt = self._attempt, None
        if span is None:
            return
        if outcome.error is not None:
            span.set_attribute("error.type", error_type(outcome.error))
            span.set_status(_trace.StatusCode.ERROR)
        if outcome.status is not None:
            span.set_attribute("http.response.status_code", outcome.status)
        span.end()

    def waited(self, reason: str, seconds: float) -> None:
        """Add ``seconds`` spent waiting (``rate_limit`` or ``pause``) to the call's span."""
        if self._span is None:
            return
        waits = self._waits
        if waits is None:
            waits = self._waits = {}
        waits[reason] = waits.get(reason, 0.0) + seconds

    def rate_limited(self, pause: float) -> None:
        """Note a 429 on the call's span, with the pause it started."""
        if self._span is not None:
            self._span.add_event("hostup.rate_limited", {"hostup.pause.seconds": pause})

    def end(self, error: BaseException | None) -> None:
        """End the call's span, with its waits, and its error if it failed."""
        span = self._span
        if span is None:
            return
        if self._attempt is not None:  # cancelled mid-attempt: its span ends with the call
            self._attempt.end()
            self._attempt = None
        if self._waits:
            for reason, seconds in self._waits.items():
                span.set_attribute(f"hostup.wait.{reason}.seconds", seconds)
        if error is not None:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(_trace.StatusCode.ERROR, _safe_text(error))
        span.end()


def _records(provider: object | None, noop: type, module: Any, global_name: str, env: str) -> bool:
    """Whether a signal records from the start: a provider passed in that is not a no-op.

    With ``provider`` ``None`` (the global one) it records once OpenTelemetry's global is
    set, which ``Telemetry.notice`` watches for; and from the start when the provider is
    named in the environment (the API loads it on first use) or when this OpenTelemetry
    keeps its global elsewhere (then every call asks the API, as it would without this).
    """
    if provider is not None:
        return not isinstance(provider, noop)
    return env in os.environ or not hasattr(module, global_name)


def error_type(error: HostUpError | None) -> str:
    """Name a failure as OpenTelemetry's ``error.type`` does: the status, else the class."""
    if isinstance(error, APIError) and error.status >= 400:
        return str(error.status)
    return type(error).__name__ if error is not None else "_OTHER"


def _safe_text(error: BaseException) -> str:
    """The error's text for a span status: HostUp errors are built key-free; others by name."""
    return str(error)[:500] if isinstance(error, HostUpError) else type(error).__name__


class _Source:
    """What the observable instruments read, held weakly so a closed client can go."""

    __slots__ = ("_server", "_stats", "_telemetry")

    def __init__(self, telemetry: Telemetry, stats: ClientStats, server: dict[str, Any]) -> None:
        self._telemetry = weakref.ref(telemetry)
        self._stats = weakref.ref(stats)
        self._server = {k: v for k, v in server.items() if k != "http.request.method"}

    def rate(self, options: CallbackOptions) -> Iterable[Observation]:
        """The client's current rate, when it has one."""
        telemetry = self._telemetry()
        rate = telemetry.rate if telemetry is not None else None
        return [] if rate is None else [_metrics.Observation(rate, self._server)]

    def fallback(self, options: CallbackOptions) -> Iterable[Observation]:
        """Seconds spent pacing alone while the shared limit's Redis was away."""
        stats = self._stats()
        return [] if stats is None else [_metrics.Observation(stats.shared_fallback, self._server)]
