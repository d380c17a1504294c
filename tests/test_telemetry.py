"""OpenTelemetry spans and metrics, through providers passed to the client (no global state)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from opentelemetry import context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from yarl import URL

from hostup_async import AttemptEvent, Backoff, HostUpClient, NotFoundError
from hostup_async.testing import FakeHostUp, Fault

from .conftest import API_KEY

QUICK = Backoff(0.001, 0.01)


def attrs(item: Any) -> dict[str, Any]:
    """The attributes of a span, event or data point, as a plain dict."""
    return dict(item.attributes or {})


class Otel:
    """An SDK tracer and meter provider that keep everything in memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def client(self, fake: FakeHostUp, **options: Any) -> HostUpClient:
        return HostUpClient(
            API_KEY,
            base_url=fake.url,
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            backoff=QUICK,
            **{"rate_limit": None, **options},
        )

    def finished(self, kind: SpanKind) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.kind == kind]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def dump(self) -> str:
        spans = [s.to_json() for s in self.spans.get_finished_spans()]
        data = self.reader.get_metrics_data()
        return "\n".join(spans) + (data.to_json() if data is not None else "")


@pytest.fixture
def otel() -> Iterator[Otel]:
    telemetry = Otel()
    yield telemetry
    telemetry.tracer_provider.shutdown()
    telemetry.meter_provider.shutdown()


async def test_a_retried_503_gives_two_client_spans_under_the_call(
    fake: FakeHostUp, otel: Otel
) -> None:
    fake.inject(Fault.http(503))
    async with otel.client(fake) as client:
        await client.get_vm_details(12)
    (call,) = otel.finished(SpanKind.INTERNAL)
    first, second = otel.finished(SpanKind.CLIENT)
    assert call.name == "get_vm_details" and attrs(call)["hostup.vmid"] == 12
    assert call.status.status_code is StatusCode.UNSET
    for attempt in (first, second):
        assert attempt.name == "GET"
        assert attempt.parent is not None and attempt.parent.span_id == call.context.span_id
        assert attrs(attempt)["http.request.method"] == "GET"
        assert attrs(attempt)["server.address"] == "127.0.0.1"
        assert attrs(attempt)["server.port"] == URL(fake.url).port
        assert attrs(attempt)["url.full"] == f"{fake.url}/vm/12/details"
    assert attrs(first)["http.response.status_code"] == 503
    assert attrs(first)["error.type"] == "503"
    assert first.status.status_code is StatusCode.ERROR
    assert "http.request.resend_count" not in attrs(first)
    assert attrs(second)["http.response.status_code"] == 200
    assert attrs(second)["http.request.resend_count"] == 1
    durations = otel.points("http.client.request.duration")
    assert sorted(p.attributes.get("http.response.status_code") for p in durations) == [200, 503]
    assert sum(p.count for p in durations) == 2
    (retries,) = otel.points("hostup.client.retries")
    assert retries.value == 1 and attrs(retries)["error.type"] == "503"


async def test_a_429_pause_shows_on_the_calls_span_and_in_the_metrics(
    fake: FakeHostUp, otel: Otel
) -> None:
    fake.inject(Fault.http(429, retry_after=0.3), vmid=1)
    refused = asyncio.Event()

    def on_attempt(event: AttemptEvent) -> None:
        if event.status == 429:
            refused.set()

    async with otel.client(fake, rate_limit=50.0, on_attempt=on_attempt) as client:
        first = asyncio.create_task(client.get_billing_cycle(1))
        await asyncio.wait_for(refused.wait(), timeout=10)
        await client.get_billing_cycle(2)  # meets the pause the 429 started
        await first
    calls = {attrs(s)["hostup.vmid"]: s for s in otel.finished(SpanKind.INTERNAL)}
    assert [e.name for e in calls[1].events] == ["hostup.rate_limited"]
    assert attrs(calls[1].events[0])["hostup.pause.seconds"] > 0
    assert attrs(calls[2])["hostup.wait.pause.seconds"] > 0
    (limited,) = otel.points("hostup.client.rate_limited")
    assert limited.value == 1
    waits = {attrs(p)["hostup.wait.reason"]: p for p in otel.points("hostup.client.wait.duration")}
    assert waits["pause"].count >= 1 and waits["pause"].sum > 0
    (rate,) = otel.points("hostup.client.rate")
    assert 0 < rate.value <= 50.0  # the rate the client sends at now


async def test_a_failed_call_marks_its_span_and_no_key_is_recorded(
    fake: FakeHostUp, otel: Otel
) -> None:
    async with otel.client(fake) as client:
        with pytest.raises(NotFoundError):
            await client.get_vm_details(404)
    (call,) = otel.finished(SpanKind.INTERNAL)
    assert call.status.status_code is StatusCode.ERROR
    assert attrs(call)["error.type"] == "NotFoundError"
    (attempt,) = otel.finished(SpanKind.CLIENT)
    assert attrs(attempt)["error.type"] == "404"
    recorded = otel.dump()
    assert "vm/404/details" in recorded
    assert API_KEY not in recorded and API_KEY not in json.dumps(recorded)


def suppression_probe() -> tuple[aiohttp.TraceConfig, list[object]]:
    """A trace config noting, per request, whether aiohttp's instrumentation is told to skip it."""
    seen: list[object] = []

    async def on_request_start(*_: object) -> None:
        seen.append(context.get_value(context._SUPPRESS_HTTP_INSTRUMENTATION_KEY))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    return trace, seen


async def test_aiohttp_instrumentation_is_told_not_to_trace_our_attempts(
    fake: FakeHostUp, otel: Otel
) -> None:
    # opentelemetry-instrumentation-aiohttp-client skips a request when this key is set.
    trace, seen = suppression_probe()
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        async with otel.client(fake, session=session) as client:
            await client.get_billing_cycle(1)
        async with HostUpClient(API_KEY, base_url=fake.url, session=session) as untraced:
            await untraced.get_billing_cycle(1)  # no SDK: nothing of ours to double
    assert seen == [True, None]


async def test_shared_fallback_seconds_are_observed(fake: FakeHostUp, otel: Otel) -> None:
    async with otel.client(fake) as client:
        client.stats.shared_fallback = 2.5
        (point,) = otel.points("hostup.client.shared_limit.fallback.duration")
    assert point.value == 2.5


async def test_a_no_op_tracer_provider_makes_no_spans_but_metrics_still_record(
    fake: FakeHostUp, otel: Otel
) -> None:
    from opentelemetry.trace import NoOpTracerProvider

    trace, seen = suppression_probe()
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        async with HostUpClient(
            API_KEY,
            base_url=fake.url,
            session=session,
            rate_limit=None,
            tracer_provider=NoOpTracerProvider(),
            meter_provider=otel.meter_provider,
        ) as client:
            await client.get_billing_cycle(1)
    assert otel.spans.get_finished_spans() == ()
    assert seen == [None]  # no span of ours, so aiohttp's instrumentation may trace it
    (duration,) = otel.points("http.client.request.duration")
    assert duration.count == 1 and attrs(duration)["http.response.status_code"] == 200
