"""Realistic, deterministic data for the fake server: any vmid always gets the same VM."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import msgspec

__all__ = [
    "DEMO_MAX_VMID",
    "FIXTURE_API_KEY",
    "demo_fleet",
    "billing_cycle_data",
    "new_request_id",
    "now_stamp",
    "usage_log_data",
    "usage_log_json",
    "vm_data",
]

_OSES = ("Ubuntu 24.04", "Debian 12", "AlmaLinux 9", "Rocky Linux 9", "Windows Server 2022")
_PLANS = (
    # name, cores, ram GB, disk GB, monthly price, annual price
    ("VPS Small", 1, 2, 40, "39.00", "374.00"),
    ("VPS Medium", 2, 4, 80, "79.00", "758.00"),
    ("VPS Large", 4, 8, 160, "149.00", "1430.00"),
    ("VPS XL", 8, 16, 320, "300.00", "2880.00"),
)
_LOG_VARIANTS = 8

FIXTURE_API_KEY = "hostup-fixture-key"
"""The key the pytest fixtures' server accepts and their client sends."""


DEMO_MAX_VMID = 20_000
"""The highest vmid of the demo fleet: every vmid above it is missing."""


def demo_fleet(max_vmid: int | None = DEMO_MAX_VMID) -> dict[str, Any]:
    """Return the ``FakeHostUp`` options of the fleet ``hostup-async demo`` and ``serve-fake`` serve.

    Real fleets have VMs you may not see and VMs that are gone, and the docs' error branches
    need them: 7, 403 and every vmid ending in 37 are forbidden (403); 42, 404, every vmid
    ending in 90 and every vmid above ``max_vmid`` are missing (404).

    >>> fleet = demo_fleet()
    >>> sorted(v for v in fleet["forbidden"] if v < 500), sorted(v for v in fleet["missing"] if v < 500)
    ([7, 37, 137, 237, 337, 403, 437], [42, 90, 190, 290, 390, 404, 490])
    """
    top = max_vmid if max_vmid is not None else DEMO_MAX_VMID
    return {
        "forbidden": frozenset({7, 403, *range(37, top + 1, 100)}),
        "missing": frozenset({42, 404, *range(90, top + 1, 100)}),
        "max_vmid": max_vmid,
    }


def new_request_id() -> str:
    """Return a fresh request id, as the real API sends with every answer."""
    return str(uuid.uuid4())


def now_stamp() -> str:
    """Return the current time in the API's ISO-8601 UTC form."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plan(vmid: int) -> tuple[str, int, int, int, str, str]:
    return _PLANS[vmid % len(_PLANS)]


def vm_data(vmid: int) -> dict[str, Any]:
    """Return a VM's details, without its usage log, as the API's ``data`` object."""
    rng = random.Random(vmid)
    name, cores, ram, disk, monthly, annual = _plan(vmid)
    annual_billing = vmid % 5 == 0
    created = datetime(2021, 1, 1) + timedelta(days=rng.randrange(1500))
    due = datetime(2026, 12, 1) + timedelta(days=rng.randrange(28))
    price = annual if annual_billing else monthly
    octets = f"{rng.randrange(1, 255)}.{rng.randrange(256)}.{rng.randrange(256)}"
    ipv4 = f"185.{octets}"
    ipv6 = f"2a0e:1d80:{vmid:x}::1"
    return {
        "id": str(100000 + vmid),
        "product_id": str(3000 + vmid % len(_PLANS)),
        "product_name": name,
        "hostname": f"vm{vmid}.example.net",
        "status": "Active",
        "created": created.date().isoformat(),
        "order_id": str(50000 + vmid),
        "billingcycle": "Annually" if annual_billing else "Monthly",
        "price": float(price),
        "total": float(price),
        "firstpayment": float(price),
        # Some real VMs have no due date yet; the API spells that "0000-00-00".
        "next_due": "0000-00-00" if vmid % 11 == 0 else due.date().isoformat(),
        "cpu": cores,
        "ram": ram,
        "disk": disk,
        "bandwidth_limit": 10000,
        "bandwidth_usage": {
            "data_received": rng.randrange(10**9, 10**12),
            "data_sent": rng.randrange(10**9, 10**12),
        },
        "backups": rng.randrange(4),
        "ip_addresses": [ipv4, ipv6],
        "ipv4": ipv4,
        "ipv6": ipv6,
        "os": rng.choice(_OSES),
        "node": f"node{vmid % 7 + 1}.sto.example.net",
        "uptime": rng.randrange(60, 10**7),
        "vm_status": "stopped" if vmid % 13 == 0 else "running",
        "details": {
            "username": "root",
            "password": f"fake-pw-{rng.getrandbits(48):012x}",
            "rootpassword": f"fake-root-{rng.getrandbits(48):012x}",
        },
        "pricing": {
            "currency": "SEK",
            "billingCycle": {
                "id": "a" if annual_billing else "m",
                "months": 12 if annual_billing else 1,
                "raw": "Annually" if annual_billing else "Monthly",
                "isFree": False,
            },
            # Real servers send money both as numbers and as strings.
            "pricePerCycle": price,
            "baseMonthlyCost": float(monthly),
            "baseAnnualCost": float(annual),
            "addonsMonthlyCost": 0,
            "addonsAnnualCost": 0,
            "totalMonthlyCost": float(monthly),
            "totalAnnualCost": float(annual),
            "addons": [],
        },
    }


def usage_log_data(hours: int, seed: int, end: datetime) -> dict[str, dict[str, float]]:
    """Return an hourly usage log of ``hours`` samples ending at ``end``, seeded by ``seed``."""
    rng = random.Random(seed)
    start = end - timedelta(hours=hours - 1)
    cores = 1 + seed % 4
    maxmem = float(2 ** (31 + seed % 3))
    log: dict[str, dict[str, float]] = {}
    uptime = float(rng.randrange(10**6))
    for i in range(hours):
        stamp = start + timedelta(hours=i)
        uptime += 3600.0
        log[stamp.strftime("%Y-%m-%dT%H:%M:%SZ")] = {
            "data_received": round(rng.uniform(1e5, 5e8), 3),
            "data_sent": round(rng.uniform(1e5, 5e8), 3),
            "mem_unit": 1,
            "probes": 60,
            "time": stamp.timestamp(),
            "uptime": uptime,
            "maxcpu": cores,
            "maxcpu_on": cores,
            "cpu": round(rng.uniform(0.0, 0.9), 6),
            "maxmem": maxmem,
            "maxmem_on": maxmem,
            "mem": round(rng.uniform(0.2, 0.9) * maxmem, 1),
            "maxdisk": 80 * 2**30,
            "template": 0,
            "ipv4_addresses": 1,
        }
    return log


@lru_cache(maxsize=64)
def usage_log_json(hours: int, variant: int, end: datetime) -> bytes:
    """Return an encoded usage log for one of the cached variants (see ``usage_log_data``)."""
    return msgspec.json.encode(usage_log_data(hours, hours * 1000 + variant, end))


def usage_log_variant(vmid: int) -> int:
    """Return which cached usage-log variant a VM uses."""
    return vmid % _LOG_VARIANTS


def billing_cycle_data(vmid: int) -> dict[str, Any]:
    """Return a VM's billing-cycle options as the API's ``data`` object."""
    _, _, _, _, monthly, annual = _plan(vmid)
    annual_billing = vmid % 5 == 0
    return {
        "current": "a" if annual_billing else "m",
        "currentName": "Annually" if annual_billing else "Monthly",
        "cycles": [
            {
                "id": "m",
                "name": "Monthly",
                "price": monthly,
                "isCurrent": not annual_billing,
                "billingCycle": "Monthly",
            },
            {
                "id": "a",
                "name": "Annually",
                "price": annual,
                "isCurrent": annual_billing,
                "billingCycle": "Annually",
            },
        ],
        "productId": str(3000 + vmid % len(_PLANS)),
        "accountId": str(100000 + vmid),
    }
