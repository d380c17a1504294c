"""Streaming fan-out over many vmids: bounded look-ahead, one result per input item."""

from __future__ import annotations

import asyncio
import functools
import math
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sized,
)
from typing import Any, Protocol

import msgspec

from ._events import ClientStats
from ._exceptions import ClientClosedError, ConfigurationError, HostUpError
from ._models import BillingCycle, VMDetails
from ._validate import check_vmid

__all__ = ["BulkProgress", "ProgressHook", "VMIds", "VMResult", "fetch_vms", "stream_vms"]

#: What the bulk calls accept: any iterable or async iterable of vmids, even an endless one.
VMIds = Iterable[Any] | AsyncIterable[Any]


class FanOutClient(Protocol):
    """What the fan-out uses of a client (``HostUpClient`` is one): its two calls, its cap, its totals."""

    max_concurrency: int
    stats: ClientStats

    @property
    def closed(self) -> bool:
        """Whether the client was closed."""

    async def get_vm_details(self, vmid: int, *, usage_log: bool = ...) -> VMDetails:
        """Fetch one VM's details."""

    async def get_billing_cycle(self, vmid: int) -> BillingCycle:
        """Fetch one VM's billing cycle."""


# Items pulled ahead of the consumer per slot of max_concurrency: enough to keep every
# slot busy while results wait to be taken, small enough that memory stays flat.
_WINDOW_PER_SLOT = 2


class VMResult(msgspec.Struct, frozen=True):
    """The outcome for one input item of a bulk fetch: data, or the error that stopped it."""

    vmid: int
    """The vmid. An input item that is not a valid vmid is kept as given, and ``error`` is then
    an ``InvalidVMIDError``."""
    index: int
    """Position of the item in the input, from 0 (handy with completion-order streams)."""
    details: VMDetails | None = None
    """The VM's details, when asked for and fetched."""
    billing_cycle: BillingCycle | None = None
    """The VM's billing cycle, when asked for and fetched."""
    error: HostUpError | None = None
    """Why this VM failed (403, 404, retries exhausted, an invalid vmid), or ``None``."""

    @property
    def ok(self) -> bool:
        """Whether every requested call for this VM succeeded."""
        return self.error is None

    def details_or_raise(self) -> VMDetails:
        """Return the details, or raise the error this VM failed with.

        Typed ``VMDetails`` (never ``None``), so type checkers follow it, unlike ``r.details``
        after ``if r.ok``. Raises ``ValueError`` when details were not asked for.
        """
        if self.error is not None:
            raise self.error
        if self.details is None:
            raise ValueError(f"vm {self.vmid}: details were not fetched (details=False)")
        return self.details

    def billing_cycle_or_raise(self) -> BillingCycle:
        """Return the billing cycle, or raise the error this VM failed with.

        Typed ``BillingCycle`` (never ``None``). Raises ``ValueError`` when billing cycles
        were not asked for (``billing_cycle=True``).
        """
        if self.error is not None:
            raise self.error
        if self.billing_cycle is None:
            raise ValueError(
                f"vm {self.vmid}: the billing cycle was not fetched (billing_cycle=False)"
            )
        return self.billing_cycle


class BulkProgress(msgspec.Struct, frozen=True):
    """A snapshot of a bulk fetch, passed to the ``progress`` hook as results finish.

    The hook runs once for each batch of results that finish together, before they are
    yielded. The request counters are the client's own since the fetch began, so they
    include any other calls made on the same client meanwhile.
    """

    done: int
    """Results produced so far (ok and failed)."""
    failed: int
    """Results with an error."""
    total: int | None
    """Input items, when the input has a length; ``None`` for generators."""
    throttle_wait: float
    """Seconds requests waited for the rate limit or a 429 pause since the fetch began, summed.

    The backoff of a request that is itself being retried is not part of it.
    """
    retries: int
    """Retries the client sent since the fetch began."""
    rate_limited: int
    """429 answers the client received since the fetch began."""

    @property
    def ok(self) -> int:
        """Results without an error."""
        return self.done - self.failed


#: A callback that receives a ``BulkProgress``; it must be quick and must not raise.
ProgressHook = Callable[[BulkProgress], None]


def stream_vms(
    client: FanOutClient,
    vmids: VMIds,
    *,
    details: bool,
    billing_cycle: bool,
    ordered: bool,
    usage_log: bool,
    progress: ProgressHook | None,
) -> AsyncGenerator[VMResult, None]:
    """Check the arguments now, then return the generator that fetches lazily."""
    _check_bulk_args(
        vmids,
        progress,
        details=details,
        billing_cycle=billing_cycle,
        ordered=ordered,
        usage_log=usage_log,
    )
    return _fan_out(client, vmids, details, billing_cycle, usage_log, progress, ordered)


async def fetch_vms(
    client: FanOutClient,
    vmids: VMIds,
    *,
    details: bool,
    billing_cycle: bool,
    usage_log: bool,
    progress: ProgressHook | None,
) -> list[VMResult]:
    """Fetch every VM and return the results in input order."""
    _check_bulk_args(
        vmids, progress, details=details, billing_cycle=billing_cycle, usage_log=usage_log
    )
    results: list[VMResult | None] = []
    stream = _fan_out(client, vmids, details, billing_cycle, usage_log, progress, False)
    try:
        async for result in stream:
            # Completion order is fastest; each result knows its place in the input.
            if result.index >= len(results):
                results.extend([None] * (result.index + 1 - len(results)))
            results[result.index] = result
    finally:
        await stream.aclose()
    return [r for r in results if r is not None]


def _check_bulk_args(vmids: Any, progress: Any, **flags: Any) -> None:
    """Refuse unusable bulk arguments before any I/O."""
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, not {type(flag).__name__}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable, not {type(progress).__name__}")
    details, billing_cycle = flags["details"], flags["billing_cycle"]
    if not isinstance(vmids, (Iterable, AsyncIterable)) or isinstance(vmids, (str, bytes)):
        raise TypeError(
            f"vmids must be an iterable or async iterable of ints, not {type(vmids).__name__}"
        )
    if not (details or billing_cycle):
        raise ConfigurationError("nothing to fetch: details and billing_cycle are both False")


_END = object()  # marks the end of the input


class _Workers:
    """A fixed set of worker tasks that fetch the input's items and hand the results over.

    Workers, not a task per item: creating, scheduling and reaping a task for every VM cost
    more CPU than the rest of the request path, and a worker that finishes moves on to its
    next item at once. One worker per request slot keeps the client's concurrency cap
    uncontended; items pulled and not yet taken by the reader never exceed ``window``.
    Workers start one at a time, each when the one before it has pulled an item, so a
    short input never gets more workers than it has items, whatever ``workers`` is.
    """

    def __init__(
        self,
        items: VMIds,
        fetch: Callable[[int, Any], Awaitable[VMResult]],
        *,
        workers: int,
        window: int,
    ) -> None:
        self._fetch = fetch
        self._window = window
        if isinstance(items, AsyncIterable):
            self._async_items: AsyncIterator[Any] | None = aiter(items)
            self._sync_items: Iterator[Any] = iter(())
        else:
            self._async_items, self._sync_items = None, iter(items)
        self._pulling = asyncio.Lock()  # an async iterator takes one __anext__ at a time
        self._ready: deque[VMResult] = deque()  # finished, not yet taken by the reader
        self._ahead = 0  # items pulled and not yet taken by the reader
        self._next_index = 0
        self._exhausted = False
        self._loop = asyncio.get_running_loop()
        # A bare future, not an Event: the reader waits once per batch, on the hot path.
        self._reader: asyncio.Future[None] | None = None
        self._room = asyncio.Event()
        self._stopping = False
        #: The first unexpected exception a worker met (the input itself raising, say).
        self.failure: BaseException | None = None
        self._max_workers = workers
        self._tasks: list[asyncio.Task[None]] = []
        self._running = 0
        self._start_worker()

    def _start_worker(self) -> None:
        """Start one more worker, unless all are running or there is nothing left to pull."""
        if len(self._tasks) < self._max_workers and not (self._exhausted or self._stopping):
            self._running += 1
            self._tasks.append(self._loop.create_task(self._work()))

    async def next_batch(self) -> deque[VMResult]:
        """Wait for and take every finished result; an empty batch means all are done."""
        while not self._ready and self.failure is None and self._running:
            self._reader = self._loop.create_future()
            await self._reader
        batch, self._ready = self._ready, deque()
        return batch

    def taken(self) -> None:
        """Count one result as taken by the reader, making room for one more item."""
        self._ahead -= 1
        self._room.set()

    async def stop(self) -> None:
        """Cancel the workers and wait until they have stopped."""
        # The flag stops a worker whose cancellation was swallowed somewhere below it (a
        # source's own except clause, say), so it cannot go on fetching or wait forever.
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _work(self) -> None:
        try:
            while not self._stopping:
                while self._ahead >= self._window and not self._stopping:
                    self._room.clear()
                    await self._room.wait()
                self._ahead += 1  # reserved before pulling, as an async pull lets others run
                if self._exhausted or self._stopping:
                    pulled = None
                elif self._async_items is None:
                    pulled = self._number(next(self._sync_items, _END))
                else:
                    pulled = await self._pull()
                if pulled is None or self._stopping:
                    self._ahead -= 1
                    return
                self._start_worker()  # an item came: the input may have more for a next one
                # Handed over without a local name: a worker holding on to its last result
                # would keep a large usage log alive, and cache-cold, long after it is used.
                self._hand_over(await self._fetch(*pulled))
        except asyncio.CancelledError as exc:
            if self._stopping:
                raise
            self._fail(exc)  # not ours: a source cancelled from elsewhere must not end the input
        except Exception as exc:
            self._fail(exc)
        finally:
            self._running -= 1
            self._wake_reader()

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc

    def _hand_over(self, result: VMResult) -> None:
        self._ready.append(result)  # looked up now, after the fetch: the reader swaps it
        self._wake_reader()

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    async def _pull(self) -> tuple[int, Any] | None:
        assert self._async_items is not None
        async with self._pulling:
            if self._exhausted:
                return None
            try:
                return self._number(await self._async_items.__anext__())
            except StopAsyncIteration:
                return self._number(_END)

    def _number(self, item: Any) -> tuple[int, Any] | None:
        """Number a pulled item in input order; ``None`` once the input is exhausted."""
        if item is _END:
            self._exhausted = True
            return None
        index, self._next_index = self._next_index, self._next_index + 1
        return index, item


async def _fan_out(
    client: FanOutClient,
    vmids: VMIds,
    details: bool,
    billing_cycle: bool,
    usage_log: bool,
    progress: ProgressHook | None,
    ordered: bool,
) -> AsyncGenerator[VMResult, None]:
    """Fan out over ``vmids`` with a bounded window; yield one result per input item."""
    if client.closed:  # closed between stream_vms() and the first item: pull nothing
        raise ClientClosedError("the HostUpClient was closed; the stream stops")
    window = max(2, client.max_concurrency * _WINDOW_PER_SLOT)
    # Enough workers to fill every request slot (a VM with both calls takes two).
    calls = 2 if details and billing_cycle else 1
    workers = math.ceil(client.max_concurrency / calls)
    total = len(vmids) if isinstance(vmids, Sized) else None
    if total is not None:
        workers = max(1, min(workers, total))
    stats = client.stats
    base = (stats.throttle_wait, stats.retries, stats.rate_limited)
    fetch = functools.partial(_fetch_one, client, details, billing_cycle, usage_log)
    pool = _Workers(vmids, fetch, workers=workers, window=window)
    held: dict[int, VMResult] = {}  # finished out of order, waiting for their turn
    next_out = 0  # next input index to yield when ordered
    done_count = failed = 0
    try:
        while True:
            batch = await pool.next_batch()
            if pool.failure is not None:
                raise pool.failure
            if client.closed:
                raise ClientClosedError("the HostUpClient was closed; the stream stops")
            if not batch:
                return
            done_count += len(batch)
            failed += sum(result.error is not None for result in batch)
            if ordered:
                held.update((result.index, result) for result in batch)
                batch.clear()
                while next_out in held:
                    batch.append(held.pop(next_out))
                    next_out += 1
            if progress is not None:
                progress(
                    BulkProgress(
                        done=done_count,
                        failed=failed,
                        total=total,
                        throttle_wait=stats.throttle_wait - base[0],
                        retries=stats.retries - base[1],
                        rate_limited=stats.rate_limited - base[2],
                    )
                )
            while batch:
                pool.taken()
                yield batch.popleft()  # nothing here keeps a result alive once it is yielded
    finally:
        # Breaking out, aclose() and cancellation all land here: stop what is in flight.
        await pool.stop()


async def _fetch_one(
    client: FanOutClient,
    details: bool,
    billing_cycle: bool,
    usage_log: bool,
    index: int,
    vmid: Any,
) -> VMResult:
    """Fetch what was asked for one VM; a HostUp error becomes the result's ``error``."""
    try:
        vmid = check_vmid(vmid)
        if details and billing_cycle:
            vm, bc = await _both(
                client.get_vm_details(vmid, usage_log=usage_log), client.get_billing_cycle(vmid)
            )
            return VMResult(vmid, index, details=vm, billing_cycle=bc)
        if details:
            vm = await client.get_vm_details(vmid, usage_log=usage_log)
            return VMResult(vmid, index, details=vm)
        return VMResult(vmid, index, billing_cycle=await client.get_billing_cycle(vmid))
    except HostUpError as exc:
        return VMResult(vmid, index, error=exc)


async def _both(
    first: Awaitable[VMDetails], second: Awaitable[BillingCycle]
) -> tuple[VMDetails, BillingCycle]:
    """Run two calls concurrently (the second in a task); if either fails, stop the other."""
    second_task = asyncio.ensure_future(second)
    try:
        return await first, await second_task
    except BaseException:
        second_task.cancel()
        await asyncio.gather(second_task, return_exceptions=True)
        raise
