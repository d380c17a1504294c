"""A fake HostUp API for tests and demos: real HTTP on loopback, realistic data, no network.

```python
async with FakeHostUp(forbidden={7}) as fake:
    async with HostUpClient("test-key", base_url=fake.url) as client:
        vm = await client.get_vm_details(1)
```

Seeded faults over a whole run, and a hidden rate limit:

```python
plan = FaultPlan(seed=1, flaky=0.2, streak=2, forbidden=0.01)
async with FakeHostUp(faults=plan, rate_limit=100) as fake:
    ...
```
"""

from ._data import FIXTURE_API_KEY
from ._faults import (
    PERMANENT_KINDS,
    TRANSIENT_KINDS,
    Fault,
    FaultKind,
    FaultPlan,
    PermanentKind,
    TransientKind,
)
from ._limits import RateMode
from ._server import FakeHostUp, FakeStats, RateHint, RecordedRequest

__all__ = [
    "FIXTURE_API_KEY",
    "PERMANENT_KINDS",
    "TRANSIENT_KINDS",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "FakeHostUp",
    "FakeStats",
    "PermanentKind",
    "RateHint",
    "RateMode",
    "RecordedRequest",
    "TransientKind",
]
