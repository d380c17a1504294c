from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import aiohttp
import msgspec
import pytest

from hostup_async import AttemptEvent, Backoff, HostUpClient
from hostup_async._pacing.shared.connect import close_redis
from hostup_async.testing import FakeHostUp

from .redis_servers import RedisCluster, RedisServer, free_port, redis_server_binary

__all__ = ["RedisCluster", "RedisServer", "close_redis", "free_port"]

if TYPE_CHECKING:
    from redis.asyncio import Redis

T = TypeVar("T")

API_KEY = "test-key-5f1c9a"
#: For clients that retry against the fake server: a retry waits milliseconds, not seconds
#: (a test of the backoff itself uses its own).
QUICK_BACKOFF = Backoff(base=0.001, cap=0.01)
# Where the fake server's own tasks (request handlers, the accept loop) run their code: the
# fake shares the test's event loop, and its tasks are not the client's.
_SERVER_SIDE = ("aiohttp/web_", "asyncio/selector_events")


def client_tasks() -> set[asyncio.Task[Any]]:
    """Unfinished tasks other than the running one, leaving out the fake server's: the client's leaks."""
    current = asyncio.current_task()
    return {
        t
        for t in asyncio.all_tasks()
        if t is not current
        and not t.done()
        and not any(
            part in getattr(getattr(t.get_coro(), "cr_code", None), "co_filename", "")
            for part in _SERVER_SIDE
        )
    }


class RefusalSeen:
    """An ``on_attempt=`` hook that sets :attr:`event` when an attempt's answer is a 429."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __call__(self, attempt: AttemptEvent) -> None:
        if attempt.status == 429:
            self.event.set()

    async def wait(self) -> None:
        """Until a 429 has been read (the pause it starts is on)."""
        await self.event.wait()


async def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds, looking again every few milliseconds.

    A wait for a state, not a measure of time: a busy machine makes it slower, never
    failing; ``timeout`` only ends a test whose condition never comes (a bug, or a hang).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # in the caller's task: a condition may look at the current task
        if loop.time() > deadline:
            raise TimeoutError(f"still not so after {timeout:g} s")
        await asyncio.sleep(0.005)


#: pytest as a user of the SDK runs it: with pytest-asyncio and this package's plugin, without
#: this project's own test tools (xdist and Hypothesis, 0.9 s of CPU at each start) or a cache.
USERS_PYTEST = ("-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:hypothesispytest")


@contextlib.contextmanager
def unmeasured() -> Iterator[None]:
    """Run a block with this thread's coverage tracer off: for repeats of code measured once.

    Coverage traces every line, which made the pacing simulator's seeded repeats four times
    slower (58 s of CPU, against 13.5 s unmeasured); the first seed of each scenario is
    measured. Coverage's tracer reinstalls itself when handed back to ``sys.settrace``.
    """
    tracer = sys.gettrace()
    sys.settrace(None)
    try:
        yield
    finally:
        sys.settrace(tracer)


def unmeasured_env(**extra: str) -> dict[str, str]:
    """This process's environment, less the coverage measurement it hands its children.

    For processes run as a user runs them (docs blocks, examples, a ``serve-fake`` that is
    terminated): what they run is measured in-process elsewhere, a measured child costs
    about 0.2 s more CPU, and a terminated one never saves its data.
    """
    env = {k: v for k, v in os.environ.items() if k != "COVERAGE_PROCESS_CONFIG"}
    return env | extra


def run_apart(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` with ``asyncio.run`` on a thread of its own and return its result.

    Callable from a test's running loop, and from a sync test without touching the main
    thread's current loop (pytest-asyncio's; on Python 3.10 replacing it there leaves the
    one it set to be collected unclosed).
    """
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@functools.cache
def _served(path: str) -> bytes:
    async def fetch() -> bytes:
        async with FakeHostUp(api_key=API_KEY, usage_log_hours=3) as fake:
            async with aiohttp.ClientSession(headers={"X-API-Key": API_KEY}) as session:
                async with session.get(fake.url + path) as response:
                    assert response.status == 200, path
                    return await response.read()

    return run_apart(fetch())


def api_data(path: str) -> dict[str, Any]:
    """A fresh copy of the ``data`` the fake server answers ``path`` with, fetched over HTTP.

    Realistic API data through the fake's public surface (its HTTP API) rather than its
    private generators; deterministic per path, and fetched once per test run.
    """
    data: dict[str, Any] = msgspec.json.decode(_served(path))["data"]
    return data


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what imports and collection built, so the collector no longer walks it.

    ``_no_unclosed_resources`` runs a full collection after every test; walking the
    100,000-odd objects of the imported modules each time was most of the suite's CPU. A
    frozen object is never collected, and nothing a test builds is frozen.
    """
    gc.collect()
    gc.freeze()


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
    async with HostUpClient(
        API_KEY, base_url=fake.url, rate_limit=None, backoff=QUICK_BACKOFF
    ) as c:
        yield c


# -- a real Redis for the shared-limit tests ---------------------------------------------


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """Yield a loopback port that refuses connections for as long as the block lasts.

    The port stays bound (not listening) meanwhile, so no other test can start a server
    on it: a connection attempt is refused however many tests run in parallel.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_binary() -> str:
    """The redis-server every test server runs (a clear failure if there is none)."""
    try:
        return redis_server_binary()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def redis_server(
    redis_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    """One redis-server for the whole session (each test uses its own key namespace)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), binary=redis_binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(redis_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server this test may kill, restart or reconfigure, with a password (never shown)."""
    server = RedisServer(tmp_path, password="s3cret-pw", binary=redis_binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(
    redis_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisCluster]:
    """A 3-node Redis Cluster for the whole session."""
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"), binary=redis_binary)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


async def scores(redis: Redis, key: str) -> list[float]:
    """The scores of a sorted set (the shared limit's send times), in order."""
    rows = cast("list[tuple[bytes, float]]", await redis.zrange(key, 0, -1, withscores=True))
    return sorted(score for _, score in rows)


def most_in_one_second(times: Iterable[float]) -> int:
    """The most of ``times`` (in any order) in any half-open 1-s window ``[t, t + 1)``."""
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most
