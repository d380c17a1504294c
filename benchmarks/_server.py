"""Run FakeHostUp on a loopback port in its own process, for the network benchmarks.

Usage: ``python -m benchmarks._server [--hours H] [--port P] [--key K] [--fake JSON]``
(``--fake`` takes more ``FakeHostUp`` options as a JSON object, such as a hidden rate
limit: ``{"rate_limit": 100, "rate_mode": "token_bucket"}``). It prints one
line, ``URL <base url>``, once serving, and stops when its standard input closes (so it
never outlives the benchmark that started it) or on SIGTERM/SIGINT.

Two extra routes serve the benchmarks, outside the API's paths:
``GET /_bench/arrivals`` returns ``{"now": t, "arrivals": [t, ...]}`` (``time.monotonic``
of every details/billing request the fake recorded) and ``POST /_bench/reset`` forgets
them; ``GET /_bench/cpu`` returns this process's CPU seconds so far.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

from aiohttp import web

from hostup_async.testing import FakeHostUp

API_KEY = "bench-key-0c7e2d"


def add_bench_routes(fake: FakeHostUp) -> None:
    """Add the benchmark-only routes to the fake's app (before it starts)."""

    async def arrivals(request: web.Request) -> web.Response:
        times = [r.at for r in fake.stats.recent]
        return web.json_response({"now": time.monotonic(), "arrivals": times})

    async def reset(request: web.Request) -> web.Response:
        fake.stats.recent.clear()
        return web.json_response({"ok": True})

    async def cpu(request: web.Request) -> web.Response:
        return web.json_response({"cpu": time.process_time()})

    fake.app.router.add_get("/_bench/arrivals", arrivals)
    fake.app.router.add_post("/_bench/reset", reset)
    fake.app.router.add_get("/_bench/cpu", cpu)


async def serve(hours: int, port: int, key: str, options: dict[str, Any]) -> None:
    fake = FakeHostUp(api_key=key, usage_log_hours=hours, port=port, **options)
    add_bench_routes(fake)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # A closed stdin means the parent is gone: stop rather than linger.
    loop.run_in_executor(None, sys.stdin.read).add_done_callback(lambda _: stop.set())
    async with fake:
        print(f"URL {fake.url}", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=24, help="usage-log hours per VM")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free one)")
    parser.add_argument("--key", default=API_KEY, help="the API key the fake accepts")
    parser.add_argument("--fake", default="{}", help="more FakeHostUp options, as JSON")
    args = parser.parse_args()
    asyncio.run(serve(args.hours, args.port, args.key, json.loads(args.fake)))
    # The stdin reader thread may still block; don't wait for it.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
