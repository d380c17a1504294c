"""Fetch one VM's details and billing cycle from the embedded fake HostUp server."""

from __future__ import annotations

import asyncio

from hostup_async import HostUpClient, NotFoundError
from hostup_async.testing import FakeHostUp


async def main() -> None:
    async with FakeHostUp(api_key="demo-key", missing={404}) as fake:
        async with HostUpClient("demo-key", base_url=fake.url) as client:
            vm = await client.get_vm_details(10415)
            print(f"{vm.hostname}: {vm.cpu} cores, {vm.ram:g} GB RAM, {vm.status}/{vm.vm_status}")
            print(f"  {len(vm.usage_log)} hourly samples, credentials {vm.details}")
            bc = await client.get_billing_cycle(10415)
            for cycle in bc.cycles:
                print(f"  {cycle.name}: {cycle.price} {'(current)' if cycle.is_current else ''}")
            try:
                await client.get_vm_details(404)
            except NotFoundError as exc:
                print(f"  404 as expected: {exc.code} (request {exc.request_id})")


if __name__ == "__main__":
    asyncio.run(main())
