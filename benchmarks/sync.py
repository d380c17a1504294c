"""sync: the sync client against the async one, in bulk and per call."""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from typing import Any

import hostup_async
from hostup_async import sync

from ._harness import Table, fake_server
from ._server import API_KEY
from ._targets import Target

TITLE = "Sync client"
CONCURRENCY = 16
TARGETS = (
    Target("sync fetch_vms: VMs/s / async", ("throughput_vs_async",), ">=", 0.9),
    Target("sync call: overhead over async (µs)", ("overhead_us",), "<=", 150.0),
)


async def _bulk(url: str, rounds: int, n: int) -> dict[str, list[float]]:
    """Alternate ``fetch_vms``, then ``stream_vms``, of n VMs through each client, both open."""
    seconds: dict[str, list[float]] = {
        "async": [],
        "sync": [],
        "async stream": [],
        "sync stream": [],
    }
    options: dict[str, Any] = {"rate_limit": None, "max_concurrency": CONCURRENCY}
    async with hostup_async.HostUpClient(API_KEY, base_url=url, **options) as aclient:
        with sync.HostUpClient(API_KEY, base_url=url, **options) as sclient:
            await aclient.fetch_vms(range(1, 101))  # connections set up, caches warm
            sclient.fetch_vms(range(1, 101))
            for r in range(rounds):
                for name in ("async", "sync") if r % 2 == 0 else ("sync", "async"):
                    gc.collect()
                    t0 = time.perf_counter()
                    if name == "async":
                        results = await aclient.fetch_vms(range(1, n + 1))
                    else:
                        results = sclient.fetch_vms(range(1, n + 1))
                    seconds[name].append(time.perf_counter() - t0)
                    if sum(r.ok for r in results) != n:
                        raise RuntimeError(f"{name} fetch_vms: some VMs failed")
                for name in ("async", "sync") if r % 2 == 0 else ("sync", "async"):
                    gc.collect()
                    t0 = time.perf_counter()
                    if name == "async":
                        ok = sum([r.ok async for r in aclient.stream_vms(range(1, n + 1))])
                    else:
                        ok = sum(r.ok for r in sclient.stream_vms(range(1, n + 1)))
                    seconds[f"{name} stream"].append(time.perf_counter() - t0)
                    if ok != n:
                        raise RuntimeError(f"{name} stream_vms: some VMs failed")
    return seconds


async def _per_call(url: str, batches: int, size: int) -> dict[str, list[float]]:
    """Alternate batches of ``size`` one-at-a-time calls through each client, in one process.

    Both clients are open at once and take turns batch by batch, so a busy machine's drift
    falls on both alike; the async calls are awaited on this thread's loop, the sync ones
    made from the same thread (its loop idles meanwhile).
    """
    seconds: dict[str, list[float]] = {"async": [], "sync": []}
    async with hostup_async.HostUpClient(API_KEY, base_url=url, rate_limit=None) as aclient:
        with sync.HostUpClient(API_KEY, base_url=url, rate_limit=None) as sclient:
            await aclient.get_vm_details(1, usage_log=False)  # connections set up
            sclient.get_vm_details(1, usage_log=False)
            for _ in range(batches):
                t0 = time.perf_counter()
                for vmid in range(1, size + 1):
                    await aclient.get_vm_details(vmid, usage_log=False)
                t1 = time.perf_counter()
                for vmid in range(1, size + 1):
                    sclient.get_vm_details(vmid, usage_log=False)
                t2 = time.perf_counter()
                seconds["async"].append((t1 - t0) / size)
                seconds["sync"].append((t2 - t1) / size)
    return seconds


def run(quick: bool) -> dict[str, Any]:
    """Bulk throughput of 2,000 VMs, and the cost of one call: each client in turn."""
    rounds = 2 if quick else 11
    vms = 200 if quick else 2000
    batches, size = (10, 20) if quick else (100, 50)
    with fake_server(24) as url:
        bulk = asyncio.run(_bulk(url, rounds, vms))
        gc.collect()
        single = asyncio.run(_per_call(url, batches, size))
    ratio = statistics.median(a / s for a, s in zip(bulk["async"], bulk["sync"], strict=True))
    stream_ratio = statistics.median(
        a / s for a, s in zip(bulk["async stream"], bulk["sync stream"], strict=True)
    )
    overhead = statistics.median(
        s - a for a, s in zip(single["async"], single["sync"], strict=True)
    )
    return {
        "vms": vms,
        "calls": batches * size,
        "rounds": rounds,
        "concurrency": CONCURRENCY,
        "vms_per_s": {k: round(vms / statistics.median(v), 1) for k, v in bulk.items()},
        # stream_vms hands results over in batches; kept as information, no target.
        "us_per_call": {k: round(statistics.median(v) * 1e6, 1) for k, v in single.items()},
        "throughput_vs_async": round(ratio, 3),
        "stream_vs_async": round(stream_ratio, 3),
        "overhead_us": round(overhead * 1e6, 1),
    }


def tables(result: dict[str, Any]) -> list[Table]:
    """Bulk VMs/s and time per call for each client, with the ratio and the overhead."""
    rows = [
        [
            f"{name} client",
            f"{result['vms_per_s'][name]:,.0f}",
            f"{result['vms_per_s'][name + ' stream']:,.0f}",
            f"{result['us_per_call'][name]:,.0f}",
        ]
        for name in ("async", "sync")
    ]
    return [
        Table(
            f"sync vs async: fetch_vms of {result['vms']:,} VMs at concurrency "
            f"{result['concurrency']}, and {result['calls']:,} calls one at a time; "
            f"medians of {result['rounds']} alternating runs and of alternating batches",
            ["client", "fetch_vms VMs/s", "stream_vms VMs/s", "µs per call"],
            rows,
            f"The sync client's fetch_vms makes {result['throughput_vs_async']:.3f}x the async "
            f"client's VMs/s and its stream_vms {result['stream_vs_async']:.3f}x; one sync call "
            f"costs {result['overhead_us']:.0f} µs more than the same awaited call (the hop to "
            "the loop thread and back).",
        )
    ]
