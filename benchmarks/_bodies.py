"""Details bodies for the decode benchmark: wire-exact, distinct values, shared hour keys.

The bodies are built from the fake server's own ``vm_data`` plus a usage log generated
here with per-body random values, so no two bodies are equal (no cache of values can
help), while the hour keys are the same across bodies, as they are for every VM of one
bulk fetch (all logs end at the same hour).
"""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec

from hostup_async.testing._data import usage_log_data, vm_data

END = datetime(2026, 2, 10, 0, tzinfo=timezone.utc)


def usage_log(hours: int, seed: int, end: datetime = END) -> dict[str, dict[str, float]]:
    """Return a usage log like the API's: Z-suffixed hour keys, 15 numeric fields each."""
    return usage_log_data(hours, seed, end)


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
