"""A user's program, as the docs teach it: ``mypy --strict`` (the typecheck session) checks it.

Kept free of casts, asserts and ``# type: ignore``: if the SDK's types stopped fitting the
documented patterns, the typecheck session would fail here. tests/test_settings.py runs it.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

from hostup_async import BillingCycle, HostUpClient, HostUpError, VMDetails, to_builtins

if TYPE_CHECKING:
    from typing_extensions import assert_type


async def csv_report(client: HostUpClient, vmids: range) -> str:
    """A CSV of hostname, cores and price per VM; failed VMs get their error kind."""
    out = io.StringIO()
    writer = csv.writer(out)
    async for r in client.stream_vms(vmids, billing_cycle=True):
        vmid: int = r.vmid
        try:
            vm = r.details_or_raise()
            cycle = r.billing_cycle_or_raise()
        except HostUpError as exc:
            writer.writerow([vmid, type(exc).__name__, "", ""])
            continue
        if TYPE_CHECKING:
            assert_type(vm, VMDetails)
            assert_type(cycle, BillingCycle)
            assert_type(vm.price, Decimal)
            assert_type(vm.next_due, date | None)
        writer.writerow([vmid, vm.hostname, vm.cpu, vm.price, cycle.current_name])
    return out.getvalue()


async def json_answer(client: HostUpClient, vmid: int) -> str:
    """What a web handler returns: dates and money made JSON-ready by to_builtins."""
    vm = await client.get_vm_details(vmid, usage_log=False)
    return json.dumps(to_builtins({"vmid": vmid, "next_due": vm.next_due, "price": vm.price}))
