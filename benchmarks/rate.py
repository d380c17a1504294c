"""rate: how exactly a client keeps to its ``rate_limit``, from arrival times at the server."""

from __future__ import annotations

import asyncio
from typing import Any

from hostup_async import HostUpClient

from ._harness import Table, fake_server, server_route
from ._server import API_KEY
from ._targets import Target

TITLE = "Rate accuracy"
# Every 1-s window counts, the first included: a regression of the client's 1-s window
# cap shows at the start, where the limiter's burst lands.
TARGETS = (
    Target("rate R={}: most in any 1 s / R", ("runs", "*", "max_window_fraction"), "<=", 1.0),
    Target("rate R={}: achieved / R", ("runs", "*", "achieved_fraction"), ">=", 0.97),
)


async def paced(url: str, rate: float, n: int) -> None:
    """Stream n VMs through a client limited to ``rate`` requests per second."""
    async with HostUpClient(API_KEY, base_url=url, rate_limit=rate, max_concurrency=64) as client:
        async for r in client.stream_vms(range(1, n + 1), usage_log=False):
            if not r.ok:
                raise RuntimeError(f"rate run: vmid {r.vmid} failed: {r.error}")


def max_in_window(times: list[float], width: float = 1.0) -> int:
    """Most arrivals in any half-open window [t, t + width) (one starting at each arrival)."""
    best = 0
    j = 0
    for i, t in enumerate(times):
        while j < len(times) and times[j] < t + width:
            j += 1
        best = max(best, j - i)
    return best


def run(quick: bool) -> dict[str, Any]:
    """At rate R for some seconds: the most requests in any 1-s window, and the mean rate."""
    plan = [(50.0, 4.0)] if quick else [(20.0, 12.0), (100.0, 12.0)]
    runs = {}
    with fake_server(0) as url:
        for rate, seconds in plan:
            server_route(url, "reset", "POST")
            n = int(rate * seconds)
            asyncio.run(paced(url, rate, n))
            times = sorted(server_route(url, "arrivals")["arrivals"])
            if len(times) != n:
                raise RuntimeError(f"server saw {len(times)} requests, expected {n}")
            peak = max_in_window(times)
            achieved = (n - 1) / (times[-1] - times[0])
            runs[f"{rate:g}"] = {
                "rate": rate,
                "requests": n,
                "max_in_any_1s_window": peak,
                "achieved_rate": round(achieved, 3),
                "achieved_fraction": round(achieved / rate, 4),
                "max_window_fraction": round(peak / rate, 4),
            }
    return {"runs": runs}


def tables(result: dict[str, Any]) -> list[Table]:
    """One row per rate: requests, the fullest 1-s window, and the rate achieved."""
    rows = [
        [
            f"R = {r['rate']:g}/s",
            f"{r['requests']:,}",
            str(r["max_in_any_1s_window"]),
            f"{r['achieved_rate']:.2f}",
            f"{r['achieved_fraction']:.3f}",
        ]
        for r in result["runs"].values()
    ]
    return [
        Table(
            "rate accuracy: arrival times recorded by the fake server",
            ["run", "requests", "most in any 1 s", "achieved req/s", "achieved / R"],
            rows,
            "A client with `rate_limit` R sends as fast as it may; every 1-s window counts, "
            "the first one (where the limiter's short burst lands) included.",
        )
    ]
