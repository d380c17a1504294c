"""Two processes, one API key, one rate limit: ``shared_limit`` shares it through Redis.

Run it with a Redis on this machine (``redis-server`` in another terminal)::

    python examples/shared_limit.py                  # Redis at redis://127.0.0.1:6379/0
    HOSTUP_SHARED_LIMIT=redis://127.0.0.1:6380/0 python examples/shared_limit.py
    python examples/shared_limit.py 20               # 20 VMs a process instead of 60

It starts the fake HostUp server with a hidden limit of 20 requests per second, then two
processes, each a client configured at that same limit and fetching 60 VMs. Sharing, the
two keep to 20 together; each alone would send 40 a second and meet 429s.
"""

from __future__ import annotations

import asyncio
import os
import sys

from hostup_async import HostUpClient
from hostup_async.testing import FakeHostUp

KEY = "demo-key"
LIMIT = 20  # requests per second, for the key: the server's, and the clients' together
REDIS = os.environ.get("HOSTUP_SHARED_LIMIT", "redis://127.0.0.1:6379/0")


async def worker(base_url: str, first: int, count: int) -> None:
    """One process: its own client, sharing the key's limit with every other."""
    async with HostUpClient(KEY, base_url=base_url, rate_limit=LIMIT, shared_limit=REDIS) as client:
        results = await client.fetch_vms(range(first, first + count), usage_log=False)
        alone = client.stats.shared_fallback
        print(
            f"worker {first // 1000}: {sum(r.ok for r in results)} of {count} VMs, "
            f"{client.stats.rate_limited} 429s"
            + (f", {alone:.1f} s pacing alone (Redis away)" if alone else "")
        )


async def main(count: int) -> None:
    async with FakeHostUp(api_key=KEY, rate_limit=LIMIT, rate_mode="token_bucket") as fake:
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--worker", fake.url, str(first), str(count)
            )
            for first in (1000, 2000)
        ]
        codes = [await w.wait() for w in workers]
        seen = fake.stats.requests
        print(f"server: {seen} requests, {fake.stats.by_status[429]} refused with 429")
        if any(codes):
            raise SystemExit(1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        asyncio.run(worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    else:
        asyncio.run(main(int(sys.argv[1]) if sys.argv[1:] else 60))
