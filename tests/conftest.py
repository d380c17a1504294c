from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from hostup_async import HostUpClient
from hostup_async.testing import FakeHostUp

API_KEY = "test-key-5f1c9a"


@pytest.fixture(autouse=True)
def _no_unclosed_resources(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test that leaves an aiohttp session or connector unclosed."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    yield
    gc.collect()
    leaks = [r.getMessage() for r in caplog.records if "Unclosed" in r.getMessage()]
    assert not leaks, leaks


@pytest.fixture
async def fake() -> AsyncIterator[FakeHostUp]:
    async with FakeHostUp(api_key=API_KEY, forbidden={403}, missing={404}) as server:
        yield server


@pytest.fixture
async def client(fake: FakeHostUp) -> AsyncIterator[HostUpClient]:
    async with HostUpClient(API_KEY, base_url=fake.url, rate_limit=None) as c:
        yield c
