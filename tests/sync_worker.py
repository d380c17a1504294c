"""Process-pool workers for tests/test_sync.py: one module-level sync client, as users write it.

In a spawned worker the client is built on first use from ``HOSTUP_API_KEY`` and
``HOSTUP_BASE_URL``; a forked worker inherits the parent's client, already used.
"""

from __future__ import annotations

import os

from hostup_async.sync import HostUpClient

client: HostUpClient | None = None


def hostname(vmid: int) -> tuple[int, str]:
    """Fetch one VM through the module's client; return this process's id and the hostname."""
    global client
    if client is None:
        client = HostUpClient(rate_limit=None)
    return os.getpid(), client.get_vm_details(vmid, usage_log=False).hostname
