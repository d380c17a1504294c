"""hostup-async benchmarks: decode, fan-out, memory and rate accuracy, with their targets.

Usage::

    python benchmarks/run.py                     # everything (about 5-8 minutes on 2 cores)
    python benchmarks/run.py decode rate         # only some benchmarks
    python benchmarks/run.py --quick             # smoke run: small sizes, a few seconds each

Each benchmark prints a table. A full run merges its figures into
``benchmarks/results/latest.json`` (with the machine they were measured on) and redraws
``benchmarks/results/ratios.png``; a ``--quick`` run writes ``results/quick.json`` and
``results/quick.png`` instead, so smoke figures never replace real ones.

Targets are ratios from one run on one machine; absolute times are not comparable across
machines. See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
from fake_server import API_KEY  # noqa: E402

from hostup_async import HostUpClient, decode_vm_details  # noqa: E402

BENCHMARKS = ("decode", "fanout", "memory", "rate")

# --------------------------------------------------------------------------------------
# helpers


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, Python and package versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover - psutil is in the bench group
        physical = None
    packages = {}
    for name in (
        "hostup-async",
        "msgspec",
        "aiohttp",
        "aiolimiter",
        "orjson",
        "pydantic",
        "httpx",
    ):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "git": git_state(),
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "physical_cores": physical,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": packages,
    }


def git_state() -> str | None:
    """The commit the figures were measured at, marked ``+dirty`` when the tree had changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "hostup_async"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return None
    return (head + ("+dirty" if dirty else "")) or None


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    """Print an aligned table."""
    cells = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n## {title}")
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


@contextmanager
def fake_server(hours: int) -> Iterator[str]:
    """Run benchmarks/fake_server.py in its own process; yield its base URL."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "fake_server.py"), "--hours", str(hours)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("URL "):
            raise RuntimeError(f"fake server did not start: {line!r}")
        yield line.split()[1]
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bench_root(url: str) -> str:
    """The fake's root URL, where the /_bench routes live."""
    return url.removesuffix("/api")


def server_cpu(url: str) -> float:
    """CPU seconds the fake server process has used so far."""
    import urllib.request

    with urllib.request.urlopen(bench_root(url) + "/_bench/cpu") as r:
        return float(json.load(r)["cpu"])


# --------------------------------------------------------------------------------------
# 1. decode

_FIELDS = (
    "data_received",
    "data_sent",
    "mem_unit",
    "probes",
    "time",
    "uptime",
    "maxcpu",
    "maxcpu_on",
    "cpu",
    "maxmem",
    "maxmem_on",
    "mem",
    "maxdisk",
    "template",
    "ipv4_addresses",
)


def touch_sdk(vm: Any) -> float:
    """Read every value of every sample (and each hour key) of a decoded VMDetails."""
    t = 0.0
    for hour, s in vm.usage_log.items():
        hour  # noqa: B018 - touching the key, as touch_dict does
        t += (
            s.data_received
            + s.data_sent
            + s.mem_unit
            + s.probes
            + s.time
            + s.uptime
            + s.maxcpu
            + s.maxcpu_on
            + s.cpu
            + s.maxmem
            + s.maxmem_on
            + s.mem
            + s.maxdisk
            + s.template
            + s.ipv4_addresses
        )
    return t


def touch_dict(body: Any) -> float:
    """Read the same values from an untyped (orjson/json/msgspec) decode."""
    t = 0.0
    for hour, s in body["data"]["usage_log"].items():
        hour  # noqa: B018
        t += (
            s["data_received"]
            + s["data_sent"]
            + s["mem_unit"]
            + s["probes"]
            + s["time"]
            + s["uptime"]
            + s["maxcpu"]
            + s["maxcpu_on"]
            + s["cpu"]
            + s["maxmem"]
            + s["maxmem_on"]
            + s["mem"]
            + s["maxdisk"]
            + s["template"]
            + s["ipv4_addresses"]
        )
    return t


def decode_contenders() -> dict[str, Callable[[bytes], Any]]:
    """Every way of decoding a details body that the decode benchmark compares."""
    import json as stdlib_json

    import orjson
    from _alt_models import PEnvelope

    return {
        "hostup-async": decode_vm_details,
        "hostup-async + touch": lambda b: touch_sdk(decode_vm_details(b)),
        "hostup-async usage_log=False": lambda b: decode_vm_details(b, usage_log=False),
        "msgspec untyped": msgspec.json.decode,
        "orjson.loads": orjson.loads,
        "orjson.loads + touch": lambda b: touch_dict(orjson.loads(b)),
        "json.loads": stdlib_json.loads,
        "pydantic v2": PEnvelope.model_validate_json,
    }


def time_passes(
    contenders: dict[str, Callable[[bytes], Any]], bodies: list[bytes], passes: int
) -> dict[str, list[float]]:
    """Seconds per body for each contender, passes interleaved so drift hits all alike."""
    per_body: dict[str, list[float]] = {name: [] for name in contenders}
    for f in contenders.values():  # warm up: caches, lazily built validators
        f(bodies[0])
    for _ in range(passes):
        for name, f in contenders.items():
            t0 = time.perf_counter()
            for b in bodies:
                f(b)
            per_body[name].append((time.perf_counter() - t0) / len(bodies))
    return per_body


def bench_decode(quick: bool) -> dict[str, Any]:
    """Decode one body repeatedly, and many distinct bodies, with 24 h and 720 h logs."""
    from _bodies import bodies as make_bodies

    contenders = decode_contenders()
    cases = []
    for hours in (24, 720):
        distinct = (10 if quick else 60) if hours == 720 else (50 if quick else 400)
        repeats = (10 if quick else 60) if hours == 720 else (50 if quick else 400)
        one = make_bodies(1, hours)
        cases.append((f"one {hours}h body", hours, one * repeats))
        cases.append((f"{distinct} distinct {hours}h bodies", hours, make_bodies(distinct, hours)))
    passes = 3 if quick else 9
    results: dict[str, Any] = {"passes": passes, "cases": {}}
    for label, hours, bodies in cases:
        gc.collect()
        per_body = time_passes(contenders, bodies, passes)
        med = {name: statistics.median(ts) for name, ts in per_body.items()}
        base = med["orjson.loads"]
        rows = []
        case: dict[str, Any] = {
            "hours": hours,
            "bodies": len(bodies),
            "distinct": len(set(bodies)),
            "body_bytes": round(statistics.mean(len(b) for b in bodies)),
            "us_per_body": {},
            "min_us_per_body": {},
            "ratio_to_orjson": {},
        }
        for name in contenders:
            us = med[name] * 1e6
            case["us_per_body"][name] = round(us, 2)
            case["min_us_per_body"][name] = round(min(per_body[name]) * 1e6, 2)
            case["ratio_to_orjson"][name] = round(med[name] / base, 3)
            rows.append([name, f"{us:,.1f}", f"{med[name] / base:.2f}x"])
        touch = med["hostup-async + touch"] / med["orjson.loads + touch"]
        case["full_touch_vs_orjson_touch"] = round(touch, 3)
        rows.append(["hostup-async + touch / orjson + touch", "", f"{touch:.2f}x"])
        results["cases"][label] = case
        table(
            f"decode: {label} ({case['body_bytes']:,} bytes each, median of {passes} passes)",
            ["decoder", "us/body", "vs orjson"],
            rows,
        )
    return results


# --------------------------------------------------------------------------------------
# 2. fan-out


async def run_sdk(url: str, n: int, concurrency: int) -> int:
    """stream_vms over n vmids (or bounded get_vm_details if stream_vms is not there)."""
    ok = 0
    async with HostUpClient(
        API_KEY, base_url=url, rate_limit=None, max_concurrency=concurrency
    ) as client:
        if hasattr(client, "stream_vms"):
            async for r in client.stream_vms(range(1, n + 1)):
                ok += r.ok
        else:  # pragma: no cover - before issue 3 landed
            sem = asyncio.Semaphore(concurrency)

            async def one(vmid: int) -> int:
                async with sem:
                    await client.get_vm_details(vmid)
                    return 1

            ok = sum(await asyncio.gather(*(one(i) for i in range(1, n + 1))))
    return ok


async def run_bare(
    url: str, n: int, concurrency: int, decode: Callable[[bytes], Any] | None = None
) -> int:
    """The hand-written loop: aiohttp, a worker per slot, msgspec into plain Structs."""
    import aiohttp
    from _alt_models import BARE_DECODER

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
    from _alt_models import PEnvelope

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
    return await run_bare(url, n, concurrency, decode=decode_vm_details)


FANOUT_CLIENTS: dict[str, Callable[[str, int, int], Any]] = {
    "hostup-async stream_vms": run_sdk,
    "bare aiohttp + msgspec": run_bare,
    "httpx + pydantic": run_httpx,
    "bare aiohttp + hostup-async decode": run_bare_sdk_decode,
}
SDK = "hostup-async stream_vms"
BARE = "bare aiohttp + msgspec"
HTTPX = "httpx + pydantic"


def one_trial(name: str, url: str, n: int, concurrency: int) -> dict[str, float]:
    """Run one client once; wall time, client CPU and server CPU."""
    gc.collect()
    s0 = server_cpu(url)
    c0 = time.process_time()
    t0 = time.perf_counter()
    ok = asyncio.run(FANOUT_CLIENTS[name](url, n, concurrency))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    server = server_cpu(url) - s0
    if ok != n:
        raise RuntimeError(f"{name}: only {ok} of {n} requests succeeded")
    return {"wall": wall, "cpu": cpu, "server_cpu": server, "n": n}


def bench_fanout(quick: bool) -> dict[str, Any]:
    """Requests/s and client CPU per request, the clients in alternating runs."""
    concurrency = 16
    rounds = 2 if quick else 21
    sizes = {24: 300 if quick else 3000, 720: 60 if quick else 400}
    results: dict[str, Any] = {"concurrency": concurrency, "rounds": rounds, "cases": {}}
    for hours, n in sizes.items():
        names = list(FANOUT_CLIENTS)
        trials: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        with fake_server(hours) as url:
            for name in names:  # warm-up: imports, connection set-up, validators
                one_trial(name, url, max(20, n // 20), concurrency)
            for r in range(rounds):
                # Rotate the order so no client always runs first or last.
                k = r % len(names)
                for name in names[k:] + names[:k]:
                    m = n if name != HTTPX else max(20, n // 4)
                    trials[name].append(one_trial(name, url, m, concurrency))
        case: dict[str, Any] = {"hours": hours, "requests": n, "clients": {}}

        def rps(t: dict[str, float]) -> float:
            return t["n"] / t["wall"]

        def cpu(t: dict[str, float]) -> float:
            return t["cpu"] / t["n"]

        for name, ts in trials.items():
            case["clients"][name] = {
                "requests_per_s": round(statistics.median(map(rps, ts)), 1),
                "client_cpu_us_per_request": round(statistics.median(map(cpu, ts)) * 1e6, 1),
                "server_cpu_us_per_request": round(
                    statistics.median(t["server_cpu"] / t["n"] for t in ts) * 1e6, 1
                ),
                "server_cpu_share": round(
                    statistics.median(t["server_cpu"] / t["wall"] for t in ts), 3
                ),
                # Paired with the bare loop's run of the same round: drift cancels out.
                "throughput_vs_bare": round(
                    statistics.median(
                        rps(a) / rps(b) for a, b in zip(ts, trials[BARE], strict=True)
                    ),
                    3,
                ),
                "cpu_vs_bare": round(
                    statistics.median(
                        cpu(a) / cpu(b) for a, b in zip(ts, trials[BARE], strict=True)
                    ),
                    3,
                ),
                "trials": ts,
            }
        clients = case["clients"]
        case["throughput_vs_bare"] = clients[SDK]["throughput_vs_bare"]
        case["cpu_vs_bare"] = clients[SDK]["cpu_vs_bare"]
        case["throughput_vs_httpx"] = round(
            statistics.median(
                rps(a) / rps(b) for a, b in zip(trials[SDK], trials[HTTPX], strict=True)
            ),
            3,
        )
        # When the fake server is near one full core during the bare runs, the bare loop's
        # throughput is the server's ceiling, not the client's.
        case["server_bound"] = clients[BARE]["server_cpu_share"] >= 0.9
        rows = [
            [
                name,
                f"{c['requests_per_s']:,.0f}",
                f"{c['client_cpu_us_per_request']:,.0f}",
                f"{c['throughput_vs_bare']:.2f}x",
                f"{c['cpu_vs_bare']:.2f}x",
                f"{c['server_cpu_share']:.0%}",
            ]
            for name, c in clients.items()
        ]
        results["cases"][f"{hours}h"] = case
        table(
            f"fan-out: {n} details with {hours}h logs, concurrency {concurrency}, "
            f"median of {rounds} alternating runs (httpx: a quarter as many requests)",
            ["client", "req/s", "CPU us/req", "req/s vs bare", "CPU vs bare", "server CPU"],
            rows,
        )
        print(
            f"hostup-async: {case['throughput_vs_bare']:.2f}x bare throughput, "
            f"{case['cpu_vs_bare']:.2f}x bare CPU/request, "
            f"{case['throughput_vs_httpx']:.1f}x httpx + pydantic throughput"
            + (
                "; the fake server was the bottleneck of the bare loop"
                if case["server_bound"]
                else ""
            )
        )
    return results


# --------------------------------------------------------------------------------------
# 3. memory


def peak_rss_kib() -> int:
    """This process's peak resident set size in KiB.

    ``VmHWM`` from /proc where there is one: ``ru_maxrss`` survives ``exec``, so a child
    would report its parent's peak if that was higher.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS


async def _stream_for_memory(url: str, n: int) -> tuple[int, int]:
    """Stream n VMs, touching and dropping each; return (ok, baseline KiB before the loop)."""
    ok = 0
    async with HostUpClient(API_KEY, base_url=url, rate_limit=None, max_concurrency=16) as client:
        # Baseline after the session and a first request: the fixed cost of the process.
        await client.get_vm_details(1)
        gc.collect()
        baseline = peak_rss_kib()
        async for r in client.stream_vms(range(1, n + 1)):
            if r.details is not None:
                ok += len(r.details.usage_log) > 0
    return ok, baseline


def memory_child(url: str, n: int) -> None:
    """Child-process entry: stream n VMs and print peak RSS as JSON."""
    t0 = time.perf_counter()
    ok, baseline = asyncio.run(_stream_for_memory(url, n))
    peak = peak_rss_kib()
    print(
        json.dumps(
            {
                "n": n,
                "ok": ok,
                "peak_rss_kib": peak,
                "baseline_rss_kib": baseline,
                "seconds": time.perf_counter() - t0,
            }
        )
    )


def bench_memory(quick: bool) -> dict[str, Any]:
    """Peak RSS streaming 2,000 versus 20,000 VMs, each in a fresh process."""
    sizes = (200, 2000) if quick else (2000, 20000)
    hours = 720
    runs: dict[int, dict[str, Any]] = {}
    with fake_server(hours) as url:
        for n in sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", url, str(n)],
                check=True,
                capture_output=True,
                text=True,
            )
            runs[n] = json.loads(out.stdout.strip().splitlines()[-1])
            if runs[n]["ok"] != n:
                raise RuntimeError(f"memory run: only {runs[n]['ok']} of {n} succeeded")
    small, large = (runs[n] for n in sizes)
    ratio = large["peak_rss_kib"] / small["peak_rss_kib"]
    rows = [
        [
            f"{n:,} VMs",
            f"{r['peak_rss_kib'] / 1024:.1f}",
            f"{(r['peak_rss_kib'] - r['baseline_rss_kib']) / 1024:.1f}",
            f"{r['seconds']:.1f}",
        ]
        for n, r in runs.items()
    ]
    rows.append(["ratio (large / small)", f"{ratio:.3f}x", "", ""])
    table(
        f"memory: peak RSS streaming {hours}h-log details, fresh process each",
        ["run", "peak RSS MiB", "growth MiB", "seconds"],
        rows,
    )
    return {"hours": hours, "runs": {str(n): r for n, r in runs.items()}, "ratio": round(ratio, 3)}


# --------------------------------------------------------------------------------------
# 4. rate accuracy


async def _paced_run(url: str, rate: float, n: int) -> None:
    async with HostUpClient(API_KEY, base_url=url, rate_limit=rate, max_concurrency=64) as client:
        async for r in client.stream_vms(range(1, n + 1), usage_log=False):
            if not r.ok:
                raise RuntimeError(f"rate run: vmid {r.vmid} failed: {r.error}")


def _arrivals(url: str) -> list[float]:
    import urllib.request

    with urllib.request.urlopen(bench_root(url) + "/_bench/arrivals") as r:
        return sorted(json.load(r)["arrivals"])


def _reset(url: str) -> None:
    import urllib.request

    req = urllib.request.Request(bench_root(url) + "/_bench/reset", method="POST")
    with urllib.request.urlopen(req):
        pass


def max_in_window(times: list[float], width: float = 1.0) -> int:
    """Most arrivals in any half-open window [t, t + width) (one starting at each arrival)."""
    best = 0
    j = 0
    for i, t in enumerate(times):
        while j < len(times) and times[j] < t + width:
            j += 1
        best = max(best, j - i)
    return best


def bench_rate(quick: bool) -> dict[str, Any]:
    """At rate R: the most requests in any 1-s window after the burst, and the mean rate."""
    plan = [(50.0, 4.0)] if quick else [(20.0, 12.0), (100.0, 12.0)]
    results: dict[str, Any] = {"runs": {}}
    rows = []
    with fake_server(0) as url:
        for rate, seconds in plan:
            _reset(url)
            # The limiter lets one second's worth through at once, then paces: ask for the
            # burst plus `seconds` of paced requests.
            n = int(rate * (1 + seconds))
            asyncio.run(_paced_run(url, rate, n))
            times = _arrivals(url)
            if len(times) != n:
                raise RuntimeError(f"server saw {len(times)} requests, expected {n}")
            burst_end = times[0] + 1.0
            after = [t for t in times if t >= burst_end]
            peak = max_in_window(after)
            achieved = (len(after) - 1) / (after[-1] - after[0])
            run = {
                "rate": rate,
                "requests": n,
                "burst_requests": n - len(after),
                "max_in_any_1s_window_after_burst": peak,
                "achieved_rate": round(achieved, 3),
                "achieved_fraction": round(achieved / rate, 4),
                "max_window_fraction": round(peak / rate, 4),
            }
            results["runs"][f"{rate:g}"] = run
            rows.append(
                [
                    f"R = {rate:g}/s",
                    n,
                    run["burst_requests"],
                    peak,
                    f"{achieved:.2f}",
                    f"{achieved / rate:.3f}",
                ]
            )
    table(
        "rate accuracy (arrival times recorded by the fake server)",
        ["run", "requests", "in burst", "max in 1 s after", "achieved/s", "achieved/R"],
        rows,
    )
    return results


# --------------------------------------------------------------------------------------
# targets, results file, chart


def targets(bench: dict[str, Any]) -> list[dict[str, Any]]:
    """Evaluate every target the present results allow; each with value, limit and verdict."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float, limit: float, higher_is_better: bool) -> None:
        ok = value >= limit if higher_is_better else value <= limit
        out.append(
            {
                "target": name,
                "value": value,
                "limit": limit,
                "kind": ">=" if higher_is_better else "<=",
                "holds": ok,
            }
        )

    decode = bench.get("decode")
    if decode:
        many = [c for label, c in decode["cases"].items() if "distinct" in label]
        for c in many:
            if c["hours"] == 720:
                add(
                    "decode 720h, every sample touched / orjson + touch",
                    c["full_touch_vs_orjson_touch"],
                    1.0,
                    False,
                )
                add(
                    "decode 720h usage_log=False / orjson.loads",
                    c["ratio_to_orjson"]["hostup-async usage_log=False"],
                    0.35,
                    False,
                )
    fanout = bench.get("fanout")
    if fanout:
        for label, c in fanout["cases"].items():
            add(f"fan-out {label}: req/s / bare aiohttp", c["throughput_vs_bare"], 0.9, True)
            add(f"fan-out {label}: CPU per req / bare aiohttp", c["cpu_vs_bare"], 1.15, False)
            add(f"fan-out {label}: req/s / httpx + pydantic", c["throughput_vs_httpx"], 10.0, True)
    memory = bench.get("memory")
    if memory:
        add("memory: peak RSS 20k / 2k VMs", memory["ratio"], 1.15, False)
    rate = bench.get("rate")
    if rate:
        for label, r in rate["runs"].items():
            add(
                f"rate R={label}: max in 1 s after burst / R",
                r["max_window_fraction"],
                1.0,
                False,
            )
            add(f"rate R={label}: achieved / R", r["achieved_fraction"], 0.97, True)
    return out


def draw_chart(results: dict[str, Any], path: Path) -> None:
    """Horizontal bars: each target's ratio as a fraction of its limit (1.0 is the limit)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["targets"]
    if not rows:
        return
    # Normalise so that "within target" is always left of 1: value/limit for <=,
    # limit/value for >=.
    scores = [
        (r["value"] / r["limit"]) if r["kind"] == "<=" else (r["limit"] / max(r["value"], 1e-9))
        for r in rows
    ]
    labels = [f"{r['target']}  ({r['value']:g} {r['kind']} {r['limit']:g})" for r in rows]
    colours = ["#2a9d5c" if r["holds"] else "#d1495b" for r in rows]
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(rows) + 1.6))
    y = range(len(rows))
    ax.barh(list(y), scores, color=colours)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share of the target's allowance (left of the dashed line: target holds)")
    m = results["machine"]
    ax.set_title(
        f"hostup-async targets - {m['cpu']}, {m['logical_cores']} cores, "
        f"Python {m['python']} ({results['updated'][:10]})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save(new: dict[str, Any], quick: bool, chart: bool) -> Path:
    """Merge this run's results into the results file and redraw the chart."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / ("quick.json" if quick else "latest.json")
    results: dict[str, Any] = {}
    if path.exists():
        try:
            results = json.loads(path.read_text())
        except ValueError:
            results = {}
    bench = results.get("benchmarks", {})
    bench.update(new)
    results = {
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine_info(),
        "benchmarks": bench,
    }
    results["targets"] = targets(bench)
    path.write_text(json.dumps(results, indent=2) + "\n")
    if chart:
        draw_chart(results, RESULTS / ("quick.png" if quick else "ratios.png"))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="hostup-async benchmarks")
    parser.add_argument(
        "benchmarks", nargs="*", help=f"which to run: {', '.join(BENCHMARKS)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--no-chart", action="store_true", help="do not redraw the chart")
    parser.add_argument("--memory-child", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]))
        return 0
    chosen = args.benchmarks or list(BENCHMARKS)
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    m = machine_info()
    print(
        f"machine: {m['cpu']}, {m['logical_cores']} logical cores; Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    )
    runners = {
        "decode": bench_decode,
        "fanout": bench_fanout,
        "memory": bench_memory,
        "rate": bench_rate,
    }
    new: dict[str, Any] = {}
    started = time.perf_counter()
    for name in BENCHMARKS:
        if name in chosen:
            t0 = time.perf_counter()
            new[name] = runners[name](args.quick)
            new[name]["seconds"] = round(time.perf_counter() - t0, 1)
    path = save(new, args.quick, not args.no_chart)
    results = json.loads(path.read_text())
    rows = [
        [
            t["target"],
            f"{t['value']:g}",
            f"{t['kind']} {t['limit']:g}",
            "yes" if t["holds"] else "NO",
        ]
        for t in results["targets"]
    ]
    table("targets", ["target", "value", "limit", "holds"], rows)
    print(f"\nwrote {path.relative_to(ROOT)} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
