"""Details bodies for the decode benchmark: wire-exact, distinct values, shared hour keys.

The bodies are built from the fake server's own ``vm_data`` plus a usage log generated
here with per-body random values, so no two bodies are equal (no cache of values can
help), while the hour keys are the same across bodies, as they are for every VM of one
bulk fetch (all logs end at the same hour).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import msgspec

from hostup_async.testing._data import vm_data

END = datetime(2026, 2, 10, 0, tzinfo=timezone.utc)


def usage_log(hours: int, seed: int, end: datetime = END) -> dict[str, dict[str, float]]:
    """Return a usage log like the API's: Z-suffixed hour keys, 15 numeric fields each."""
    rng = random.Random(seed)
    start = end - timedelta(hours=hours - 1)
    cores = 1 + seed % 4
    maxmem = float(2 ** (31 + seed % 3))
    uptime = float(rng.randrange(10**6))
    log: dict[str, dict[str, float]] = {}
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


def details_body(vmid: int, hours: int) -> bytes:
    """Return one ``/vm/{vmid}/details`` success body with an ``hours``-long usage log."""
    data = vm_data(vmid)
    data["usage_log"] = usage_log(hours, vmid)
    envelope = {
        "success": True,
        "timestamp": "2026-02-10T00:00:00.000Z",
        "requestId": f"req-{vmid:08d}",
        "data": data,
    }
    return msgspec.json.encode(envelope)


def bodies(count: int, hours: int, first_vmid: int = 1000) -> list[bytes]:
    """Return ``count`` distinct details bodies."""
    return [details_body(first_vmid + i, hours) for i in range(count)]
