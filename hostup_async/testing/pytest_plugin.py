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

The server accepts the key ``FIXTURE_API_KEY`` (``from hostup_async.testing import
FIXTURE_API_KEY``) unless its marker sets ``api_key``; the client sends the server's key and
has no client-side rate limit unless its marker says otherwise.

The fixtures are async and need pytest-asyncio (``pip install 'hostup-async[test]'``), with
``asyncio_mode = "auto"`` or a ``@pytest.mark.asyncio`` on each test. When either is missing,
a test that uses them fails at setup with a message that says which and how to fix it.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

import pytest

from .._client import HostUpClient
from ._data import FIXTURE_API_KEY
from ._server import FakeHostUp

__all__ = ["FIXTURE_API_KEY", "pytest_configure", "pytest_runtest_setup"]

_FIXTURES = ("hostup_client", "hostup_fake")  # the one a test asks for first
_NO_ASYNCIO = (
    "the {name} fixture needs pytest-asyncio, which is not installed or not enabled: "
    "pip install 'hostup-async[test]' (or pytest-asyncio), "
    'and set asyncio_mode = "auto" under [tool.pytest.ini_options]'
)
_STRICT = (
    "{test} is an async test using the {name} fixture, but pytest-asyncio is in strict mode "
    'and does not run it: set asyncio_mode = "auto" under [tool.pytest.ini_options] in '
    "pyproject.toml, or mark the test with @pytest.mark.asyncio"
)


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


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Say plainly what is missing when a test uses the fixtures without what they need."""
    used = [name for name in _FIXTURES if name in getattr(item, "fixturenames", ())]
    if not used:
        return
    if not item.config.pluginmanager.has_plugin("asyncio"):
        pytest.fail(_NO_ASYNCIO.format(name=used[0]), pytrace=False)
    test = getattr(item, "obj", None)
    if inspect.iscoroutinefunction(test) and item.get_closest_marker("asyncio") is None:
        # Auto mode marks every async test; in strict mode pytest alone would only say
        # "async def functions are not natively supported".
        pytest.fail(_STRICT.format(test=item.name, name=used[0]), pytrace=False)


def _marker_options(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    """Merge the keyword arguments of every ``name`` marker, the closest one winning."""
    options: dict[str, Any] = {}
    # iter_markers yields the closest first (function, then class, then module).
    for marker in reversed(list(request.node.iter_markers(name))):
        if marker.args:
            raise TypeError(f"the {name} marker takes keyword arguments only")
        options.update(marker.kwargs)
    return options


_F = TypeVar("_F", bound=Callable[..., Any])


def _async_fixture(func: _F) -> _F:
    """Register an async fixture with pytest-asyncio, or with pytest when it is missing.

    Either way the fixture exists, so pytest never says "fixture not found": without
    pytest-asyncio, pytest_runtest_setup fails the test first, saying what to install.
    """
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - this suite runs with pytest-asyncio installed
        return cast(_F, pytest.fixture(func))
    return cast(_F, pytest_asyncio.fixture(func))


@_async_fixture
async def hostup_fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeHostUp]:
    """A running ``FakeHostUp``; options come from a ``hostup_fake`` marker."""
    options: dict[str, Any] = {"api_key": FIXTURE_API_KEY}
    options.update(_marker_options(request, "hostup_fake"))
    async with FakeHostUp(**options) as server:
        yield server


@_async_fixture
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
