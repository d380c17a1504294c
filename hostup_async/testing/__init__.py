"""A fake HostUp API for tests and demos: real HTTP on loopback, realistic data, no network.

```python
async with FakeHostUp(forbidden={7}) as fake:
    async with HostUpClient("test-key", base_url=fake.url) as client:
        vm = await client.get_vm_details(1)
```
"""

from ._faults import Fault, FaultKind
from ._server import FakeHostUp, FakeStats, RecordedRequest

__all__ = ["Fault", "FaultKind", "FakeHostUp", "FakeStats", "RecordedRequest"]
