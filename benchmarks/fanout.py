"""fanout: a bulk fetch's requests/s and client CPU, against bare aiohttp and httpx + pydantic.

OpenTelemetry's cost is counted beside it (instructions only): the client with the ``otel``
extra absent, with the API but no SDK configured (the plain contender, as the bench session
installs the extra), with the SDK and in-memory exporters, and the SDK's own floor: the bare
loop making the same spans and measurement with no hostup-async at all.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._harness import Table, fake_server, instructions_per_item, quartiles, server_cpu
from ._server import API_KEY
from ._targets import Target

TITLE = "Fan-out"
SDK = "hostup-async stream_vms"
BARE = "bare aiohttp + msgspec"
HTTPX = "httpx + pydantic"
NO_OTEL = "hostup-async, otel extra absent"
OTEL = "hostup-async + OTel SDK (in memory)"
OTEL_FLOOR = "bare aiohttp + the same OTel spans"
CONCURRENCY = 16
# The ratio to httpx + pydantic is kept as information at 720 hours: no client on aiohttp
# and msgspec reaches 10x there (the bare loop itself makes 7-8x), bounded by pydantic's
# and httpx's own time per 220 kB body.
# Client CPU is judged on instructions (callgrind): process time per request moved by a
# quarter between runs on a shared machine, a count of instructions by well under 1%.
TARGETS = (
    Target("fan-out {}: req/s / bare aiohttp", ("cases", "*", "throughput_vs_bare"), ">=", 0.9),
    Target(
        "fan-out {}: instructions per req / bare aiohttp",
        ("cases", "*", "instructions_vs_bare"),
        "<=",
        1.15,
    ),
    Target(
        "fan-out 24h: req/s / httpx + pydantic", ("cases", "24h", "throughput_vs_httpx"), ">=", 10.0
    ),
    Target(
        "fan-out {}: instructions, otel API no SDK / extra absent",
        ("cases", "*", "otel_unconfigured_vs_absent"),
        "<=",
        1.02,
    ),
    Target(
        "fan-out {}: instructions, OTel SDK / extra absent",
        ("cases", "*", "otel_sdk_vs_absent"),
        "<=",
        1.15,
    ),
)


async def run_sdk(url: str, n: int, concurrency: int, **options: Any) -> int:
    """stream_vms over n vmids."""
    from hostup_async import HostUpClient

    ok = 0
    async with HostUpClient(
        API_KEY, base_url=url, rate_limit=None, max_concurrency=concurrency, **options
    ) as client:
        async for r in client.stream_vms(range(1, n + 1)):
            ok += r.ok
    return ok


async def run_bare(
    url: str, n: int, concurrency: int, decode: Callable[[bytes], Any] | None = None
) -> int:
    """The hand-written loop: aiohttp, a worker per slot, msgspec into plain Structs."""
    import aiohttp

    from ._alt_models import BARE_DECODER

    decode = decode or BARE_DECODER.decode
    vmids = iter(range(1, n + 1))
    headers = {"X-API-Key": API_KEY, "Accept": "application/json"}
    ok = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal ok
        for vmid in vmids:
            async with session.get(f"{url}/vm/{vmid}/details", headers=headers) as resp:
                body = await resp.read()
                if resp.status == 200:
                    decode(body)
                    ok += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return ok


async def run_httpx(url: str, n: int, concurrency: int) -> int:
    """The same loop with httpx and pydantic v2 models."""
    import httpx

    from ._alt_models import PEnvelope

    vmids = iter(range(1, n + 1))
    headers = {"X-API-Key": API_KEY, "Accept": "application/json"}
    ok = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal ok
        for vmid in vmids:
            resp = await client.get(f"{url}/vm/{vmid}/details", headers=headers)
            if resp.status_code == 200:
                PEnvelope.model_validate_json(resp.content)
                ok += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return ok


async def run_bare_sdk_decode(url: str, n: int, concurrency: int) -> int:
    """The bare loop decoding with hostup-async's decoder: the SDK's machinery alone."""
    from hostup_async import decode_vm_details

    return await run_bare(url, n, concurrency, decode=decode_vm_details)


def _otel_sdk() -> tuple[Any, Any]:
    """An SDK tracer provider and meter provider that keep everything in memory."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


async def run_sdk_otel(url: str, n: int, concurrency: int) -> int:
    """stream_vms traced and measured by the OpenTelemetry SDK, exported to memory."""
    tracer_provider, meter_provider = _otel_sdk()
    return await run_sdk(
        url, n, concurrency, tracer_provider=tracer_provider, meter_provider=meter_provider
    )


async def run_bare_otel(url: str, n: int, concurrency: int) -> int:
    """The bare loop making what the client records per call, by hand: the SDK's own floor.

    An INTERNAL span with the vmid, a CLIENT span under it with the stable HTTP attributes
    and the status, one ``http.client.request.duration`` measurement; nothing else.
    """
    import aiohttp
    from opentelemetry import trace
    from yarl import URL

    from ._alt_models import BARE_DECODER

    tracer_provider, meter_provider = _otel_sdk()
    tracer = tracer_provider.get_tracer("floor")
    duration = meter_provider.get_meter("floor").create_histogram(
        "http.client.request.duration", unit="s"
    )
    parsed = URL(url)
    server = {
        "http.request.method": "GET",
        "server.address": parsed.host or "",
        "server.port": parsed.port or 80,
    }
    ended = {**server, "http.response.status_code": 200}
    internal, client = trace.SpanKind.INTERNAL, trace.SpanKind.CLIENT
    vmids = iter(range(1, n + 1))
    headers = {"X-API-Key": API_KEY, "Accept": "application/json"}
    ok = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal ok
        for vmid in vmids:
            call = tracer.start_span(
                "get_vm_details", kind=internal, attributes={"hostup.vmid": vmid}
            )
            target = f"{url}/vm/{vmid}/details"
            attempt = tracer.start_span(
                "GET",
                context=trace.set_span_in_context(call),
                kind=client,
                attributes={**server, "url.full": target},
            )
            started = time.perf_counter()
            async with session.get(target, headers=headers) as resp:
                body = await resp.read()
                status = resp.status
            duration.record(time.perf_counter() - started, ended)
            attempt.set_attribute("http.response.status_code", status)
            attempt.end()
            if status == 200:
                BARE_DECODER.decode(body)
                ok += 1
            call.end()

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return ok


CONTENDERS: dict[str, Callable[[str, int, int], Awaitable[int]]] = {
    SDK: run_sdk,
    BARE: run_bare,
    HTTPX: run_httpx,
    "bare aiohttp + hostup-async decode": run_bare_sdk_decode,
}
# Counted by callgrind only (not in the timed rounds): their figure is their cost in
# instructions beside the plain client's.
COUNTED_ONLY: dict[str, Callable[[str, int, int], Awaitable[int]]] = {
    NO_OTEL: run_sdk,  # run with opentelemetry made unimportable (see main)
    OTEL: run_sdk_otel,
    OTEL_FLOOR: run_bare_otel,
}


def one_trial(name: str, url: str, n: int) -> dict[str, float]:
    """Run one contender once; its wall time, client CPU and server CPU."""
    gc.collect()
    s0 = server_cpu(url)
    c0 = time.process_time()
    t0 = time.perf_counter()
    ok = asyncio.run(CONTENDERS[name](url, n, CONCURRENCY))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    server = server_cpu(url) - s0
    if ok != n:
        raise RuntimeError(f"{name}: only {ok} of {n} requests succeeded")
    return {"wall": wall, "cpu": cpu, "server_cpu": server, "n": n}


def _rps(t: dict[str, float]) -> float:
    return t["n"] / t["wall"]


def _cpu(t: dict[str, float]) -> float:
    return t["cpu"] / t["n"]


def _paired(
    metric: Callable[[dict[str, float]], float],
    trials: list[dict[str, float]],
    base: list[dict[str, float]],
) -> float:
    """Median of per-round ratios, each run paired with the base's run of the same round."""
    return round(
        statistics.median(metric(a) / metric(b) for a, b in zip(trials, base, strict=True)), 3
    )


# Counted for the contenders the targets compare: a run under callgrind is some 50 times
# slower, most of it the interpreter's start, so httpx is left out.
COUNTED = (SDK, BARE, NO_OTEL, OTEL, OTEL_FLOOR)


def count_instructions(url: str, hours: int, quick: bool) -> dict[str, float]:
    """Client instructions per request of the counted contenders, by callgrind."""
    # The large run is long enough that a one-off garbage collection (which falls in one
    # run or the other as the code changes) moves the figure by well under 1%.
    small, large = {24: (40, 640), 720: (8, 72)}[hours] if not quick else (4, 12)
    return {
        name: round(
            instructions_per_item(
                "benchmarks.fanout", lambda k, name=name: (name, url, str(k)), small, large
            )
        )
        for name in COUNTED
    }


def _spread(
    metric: Callable[[dict[str, float]], float],
    trials: list[dict[str, float]],
    base: list[dict[str, float]],
) -> list[float]:
    """First and third quartiles of the per-round ratios ``_paired`` takes the median of."""
    low, high = quartiles([metric(a) / metric(b) for a, b in zip(trials, base, strict=True)])
    return [round(low, 3), round(high, 3)]


def run_case(hours: int, n: int, rounds: int, quick: bool = False) -> dict[str, Any]:
    """Every contender over ``n`` details with ``hours``-long logs, in ``rounds`` alternating runs."""
    names = list(CONTENDERS)
    trials: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    with fake_server(hours) as url:
        for name in names:  # warm-up: imports, connection set-up, validators
            one_trial(name, url, max(20, n // 20))
        for r in range(rounds):
            k = r % len(names)  # rotate the order so no contender always runs first or last
            for name in names[k:] + names[:k]:
                trials[name].append(one_trial(name, url, n if name != HTTPX else max(20, n // 4)))
        counted = count_instructions(url, hours, quick)
    clients = {
        name: {
            "requests_per_s": round(statistics.median(map(_rps, ts)), 1),
            "client_cpu_us_per_request": round(statistics.median(map(_cpu, ts)) * 1e6, 1),
            "server_cpu_us_per_request": round(
                statistics.median(t["server_cpu"] / t["n"] for t in ts) * 1e6, 1
            ),
            "server_cpu_share": round(
                statistics.median(t["server_cpu"] / t["wall"] for t in ts), 3
            ),
            **({"instructions_per_request": counted[name]} if name in counted else {}),
            "throughput_vs_bare": _paired(_rps, ts, trials[BARE]),
            # The middle half of the rounds' ratios: how far one round may stray.
            "throughput_vs_bare_spread": _spread(_rps, ts, trials[BARE]),
            "cpu_vs_bare": _paired(_cpu, ts, trials[BARE]),
            "cpu_vs_bare_spread": _spread(_cpu, ts, trials[BARE]),
            **(
                {"instructions_vs_bare": round(counted[name] / counted[BARE], 3)}
                if name in counted
                else {}
            ),
            "trials": ts,
        }
        for name, ts in trials.items()
    }
    for name in COUNTED_ONLY:
        clients[name] = {
            "instructions_per_request": counted[name],
            "instructions_vs_bare": round(counted[name] / counted[BARE], 3),
        }
    return {
        "hours": hours,
        "requests": n,
        "clients": clients,
        # OpenTelemetry's cost, against the client with the otel extra absent: with the API
        # but no SDK configured, with the SDK, and the SDK's own floor over the bare loop.
        "otel_unconfigured_vs_absent": round(counted[SDK] / counted[NO_OTEL], 3),
        "otel_sdk_vs_absent": round(counted[OTEL] / counted[NO_OTEL], 3),
        "otel_floor_vs_bare": round(counted[OTEL_FLOOR] / counted[BARE], 3),
        "throughput_vs_bare": clients[SDK]["throughput_vs_bare"],
        "cpu_vs_bare": clients[SDK]["cpu_vs_bare"],
        "instructions_vs_bare": clients[SDK]["instructions_vs_bare"],
        "throughput_vs_httpx": _paired(_rps, trials[SDK], trials[HTTPX]),
        # When the fake server is near one full core during the bare runs, the bare loop's
        # throughput is the server's ceiling, not the client's.
        "server_bound": clients[BARE]["server_cpu_share"] >= 0.9,
    }


def run(quick: bool) -> dict[str, Any]:
    """Requests/s and client CPU per request with 24-hour and 720-hour logs."""
    rounds = 2 if quick else 11
    sizes = {24: 300 if quick else 3000, 720: 60 if quick else 400}
    return {
        "concurrency": CONCURRENCY,
        "rounds": rounds,
        "cases": {f"{hours}h": run_case(hours, n, rounds, quick) for hours, n in sizes.items()},
    }


def tables(result: dict[str, Any]) -> list[Table]:
    """One table per case: each contender's rate and CPU, and its ratios to the bare loop."""
    out = []
    for label, case in result["cases"].items():
        rows = [
            [
                name,
                f"{c['requests_per_s']:,.0f}" if "requests_per_s" in c else "-",
                f"{c['throughput_vs_bare']:.3f} ({_range(c.get('throughput_vs_bare_spread'))})"
                if "throughput_vs_bare" in c
                else "-",
                f"{c['client_cpu_us_per_request']:,.0f}" if "requests_per_s" in c else "-",
                f"{c['cpu_vs_bare']:.3f} ({_range(c.get('cpu_vs_bare_spread'))})"
                if "cpu_vs_bare" in c
                else "-",
                f"{c['instructions_per_request'] / 1e6:.2f}"
                if "instructions_per_request" in c
                else "-",
                f"{c['instructions_vs_bare']:.3f}" if "instructions_vs_bare" in c else "-",
                f"{c['server_cpu_share']:.0%}" if "server_cpu_share" in c else "-",
            ]
            for name, c in case["clients"].items()
        ]
        note = (
            f"hostup-async makes {case['throughput_vs_httpx']:.1f}x the requests/s of httpx + "
            "pydantic (which ran a quarter as many requests)."
        )
        if "otel_sdk_vs_absent" in case:
            note += (
                " OpenTelemetry, in instructions against the client without the otel extra: "
                f"API with no SDK {case['otel_unconfigured_vs_absent']:.3f}x, SDK with "
                f"in-memory exporters {case['otel_sdk_vs_absent']:.3f}x; the SDK's own floor "
                "(the bare loop making the same spans and measurement) is "
                f"{case['otel_floor_vs_bare']:.3f}x the bare loop."
            )
        if case["server_bound"]:
            note += (
                " The fake server was the bottleneck of the bare loop, so *vs bare* "
                "understates the client."
            )
        out.append(
            Table(
                f"fan-out {label} logs: {case['requests']:,} requests at concurrency "
                f"{result['concurrency']}, median of {result['rounds']} alternating runs",
                [
                    "client",
                    "req/s",
                    "req/s vs bare (middle half)",
                    "client CPU µs/req",
                    "CPU vs bare (middle half)",
                    "M instructions/req",
                    "instructions vs bare",
                    "server CPU",
                ],
                rows,
                note,
            )
        )
    return out


def _range(spread: list[float] | None) -> str:
    """``0.95 to 1.02`` for a spread, ``-`` for figures measured before spreads were kept."""
    return f"{spread[0]:.2f} to {spread[1]:.2f}" if spread else "-"


def main(argv: list[str]) -> int:
    """``python -m benchmarks.fanout CONTENDER URL N``: one run, as callgrind counts it."""
    name, url, n = argv
    if name == NO_OTEL:
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # as if not installed
    run = {**CONTENDERS, **COUNTED_ONLY}[name]
    ok = asyncio.run(run(url, int(n), CONCURRENCY))
    return 0 if ok == int(n) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
