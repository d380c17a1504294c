"""Nightly bandwidth report: traffic per VM over the last N hours, summed from each usage log.

    python examples/bandwidth_report.py                  # a fake fleet of 60 VMs, no key needed
    HOSTUP_API_KEY=... python examples/bandwidth_report.py 10415 10416 12000-12100

With no HOSTUP_API_KEY and no --base-url, the script starts the SDK's fake HostUp server on
loopback and reports on its fleet (where VM 7 is forbidden and VM 42 does not exist).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

from hostup_async import HostUpClient
from hostup_async.cli import parse_vmids  # the command line's: 7 100-200 1,2
from hostup_async.testing import FakeHostUp, Fault

GB = 1e9


async def bandwidth_report(client: HostUpClient, vmids: list[int], hours: int) -> int:
    """Print one line per VM, busiest first, then the fleet total and the VMs that failed."""
    since = datetime.now(timezone.utc) - timedelta(hours=hours)
    rows: list[tuple[int, str, float, float]] = []
    failed: list[str] = []
    # stream_vms keeps only a bounded window of VMs in memory: we keep just the sums.
    async for r in client.stream_vms(vmids):
        if not r.ok:
            failed.append(f"{r.vmid} ({describe(r.error)})")
            continue
        vm = r.details_or_raise()  # a VMDetails to the type checker too
        sent = received = 0.0
        for hour, sample in vm.usage_log.items():  # keys are UTC datetimes
            if hour >= since:
                sent += sample.data_sent
                received += sample.data_received
        rows.append((r.vmid, vm.hostname, sent, received))

    rows.sort(key=lambda row: row[2] + row[3], reverse=True)
    print(f"Bandwidth over the last {hours} h: {len(rows)} VMs, {len(failed)} failed")
    print(f"{'vmid':>8}  {'hostname':<28} {'sent GB':>10} {'recv GB':>10} {'total GB':>10}")
    for vmid, hostname, sent, received in rows:
        total = (sent + received) / GB
        print(f"{vmid:>8}  {hostname:<28} {sent / GB:>10.2f} {received / GB:>10.2f} {total:>10.2f}")
    sent_all = sum(row[2] for row in rows) / GB
    received_all = sum(row[3] for row in rows) / GB
    print(
        f"{'fleet':>8}  {'':<28} {sent_all:>10.2f} {received_all:>10.2f} {sent_all + received_all:>10.2f}"
    )
    if failed:
        print("failed: " + ", ".join(failed))
    stats = client.stats
    print(
        f"{stats.requests} requests, {stats.retries} retries, {stats.rate_limited} rate-limited",
        file=sys.stderr,
    )
    return 0


def describe(error: BaseException | None) -> str:
    """Name an error by class and, for API errors, the machine-readable ``code``."""
    code = getattr(error, "code", None)
    return f"{type(error).__name__} {code}" if code else type(error).__name__


@contextlib.asynccontextmanager
async def connect(base_url: str | None) -> AsyncIterator[HostUpClient]:
    """A client for the real API when a key or URL is given, else for a fake fleet on loopback."""
    if base_url or os.environ.get("HOSTUP_API_KEY"):
        async with HostUpClient(base_url=base_url or "https://cloud.hostup.se/api") as client:
            yield client
        return
    async with FakeHostUp(api_key="demo-key", forbidden={7}, missing={42}) as fake:
        print(f"No HOSTUP_API_KEY: using a fake HostUp at {fake.url}", file=sys.stderr)
        # A flaky gateway, as real fleets meet: the SDK retries these, the report is whole.
        fake.inject(Fault.http(503, html=True), Fault.drop())
        async with HostUpClient("demo-key", base_url=fake.url, rate_limit=500) as client:
            yield client


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vmids", nargs="*", help="vmids and ranges such as 100-200")
    parser.add_argument("--hours", type=int, default=24, help="report window (default 24)")
    parser.add_argument("--base-url", help="API root (default: HostUp's)")
    args = parser.parse_args()
    vmids = [vmid for ids in parse_vmids(args.vmids or ["1-60"]).ranges for vmid in ids]
    async with connect(args.base_url) as client:
        return await bandwidth_report(client, vmids, args.hours)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
