"""A pytest plugin (registered automatically) with fixtures for testing code that uses the SDK.

``hostup_fake`` starts a ``FakeHostUp`` on loopback; ``hostup_client`` hands back a
``HostUpClient`` configured for it. Configure the server per test with a marker::

    @pytest.mark.hostup_fake(forbidden={7}, usage_log_hours=48)
    async def test_report(hostup_client):
        ...

The fixtures need pytest-asyncio; without it the plugin adds nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from .._client import HostUpClient
from ._server import FakeHostUp

__all__ = ["pytest_configure"]

#: The key the fixtures' server accepts and their client sends.
FIXTURE_API_KEY = "hostup-fixture-key"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``hostup_fake`` marker."""
    config.addinivalue_line(
        "markers", "hostup_fake(**options): options for the FakeHostUp of the hostup_fake fixture"
    )


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the fixtures need pytest-asyncio
    pass
else:

    @pytest_asyncio.fixture
    async def hostup_fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeHostUp]:
        """A running ``FakeHostUp``; options come from a ``hostup_fake`` marker."""
        marker = request.node.get_closest_marker("hostup_fake")
        options: dict[str, Any] = {"api_key": FIXTURE_API_KEY}
        if marker is not None:
            options.update(marker.kwargs)
        async with FakeHostUp(**options) as server:
            yield server

    @pytest_asyncio.fixture
    async def hostup_client(hostup_fake: FakeHostUp) -> AsyncIterator[HostUpClient]:
        """A ``HostUpClient`` for ``hostup_fake``, with no client-side rate limit."""
        async with HostUpClient(
            hostup_fake.api_key, base_url=hostup_fake.url, rate_limit=None
        ) as c:
            yield c
