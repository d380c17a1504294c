"""memory: peak RSS streaming N VMs with 720-hour logs must not grow with N.

Each size runs in a fresh child process (``python -m benchmarks.memory URL N``), so one
run's peak cannot hide the other's.
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hostup_async import HostUpClient

from ._harness import ROOT, Table, fake_server
from ._server import API_KEY
from ._targets import Target

TITLE = "Memory"
HOURS = 720
TARGETS = (Target("memory: peak RSS 20k / 2k VMs", ("ratio",), "<=", 1.15),)


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


async def stream(url: str, n: int) -> tuple[int, int]:
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


def child(url: str, n: int) -> dict[str, Any]:
    """The child process's work: stream n VMs; its peak RSS and baseline."""
    t0 = time.perf_counter()
    ok, baseline = asyncio.run(stream(url, n))
    return {
        "n": n,
        "ok": ok,
        "peak_rss_kib": peak_rss_kib(),
        "baseline_rss_kib": baseline,
        "seconds": time.perf_counter() - t0,
    }


def run(quick: bool) -> dict[str, Any]:
    """Peak RSS streaming a small and a ten times larger number of VMs."""
    sizes = (200, 2000) if quick else (2000, 20000)
    runs: dict[str, dict[str, Any]] = {}
    with fake_server(HOURS) as url:
        for n in sizes:
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.memory", url, str(n)],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            )
            runs[str(n)] = r = json.loads(out.stdout.strip().splitlines()[-1])
            if r["ok"] != n:
                raise RuntimeError(f"memory run: only {r['ok']} of {n} succeeded")
    small, large = runs.values()
    ratio = large["peak_rss_kib"] / small["peak_rss_kib"]
    return {"hours": HOURS, "runs": runs, "ratio": round(ratio, 3)}


def tables(result: dict[str, Any]) -> list[Table]:
    """Peak RSS and growth over the baseline for each size, and their ratio."""
    rows = [
        [
            f"{r['n']:,} VMs",
            f"{r['peak_rss_kib'] / 1024:.1f}",
            f"{(r['peak_rss_kib'] - r['baseline_rss_kib']) / 1024:.1f}",
            f"{r['seconds']:.1f}",
        ]
        for r in result["runs"].values()
    ]
    rows.append(["ratio (large / small)", f"{result['ratio']:.3f}x", "", ""])
    return [
        Table(
            f"memory: peak RSS streaming {result['hours']}h-log details, a fresh process each",
            ["run", "peak RSS MiB", "growth MiB", "seconds"],
            rows,
            "Growth is over the process's RSS after its first request.",
        )
    ]


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], int(sys.argv[2]))))
