"""One process of the multi-process shared-limit tests: a client that fetches VMs, then reports.

Run as ``python -m tests.shared_worker '<json options>'``; prints one JSON line of results.
Its event loop's clock can be skewed (``skew`` seconds), as another host's would be.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from hostup_async import HostUpClient, RateLimitError


class SkewedLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock is off by a fixed number of seconds."""

    def __init__(self, skew: float) -> None:
        super().__init__()
        self._skew = skew

    def time(self) -> float:
        return super().time() + self._skew


async def fetch_all(options: dict[str, Any]) -> dict[str, Any]:
    first, count = options["first"], options["count"]
    async with HostUpClient(
        options["api_key"],
        base_url=options["base_url"],
        rate_limit=options["rate"],
        max_concurrency=options.get("concurrency", 10),
        max_retries=options.get("max_retries", 8),
        max_retry_after=options.get("max_retry_after", 60.0),
        shared_limit=options["redis_url"],
    ) as client:
        ok = failed = 0
        stopped_by: str | None = None
        if options.get("sequential"):
            for vmid in range(first, first + count):
                try:
                    await client.get_vm_details(vmid, usage_log=False)
                except RateLimitError:
                    stopped_by = "429" if client.stats.rate_limited else "pause"
                    break
                ok += 1
        else:
            results = await client.fetch_vms(range(first, first + count), usage_log=False)
            ok = sum(r.ok for r in results)
            failed = sum(not r.ok for r in results)
        stats = client.stats
        return {
            "ok": ok,
            "failed": failed,
            "stopped_by": stopped_by,
            "rate_limited": stats.rate_limited,
            "requests": stats.requests,
            "shared_fallback": stats.shared_fallback,
        }


def main() -> None:
    options = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    loop = SkewedLoop(options.get("skew", 0.0))
    try:
        result = loop.run_until_complete(fetch_all(options))
    finally:
        loop.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
