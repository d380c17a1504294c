"""The sync client: scripts, threads, a running loop in the caller, process pools, clean exits."""

from __future__ import annotations

import asyncio
import gc
import inspect
import multiprocessing
import pickle
import re
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

import hostup_async
from hostup_async import AttemptEvent, ClientClosedError, ConfigurationError, NotFoundError
from hostup_async.sync import HostUpClient
from hostup_async.testing import FakeHostUp, Fault
from tests import sync_worker

KEY = "sync-key-3d9e"


@contextmanager
def fake_in_thread(**options: Any) -> Iterator[FakeHostUp]:
    """Serve a fake API from a loop of its own in a thread: sync calls block only their caller."""
    box: list[tuple[FakeHostUp, asyncio.AbstractEventLoop, asyncio.Event]] = []
    ready = threading.Event()
    failed: list[BaseException] = []

    async def serve() -> None:
        async with FakeHostUp(api_key=KEY, **options) as fake:
            stop = asyncio.Event()
            box.append((fake, asyncio.get_running_loop(), stop))
            ready.set()
            await stop.wait()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported to the test below
            failed.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="fake-server")
    thread.start()
    ready.wait()
    if failed:
        raise failed[0]
    fake, loop, stop = box[0]
    try:
        yield fake
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join()


def running_tasks(client: HostUpClient) -> int:
    """Tasks on the client's private loop besides the one asking: its requests and workers."""

    async def count() -> int:
        return len(asyncio.all_tasks()) - 1

    runtime = client._portal.runtime()
    return runtime.call(count())


@pytest.fixture
def fake() -> Iterator[FakeHostUp]:
    with fake_in_thread(forbidden={7}, missing={42}) as server:
        yield server


def test_same_constructor_and_methods_as_the_async_client() -> None:
    def params(f: Any) -> list[tuple[str, Any, Any]]:
        sig = inspect.signature(f)
        return [(p.name, p.kind, p.default) for p in sig.parameters.values()]

    assert params(HostUpClient) == params(hostup_async.HostUpClient)
    for name in ("get_vm_details", "get_billing_cycle", "fetch_vms", "stream_vms"):
        assert params(getattr(HostUpClient, name)) == params(
            getattr(hostup_async.HostUpClient, name)
        ), name


def test_calls_without_await_and_errors_as_the_async_client(fake: FakeHostUp) -> None:
    with HostUpClient(KEY, base_url=fake.url, rate_limit=None) as client:
        assert client.get_vm_details(3).hostname == "vm3.example.net"
        assert client.get_billing_cycle(5).current == "a"
        with pytest.raises(NotFoundError) as caught:
            client.get_vm_details(42)
        assert caught.value.code == "NOT_FOUND"
        results = client.fetch_vms([1, 7, 42, 2])
        assert isinstance(results, list)
        assert [(r.vmid, r.ok) for r in results] == [(1, True), (7, False), (42, False), (2, True)]
        streamed = sorted(r.vmid for r in client.stream_vms(range(1, 21)) if r.ok)
        assert streamed == [v for v in range(1, 21) if v != 7]
        assert client.stats.requests == 1 + 1 + 1 + 4 + 20
    assert client.closed


def test_settings_and_stats_read_as_on_the_async_client(fake: FakeHostUp) -> None:
    with HostUpClient(
        KEY, base_url=fake.url, rate_limit=50, max_concurrency=3, timeout=4, max_retries=1
    ) as client:
        assert (client.base_url, client.rate_limit, client.max_concurrency) == (fake.url, 50, 3)
        assert (client.timeout, client.max_retries, client.max_retry_after) == (4, 1, 60)
        assert client.effective_rate_limit == 50
        client.get_billing_cycle(1)
        assert client.stats.requests == 1 and not client.closed


def test_bad_arguments_fail_at_the_call_before_any_request(fake: FakeHostUp) -> None:
    with pytest.raises(ConfigurationError):
        HostUpClient(KEY, base_url=fake.url, rate_limit=0)
    with pytest.raises(ConfigurationError, match="session="):
        HostUpClient(KEY, base_url=fake.url, session=object())  # type: ignore[arg-type]
    with HostUpClient(KEY, base_url=fake.url) as client:
        with pytest.raises(TypeError):
            client.stream_vms("1,2")
        with pytest.raises(ConfigurationError):
            client.fetch_vms([1], details=False)
        with pytest.raises(ValueError):
            client.get_vm_details(0)
    assert fake.stats.requests == 0


def test_close_twice_and_calls_after_close(fake: FakeHostUp) -> None:
    client = HostUpClient(KEY, base_url=fake.url)
    assert client.get_vm_details(1).hostname == "vm1.example.net"
    client.close()
    client.close()
    assert client.closed
    with pytest.raises(ClientClosedError):
        client.get_vm_details(1)
    with pytest.raises(ClientClosedError):
        client.stream_vms([1])
    HostUpClient(KEY, base_url=fake.url).close()  # never used: nothing to start or stop


def test_repr_and_pickle_never_show_the_key(fake: FakeHostUp) -> None:
    with HostUpClient(KEY, base_url=fake.url) as client:
        assert KEY not in repr(client)
        assert repr(client).startswith("hostup_async.sync.HostUpClient(base_url=")
        with pytest.raises(TypeError, match="cannot be pickled") as caught:
            pickle.dumps(client)
        assert KEY not in str(caught.value)


def test_eight_threads_share_one_client_and_one_rate_limit(fake: FakeHostUp) -> None:
    loop_threads: set[int] = set()

    def seen(event: AttemptEvent) -> None:
        loop_threads.add(threading.get_ident())

    rate = 200
    with HostUpClient(KEY, base_url=fake.url, rate_limit=rate, on_attempt=seen) as client:

        def fifty(first: int) -> list[str]:
            return [
                client.get_vm_details(v, usage_log=False).hostname for v in range(first, first + 50)
            ]

        with ThreadPoolExecutor(8) as pool:
            names = [n for batch in pool.map(fifty, range(100, 500, 50)) for n in batch]
        assert names == [f"vm{v}.example.net" for v in range(100, 500)]
        assert client.stats.requests == 400
        # One event loop thread sent everything: one client, not one per calling thread.
        assert len(loop_threads) == 1 and threading.get_ident() not in loop_threads
    # One rate limit for all: at most `rate` sends in any second, so 400 arrivals span
    # about a second or more. Eight limits of their own would have sent them in a burst.
    arrivals = [r.at for r in fake.stats.recent]
    assert len(arrivals) == 400
    assert arrivals[-1] - arrivals[0] >= 0.5
    assert fake.stats.by_status == {200: 400}


async def test_works_from_a_thread_whose_loop_is_running(fake: FakeHostUp) -> None:
    asyncio.get_running_loop()  # a notebook cell: this thread's loop runs, and waits for us
    with HostUpClient(KEY, base_url=fake.url, rate_limit=None) as client:
        assert client.get_vm_details(9).hostname == "vm9.example.net"
        assert len(client.fetch_vms(range(1, 11))) == 10
        assert sum(1 for _ in client.stream_vms(range(1, 11))) == 10


def test_breaking_out_of_stream_vms_stops_its_requests(fake: FakeHostUp) -> None:
    fake.latency = 0.05
    with HostUpClient(KEY, base_url=fake.url, rate_limit=None, max_concurrency=8) as client:
        for result in client.stream_vms(range(1, 100_000)):
            assert result.ok
            break
        assert running_tasks(client) == 0  # stopped when the loop was left, not later
        sent = client.stats.requests
        assert sent <= 8 + 8  # the first window, not the input
        time.sleep(fake.latency * 4)  # several rounds of requests, had any been left running
        assert client.stats.requests == sent
        # Nothing beyond what the client counted reached the server (on a busy machine some
        # of those may still be on their way: counting arrivals is not a stop condition).
        assert fake.stats.requests <= sent
        # The client is still usable, and its stream's tasks are gone.
        assert client.get_vm_details(1, usage_log=False).hostname == "vm1.example.net"


def test_closing_the_iterator_stops_the_stream_at_once(fake: FakeHostUp) -> None:
    with HostUpClient(KEY, base_url=fake.url, rate_limit=None) as client:
        stream = client.stream_vms(range(1, 100_000))
        next(stream)
        stream.close()  # type: ignore[attr-defined]
        assert running_tasks(client) == 0
        sent = client.stats.requests
        assert list(stream) == []
        assert client.stats.requests == sent


def test_a_hook_calling_the_client_fails_instead_of_hanging(fake: FakeHostUp) -> None:
    with HostUpClient(KEY, base_url=fake.url, rate_limit=None) as client:
        errors: list[BaseException] = []

        def progress(p: Any) -> None:
            try:
                client.get_vm_details(1)
            except RuntimeError as exc:
                errors.append(exc)

        client.fetch_vms([1, 2], progress=progress)
        assert errors and "own event loop thread" in str(errors[0])


def test_a_fork_after_use_starts_its_own_loop_in_the_child(
    fake: FakeHostUp, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = HostUpClient(KEY, base_url=fake.url, rate_limit=None)
    monkeypatch.setattr(sync_worker, "client", client)
    try:
        parent_pid, name = sync_worker.hostname(1)  # the loop thread runs, the session is open
        assert name == "vm1.example.net"
        with warnings.catch_warnings():
            # Python 3.12+ warns that forking a process with threads may deadlock the
            # child: the sync client is what must not, so fork it is.
            warnings.filterwarnings(
                "ignore", "This process .* is multi-threaded", DeprecationWarning
            )
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(2, mp_context=context) as pool:
                answers = list(pool.map(sync_worker.hostname, range(100, 120)))
        assert [n for _, n in answers] == [f"vm{v}.example.net" for v in range(100, 120)]
        assert parent_pid not in {pid for pid, _ in answers}
        # The parent's client is untouched by its children.
        assert client.get_vm_details(2).hostname == "vm2.example.net"
    finally:
        client.close()


def test_a_spawned_pool_builds_its_client_from_the_environment(
    fake: FakeHostUp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTUP_API_KEY", KEY)
    monkeypatch.setenv("HOSTUP_BASE_URL", fake.url)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        answers = list(pool.map(sync_worker.hostname, range(1, 6)))
    assert [n for _, n in answers] == [f"vm{v}.example.net" for v in range(1, 6)]
    assert len({pid for pid, _ in answers}) == 1  # one worker, five tasks on one client


SCRIPT = """
import sys
from hostup_async.sync import HostUpClient

client = HostUpClient(sys.argv[1], base_url=sys.argv[2], rate_limit=None)
print(client.get_vm_details(3).hostname)
print(sum(r.ok for r in client.fetch_vms(range(1, 11))))
for r in client.stream_vms(range(1, 1000)):
    break
{ending}
"""


def run_script(
    script: str, *args: str, dev: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` as ``python -W error -c`` (and ``-X dev``) with the key and ``args``."""
    strict = ["-X", "dev", "-W", "error"] if dev else ["-W", "error"]
    try:
        return subprocess.run(
            [sys.executable, *strict, "-c", script, KEY, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # say how far it got
        pytest.fail(
            f"still running after {timeout:g} s; stdout {exc.stdout!r}, stderr {exc.stderr!r}"
        )


@pytest.mark.parametrize("ending", ["client.close()", "", "del client", "raise SystemExit(3)"])
def test_a_script_exits_cleanly_under_w_error(fake: FakeHostUp, ending: str) -> None:
    done = run_script(textwrap.dedent(SCRIPT).format(ending=ending), fake.url)
    assert done.returncode == (3 if "SystemExit" in ending else 0), done.stderr
    assert done.stdout.split() == ["vm3.example.net", "9"]  # vm 7 is forbidden
    assert _without_slow_steps(done.stderr) == ""


def _without_slow_steps(stderr: str) -> str:
    """``stderr`` less asyncio debug mode's "Executing ... took 0.106 seconds" (a busy machine)."""
    lines = stderr.splitlines(keepends=True)
    return "".join(x for x in lines if not re.match(r"Executing .* took [0-9.]+ seconds$", x))


# -- the async client across event loops, and the sync mistakes -------------------------


def collect_garbage() -> None:
    """Run the cycle collector, with warnings ignored: what leaked is judged by the log.

    aiohttp reports an unclosed session twice, as a ResourceWarning and through the loop's
    exception handler (a log record): the tests read the record. The warnings are ignored
    here because the collector also finalizes what earlier tests in this process left
    behind, which is not this test's to judge.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_a_second_asyncio_run_gets_a_clear_error_and_nothing_leaks(
    fake: FakeHostUp, caplog: pytest.LogCaptureFixture
) -> None:
    collect_garbage()  # what earlier tests left is theirs
    caplog.clear()
    client = hostup_async.HostUpClient(KEY, base_url=fake.url)

    async def hostname(client: hostup_async.HostUpClient) -> str:
        return (await client.get_vm_details(1)).hostname

    assert asyncio.run(hostname(client)) == "vm1.example.net"
    with pytest.raises(RuntimeError, match=r"each asyncio\.run\(\) starts a new one") as caught:
        asyncio.run(hostname(client))
    assert "hostup_async.sync.HostUpClient" in str(caught.value)
    del client, caught
    collect_garbage()
    # The first loop closed the session as it ended: no "Unclosed client session".
    assert not [r for r in caplog.records if "Unclosed" in r.getMessage()]


def test_a_client_dropped_unclosed_in_a_running_loop_closes_its_session(
    fake: FakeHostUp, caplog: pytest.LogCaptureFixture
) -> None:
    collect_garbage()
    caplog.clear()

    async def notebook() -> None:
        for _ in range(3):  # a cell run three times, each building a client
            client = hostup_async.HostUpClient(KEY, base_url=fake.url)
            await client.get_vm_details(2)
        del client
        collect_garbage()
        for _ in range(5):
            await asyncio.sleep(0)  # the loop closes the dropped clients' sessions

    asyncio.run(notebook())
    collect_garbage()
    assert not [r for r in caplog.records if "Unclosed" in r.getMessage()]


def test_sync_mistakes_say_what_to_write_instead() -> None:
    client = hostup_async.HostUpClient(KEY)
    with pytest.raises(TypeError, match="async with HostUpClient") as caught:
        with client:
            pass
    assert "hostup_async.sync.HostUpClient" in str(caught.value)
    with pytest.raises(RuntimeError) as no_loop:
        client.stream_vms([1, 2])
    assert "async for r in client.stream_vms" in str(no_loop.value)
    assert "await client.get_vm_details" in str(no_loop.value)
    assert "hostup_async.sync.HostUpClient" in str(no_loop.value)
    coroutine = client.fetch_vms([1])  # driven by hand, as no loop runs here
    with pytest.raises(RuntimeError, match="no event loop is running"):
        coroutine.send(None)


FORK_SCRIPT = """
import os, sys
from hostup_async.sync import HostUpClient

client = HostUpClient(sys.argv[1], base_url=sys.argv[2], rate_limit=None)
print("parent", client.get_vm_details(1, usage_log=False).hostname, flush=True)
pid = os.fork()
if pid == 0:
    print("child", client.get_vm_details(2, usage_log=False).hostname, flush=True)
    sys.exit(0)  # a normal exit: the child's atexit and finalizers run
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status))
print("parent", client.get_vm_details(3, usage_log=False).hostname)
"""


def test_a_plain_fork_child_uses_and_leaves_the_client_cleanly(fake: FakeHostUp) -> None:
    done = run_script(FORK_SCRIPT, fake.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "parent vm1.example.net",
        "child vm2.example.net",
        "child exit 0",
        "parent vm3.example.net",
    ]
    assert _without_slow_steps(done.stderr) == ""


INTERRUPT_SCRIPT = """
import asyncio, os, signal, sys, threading
from hostup_async.sync import HostUpClient

# Ctrl-C as at a terminal: a shell without job control (a CI step, `nox &`) starts its
# background jobs with SIGINT ignored, their children inherit that, and Python then installs
# no KeyboardInterrupt handler (this test hung its 30 s there).
signal.signal(signal.SIGINT, signal.default_int_handler)

client = HostUpClient(sys.argv[1], base_url=sys.argv[2], rate_limit=None)
client.get_vm_details(1, usage_log=False)
print("first call answered", flush=True)  # a hang after this line is the interrupt's
# Which thread the kernel hands a process's SIGINT to is its choice: the main one, or any.
receiver = threading.main_thread() if sys.argv[4] == "main" else client._portal.runtime().thread
interrupt = threading.Timer(0.3, signal.pthread_kill, (receiver.ident, signal.SIGINT))
interrupt.start()
try:
    client.get_vm_details(int(sys.argv[3]))  # the server holds this one for a minute
except KeyboardInterrupt:
    print("interrupted", flush=True)


async def count() -> int:
    await asyncio.sleep(0.1)  # the cancellation lands on the loop
    return len(asyncio.all_tasks()) - 1


runtime = client._portal.runtime()
print("tasks left", runtime.call(count()))
client.close()
"""


@pytest.mark.parametrize("receiver", ["main", "loop thread"])
def test_ctrl_c_during_a_call_stops_it(fake: FakeHostUp, receiver: str) -> None:
    fake.inject(Fault.slow(60), vmid=2)
    done = run_script(INTERRUPT_SCRIPT, fake.url, "2", receiver, dev=False, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["first call answered", "interrupted", "tasks left 0"]


def test_a_failing_input_ends_the_stream_with_its_error(fake: FakeHostUp) -> None:
    def vmids() -> Iterator[int]:
        yield from range(1, 6)
        raise ValueError("the input broke")

    with HostUpClient(KEY, base_url=fake.url, rate_limit=None) as client:
        seen: list[int] = []
        with pytest.raises(ValueError, match="the input broke"):
            seen.extend(result.vmid for result in client.stream_vms(vmids(), ordered=True))
        assert seen == list(range(1, len(seen) + 1))  # in order, none twice
        assert running_tasks(client) == 0
        assert sorted(r.vmid for r in client.stream_vms(range(1, 200)) if r.ok) == [
            v for v in range(1, 200) if v not in (7, 42)
        ]
