"""A pytest plugin (registered automatically) with fixtures for testing code that uses the SDK.

``hostup_fake`` starts a ``FakeHostUp`` on loopback; ``hostup_client`` hands back a
``HostUpClient`` configured for it. Configure either per test (or per module or class,
through ``pytestmark``) with a marker; the keyword arguments go straight to the
constructor:

```python
@pytest.mark.hostup_fake(forbidden={7}, faults=FaultPlan(seed=1, flaky=0.2))
@pytest.mark.hostup_client(max_retries=5, timeout=2.0)
async def test_report(hostup_client):
    ...
```

The server accepts the key ``FIXTURE_API_KEY`` unless its marker sets ``api_key``; the
client sends the server's key and has no client-side rate limit unless its marker says
otherwise. The fixtures need pytest-asyncio; without it the plugin adds only
the markers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from .._client import HostUpClient
from ._server import FakeHostUp

__all__ = ["FIXTURE_API_KEY", "pytest_configure"]

FIXTURE_API_KEY = "hostup-fixture-key"
"""The key the fixtures' server accepts and their client sends."""


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``hostup_fake`` and ``hostup_client`` markers."""
    config.addinivalue_line(
        "markers",
        "hostup_fake(**options): FakeHostUp options (faults=FaultPlan(...), rate_limit=...) "
        "for the hostup_fake fixture",
    )
    config.addinivalue_line(
        "markers",
        "hostup_client(**options): HostUpClient options (max_retries=..., timeout=...) "
        "for the hostup_client fixture",
    )


def _marker_options(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    """Merge the keyword arguments of every ``name`` marker, the closest one winning."""
    options: dict[str, Any] = {}
    # iter_markers yields the closest first (function, then class, then module).
    for marker in reversed(list(request.node.iter_markers(name))):
        if marker.args:
            raise TypeError(f"the {name} marker takes keyword arguments only")
        options.update(marker.kwargs)
    return options


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the fixtures need pytest-asyncio
    pass
else:

    @pytest_asyncio.fixture
    async def hostup_fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeHostUp]:
        """A running ``FakeHostUp``; options come from a ``hostup_fake`` marker."""
        options: dict[str, Any] = {"api_key": FIXTURE_API_KEY}
        options.update(_marker_options(request, "hostup_fake"))
        async with FakeHostUp(**options) as server:
            yield server

    @pytest_asyncio.fixture
    async def hostup_client(
        request: pytest.FixtureRequest, hostup_fake: FakeHostUp
    ) -> AsyncIterator[HostUpClient]:
        """A ``HostUpClient`` for ``hostup_fake``; options come from a ``hostup_client`` marker."""
        options: dict[str, Any] = {
            "api_key": hostup_fake.api_key,
            "base_url": hostup_fake.url,
            "rate_limit": None,
        }
        options.update(_marker_options(request, "hostup_client"))
        async with HostUpClient(**options) as client:
            yield client
