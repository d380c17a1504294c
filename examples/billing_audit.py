"""Billing-cycle audit: one CSV row per VM with its cycle, price and what annual billing would save.

    python examples/billing_audit.py --out audit.csv     # a fake fleet of 60 VMs, no key needed
    HOSTUP_API_KEY=... python examples/billing_audit.py 10415 12000-12100 > audit.csv

With no HOSTUP_API_KEY and no --base-url, the script starts the SDK's fake HostUp server on
loopback and audits its fleet (where VM 7 is forbidden and VM 42 does not exist).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import TextIO

from hostup_async import BillingCycle, HostUpClient, VMDetails, VMResult
from hostup_async.cli import parse_vmids  # the command line's: 7 100-200 1,2
from hostup_async.testing import FakeHostUp

COLUMNS = [
    "vmid",
    "hostname",
    "status",
    "billing_cycle",
    "price",
    "currency",
    "next_due",
    "monthly_price",
    "annual_price",
    "annual_saving",
    "error",
    "request_id",
]


def annual_saving(bc: BillingCycle) -> Decimal | None:
    """What a year costs less when billed annually rather than monthly, if both are offered."""
    prices = {cycle.id: cycle.price for cycle in bc.cycles}  # Decimal, exact
    if "m" in prices and "a" in prices:
        return prices["m"] * 12 - prices["a"]
    return None


def audit_row(vmid: int, vm: VMDetails, bc: BillingCycle) -> dict[str, object]:
    """One CSV row: the VM's current cycle and price, and the saving if billed annually."""
    prices = {cycle.id: cycle.price for cycle in bc.cycles}
    monthly, annual, saving = prices.get("m"), prices.get("a"), annual_saving(bc)
    return {
        "vmid": vmid,
        "hostname": vm.hostname,
        "status": vm.status,
        "billing_cycle": bc.current_name,
        "price": vm.price,
        "currency": vm.pricing.currency if vm.pricing else "",
        "next_due": vm.next_due.isoformat() if vm.next_due else "",
        "monthly_price": monthly if monthly is not None else "",
        "annual_price": annual if annual is not None else "",
        "annual_saving": saving if saving is not None else "",
        "error": "",
        "request_id": vm.request_id or "",
    }


def write_audit(results: list[VMResult], out: TextIO) -> None:
    """Write one CSV row per VM, in input order, and print a summary on stderr."""
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    ok = 0
    savings: dict[str, Decimal] = {}  # per currency
    for r in results:
        if r.ok:
            assert r.details is not None and r.billing_cycle is not None
            row = audit_row(r.vmid, r.details, r.billing_cycle)
            ok += 1
            saving = annual_saving(r.billing_cycle)
            if r.billing_cycle.current == "m" and saving is not None:
                currency = str(row["currency"])
                savings[currency] = savings.get(currency, Decimal(0)) + saving
        else:
            # One row per input VM, failed or not, so the audit shows what it could not see.
            code = getattr(r.error, "code", None)
            row = dict.fromkeys(COLUMNS, "")
            row.update(
                vmid=r.vmid,
                error=f"{type(r.error).__name__} {code}" if code else type(r.error).__name__,
                request_id=getattr(r.error, "request_id", None) or "",
            )
        writer.writerow(row)
    total = ", ".join(f"{amount} {currency}" for currency, amount in sorted(savings.items()))
    print(
        f"audited {len(results)} VMs: {ok} ok, {len(results) - ok} failed; "
        f"annual billing for the monthly ones would save {total or 'nothing'} a year",
        file=sys.stderr,
    )


@contextlib.asynccontextmanager
async def connect(base_url: str | None) -> AsyncIterator[HostUpClient]:
    """A client for the real API when a key or URL is given, else for a fake fleet on loopback."""
    if base_url or os.environ.get("HOSTUP_API_KEY"):
        async with HostUpClient(base_url=base_url or "https://cloud.hostup.se/api") as client:
            yield client
        return
    async with FakeHostUp(api_key="demo-key", forbidden={7}, missing={42}) as fake:
        print(f"No HOSTUP_API_KEY: using a fake HostUp at {fake.url}", file=sys.stderr)
        async with HostUpClient("demo-key", base_url=fake.url, rate_limit=500) as client:
            yield client


async def fetch(vmids: list[int], base_url: str | None) -> list[VMResult]:
    """Fetch details and billing cycle of every VM; both calls per VM run concurrently."""
    async with connect(base_url) as client:
        # A VM fails if either call fails; the audit needs no usage log, so skip decoding it.
        return await client.fetch_vms(vmids, billing_cycle=True, usage_log=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vmids", nargs="*", help="vmids and ranges such as 100-200")
    parser.add_argument("--out", help="CSV file to write (default: stdout)")
    parser.add_argument("--base-url", help="API root (default: HostUp's)")
    args = parser.parse_args()
    vmids = [vmid for ids in parse_vmids(args.vmids or ["1-60"]).ranges for vmid in ids]
    results = asyncio.run(fetch(vmids, args.base_url))
    if args.out is None:
        write_audit(results, sys.stdout)
    else:
        with open(args.out, "w", newline="", encoding="utf-8") as out:
            write_audit(results, out)


if __name__ == "__main__":
    main()
