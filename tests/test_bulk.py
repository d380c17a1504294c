from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from hostup_async import (
    BulkProgress,
    ConfigurationError,
    HostUpClient,
    InvalidVMIDError,
    InvalidVMIDTypeError,
    NotFoundError,
    PermissionDeniedError,
    VMResult,
)
from hostup_async.testing import FakeHostUp, Fault

from .conftest import API_KEY, client_tasks, eventually


async def test_fetch_vms_returns_one_result_per_input_in_order(client: HostUpClient) -> None:
    vmids: list[Any] = [5, 403, "7", 404, 0, 6, 5]
    results = await client.fetch_vms(vmids)
    assert [r.vmid for r in results] == vmids
    assert [r.ok for r in results] == [True, False, False, False, False, True, True]
    assert isinstance(results[1].error, PermissionDeniedError)
    assert isinstance(results[2].error, InvalidVMIDTypeError)
    assert isinstance(results[3].error, NotFoundError)
    assert isinstance(results[4].error, InvalidVMIDError)
    assert results[0].details is not None and results[0].details.hostname == "vm5.example.net"
    assert results[0].billing_cycle is None


async def test_details_and_billing_together(client: HostUpClient, fake: FakeHostUp) -> None:
    (r,) = await client.fetch_vms([10], billing_cycle=True)
    assert r.ok and r.details is not None and r.billing_cycle is not None
    assert {q.path for q in fake.stats.recent} == {"/api/vm/10/details", "/api/vm/10/billing-cycle"}
    (only_billing,) = await client.fetch_vms([10], details=False, billing_cycle=True)
    assert only_billing.details is None and only_billing.billing_cycle is not None


async def test_vm_fails_if_either_call_fails(fake: FakeHostUp) -> None:
    fake.inject(Fault.http(404), vmid=11)
    async with HostUpClient(API_KEY, base_url=fake.url, rate_limit=None) as client:
        (r,) = await client.fetch_vms([11], billing_cycle=True)
    assert not r.ok
    assert isinstance(r.error, NotFoundError)
    assert r.details is None and r.billing_cycle is None


async def test_usage_log_false_reaches_the_bulk_path(client: HostUpClient) -> None:
    (r,) = await client.fetch_vms([3], usage_log=False)
    assert r.details is not None and r.details.usage_log == {}


async def test_stream_unordered_yields_in_completion_order(fake: FakeHostUp) -> None:
    fake.inject(Fault.slow(1.0), vmid=1)  # the others take milliseconds, even on a busy machine
    async with HostUpClient(API_KEY, base_url=fake.url, rate_limit=None) as client:
        results = [r async for r in client.stream_vms([1, 2, 3, 4])]
    seen = [r.vmid for r in results]
    assert sorted(seen) == [1, 2, 3, 4]
    assert all(r.index == r.vmid - 1 for r in results)
    assert seen[-1] == 1  # the slow one arrives last


async def test_stream_ordered_yields_in_input_order(fake: FakeHostUp) -> None:
    fake.inject(Fault.slow(0.3), vmid=1)
    async with HostUpClient(API_KEY, base_url=fake.url, rate_limit=None) as client:
        seen = [r.vmid async for r in client.stream_vms([1, 2, 3, 4, 5], ordered=True)]
    assert seen == [1, 2, 3, 4, 5]


async def test_ordered_reorder_buffer_is_bounded(fake: FakeHostUp) -> None:
    fake.inject(Fault.slow(0.5), vmid=1)
    async with HostUpClient(
        API_KEY, base_url=fake.url, rate_limit=None, max_concurrency=4
    ) as client:
        stream = client.stream_vms(itertools.count(1), ordered=True)
        first = await stream.__anext__()
        assert first.vmid == 1
        # While vmid 1 was slow, at most the window (2 x max_concurrency) was pulled ahead.
        assert fake.stats.requests <= 8
        await stream.aclose()


async def test_endless_input_broken_after_n_stays_bounded(
    client: HostUpClient, fake: FakeHostUp
) -> None:
    pulled = 0

    def endless() -> Iterator[int]:
        nonlocal pulled
        for vmid in itertools.count(1):
            pulled += 1
            yield vmid

    n = 0
    async for result in client.stream_vms(endless()):
        assert result.ok
        n += 1
        if n == 100:
            break
    # The loop's async-generator finalizer closes the abandoned stream: once it has, no
    # task of the client is left, so nothing more can be sent.
    await eventually(lambda: not client_tasks())
    window = client.max_concurrency * 2
    assert pulled <= n + window
    assert fake.stats.requests <= n + window


async def test_async_iterable_input(client: HostUpClient) -> None:
    async def ids() -> AsyncIterator[int]:
        for vmid in (3, 1, 2):
            await asyncio.sleep(0)
            yield vmid

    results = await client.fetch_vms(ids())
    assert [r.vmid for r in results] == [3, 1, 2]
    assert all(r.ok for r in results)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_an_input_that_raises_stops_the_stream_with_its_error(
    client: HostUpClient, kind: str
) -> None:
    def ids() -> Iterator[int]:
        yield from (1, 2)
        raise LookupError("the inventory went away")

    async def async_ids() -> AsyncIterator[int]:
        for vmid in ids():
            yield vmid

    with pytest.raises(LookupError, match="inventory"):
        async for _ in client.stream_vms(ids() if kind == "sync" else async_ids()):
            pass
    assert not client_tasks()


async def test_a_source_cancelled_from_elsewhere_is_an_error_not_the_end(
    client: HostUpClient,
) -> None:
    async def ids() -> AsyncIterator[int]:
        yield 1
        raise asyncio.CancelledError  # e.g. it awaited a task that someone else cancelled

    # Not a quietly truncated list: the stream stops with what the source raised.
    with pytest.raises(asyncio.CancelledError):
        await client.fetch_vms(ids())
    assert not client_tasks()


async def test_closing_a_stream_over_a_source_that_swallows_cancels(
    client: HostUpClient,
) -> None:
    async def stubborn() -> AsyncIterator[int]:
        for vmid in itertools.count(1):
            # A source that ignores cancellation must not keep the stream alive.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.02)
            yield vmid

    stream = client.stream_vms(stubborn())
    await stream.__anext__()
    await asyncio.wait_for(stream.aclose(), timeout=5)
    assert not client_tasks()


async def test_a_slow_reader_holds_at_most_the_window(fake: FakeHostUp) -> None:
    async with HostUpClient(
        API_KEY, base_url=fake.url, rate_limit=None, max_concurrency=3
    ) as client:
        stream = client.stream_vms(itertools.count(1))
        await stream.__anext__()
        # The reader dawdles: the workers fill the window, every answer arrives, and then
        # they must stop. (A wait for that state; the pause after it gives a worker that
        # wrongly went on the time to show it, and cannot make a correct one fail.)
        window = 2 * client.max_concurrency
        await eventually(lambda: fake.stats.requests >= 1 + window and not fake.stats.in_flight)
        await asyncio.sleep(0.1)
        assert fake.stats.requests == 1 + window
        await stream.aclose()


async def test_aclose_cancels_requests_in_flight(fake: FakeHostUp) -> None:
    fake.latency = 5.0
    async with HostUpClient(API_KEY, base_url=fake.url, rate_limit=None) as client:
        stream = client.stream_vms(range(1, 1000))
        consumer = asyncio.ensure_future(stream.__anext__())
        await eventually(lambda: fake.stats.in_flight == client.max_concurrency)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await stream.aclose()
        assert not client_tasks()


async def test_cancelling_the_consuming_task_leaves_nothing_behind(fake: FakeHostUp) -> None:
    fake.latency = 0.05
    async with HostUpClient(API_KEY, base_url=fake.url, rate_limit=None) as client:
        got: list[VMResult] = []
        some = asyncio.Event()

        async def consume() -> None:
            async for r in client.stream_vms(itertools.count(1)):
                got.append(r)
                if len(got) == 3:
                    some.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(some.wait(), timeout=10)  # mid-stream, requests in flight
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not client_tasks()


async def test_progress_hook_counts_done_failed_and_total(client: HostUpClient) -> None:
    snapshots: list[BulkProgress] = []
    await client.fetch_vms([1, 2, 403, 404], progress=snapshots.append)
    last = snapshots[-1]
    assert (last.done, last.failed, last.ok, last.total) == (4, 2, 2, 4)
    assert [s.done for s in snapshots] == sorted(s.done for s in snapshots)


async def test_progress_reports_rate_limit_wait_and_429s(fake: FakeHostUp) -> None:
    fake.inject(Fault.http(429, retry_after=0.3), vmid=1)
    fake.inject(Fault.slow(0.1), vmid=2)
    snapshots: list[BulkProgress] = []
    # Two slots: vmid 1 is refused and backs off; when slow vmid 2 is done, vmid 3 starts
    # inside the client-wide pause and must sit it out: the wait the progress hook reports.
    async with HostUpClient(
        API_KEY, base_url=fake.url, rate_limit=None, max_concurrency=2
    ) as client:
        async for _ in client.stream_vms(iter([1, 2, 3]), progress=snapshots.append):
            pass
    last = snapshots[-1]
    assert last.total is None
    assert last.rate_limited == 1 and last.retries == 1
    assert last.throttle_wait >= 0.1


async def test_all_through_the_clients_concurrency_cap(fake: FakeHostUp) -> None:
    fake.latency = 0.02
    async with HostUpClient(
        API_KEY, base_url=fake.url, rate_limit=None, max_concurrency=3
    ) as client:
        results = await client.fetch_vms(range(1, 40), billing_cycle=True)
    assert all(r.ok for r in results)
    assert fake.stats.max_in_flight == 3  # every slot in use, never more


async def test_bad_bulk_arguments_fail_before_io(client: HostUpClient, fake: FakeHostUp) -> None:
    with pytest.raises(TypeError):
        client.stream_vms(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await client.fetch_vms("123")
    with pytest.raises(ConfigurationError):
        client.stream_vms([1], details=False, billing_cycle=False)
    assert fake.stats.requests == 0


async def test_an_async_source_gets_results_while_it_waits() -> None:
    """A source fed by the results themselves (a queue) must not deadlock the stream."""
    async with FakeHostUp(api_key=API_KEY) as fake:
        async with HostUpClient(API_KEY, base_url=fake.url, rate_limit=None) as client:
            queue: asyncio.Queue[int] = asyncio.Queue()
            queue.put_nowait(1)

            async def ids() -> AsyncIterator[int]:
                while True:
                    vmid = await queue.get()
                    if vmid > 5:
                        return
                    yield vmid

            seen = []
            async for result in client.stream_vms(ids()):
                seen.append(result.vmid)
                queue.put_nowait(result.vmid + 1)  # the next id depends on this result
    assert seen == [1, 2, 3, 4, 5]


async def test_a_slow_async_source_does_not_hold_results_back() -> None:
    async with FakeHostUp(api_key=API_KEY) as fake:
        async with HostUpClient(API_KEY, base_url=fake.url, rate_limit=None) as client:
            first_seen = asyncio.Event()

            async def stalling_ids() -> AsyncIterator[int]:
                yield 1
                # The source has nothing more until a result comes through: a stream that
                # held results back for the source would never finish (the guard fails it).
                await first_seen.wait()
                yield 2

            async def read() -> list[int]:
                seen = []
                async for result in client.stream_vms(stalling_ids()):
                    assert result.ok
                    seen.append(result.vmid)
                    first_seen.set()
                return seen

            assert await asyncio.wait_for(read(), timeout=10) == [1, 2]
