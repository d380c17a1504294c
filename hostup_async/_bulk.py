"""Streaming fan-out over many vmids: bounded look-ahead, one result per input item."""

from __future__ import annotations

import asyncio
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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._exceptions import ClientClosedError, ConfigurationError, HostUpError
from ._models import BillingCycle, VMDetails
from ._validate import check_vmid

if TYPE_CHECKING:
    from ._client import HostUpClient

__all__ = ["BulkProgress", "ProgressHook", "VMIds", "VMResult", "fetch_vms", "stream_vms"]

#: What the bulk calls accept: any iterable or async iterable of vmids, even an endless one.
VMIds = Iterable[Any] | AsyncIterable[Any]

# Items pulled ahead of the consumer per slot of max_concurrency: enough to keep every
# slot busy while results wait to be taken, small enough that memory stays flat.
_WINDOW_PER_SLOT = 2


@dataclass(frozen=True, slots=True)
class VMResult:
    """The outcome for one input item of a bulk fetch: data, or the error that stopped it."""

    vmid: Any
    """The input item, as given (it may be an invalid vmid)."""
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


@dataclass(frozen=True, slots=True)
class BulkProgress:
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
    client: HostUpClient,
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
    client: HostUpClient,
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


async def _fan_out(
    client: HostUpClient,
    vmids: VMIds,
    details: bool,
    billing_cycle: bool,
    usage_log: bool,
    progress: ProgressHook | None,
    ordered: bool,
) -> AsyncGenerator[VMResult, None]:
    """Fan out over ``vmids`` with a bounded window; yield one result per input item."""
    loop = asyncio.get_running_loop()
    window = max(2, client.max_concurrency * _WINDOW_PER_SLOT)
    total = len(vmids) if isinstance(vmids, Sized) else None
    stats = client.stats
    base = (stats.throttle_wait, stats.retries, stats.rate_limited)
    if isinstance(vmids, AsyncIterable):
        async_items: AsyncIterator[Any] | None = aiter(vmids)
        sync_items: Iterator[Any] = iter(())
    else:
        async_items, sync_items = None, iter(vmids)
    pending: set[asyncio.Task[VMResult]] = set()
    finished: deque[asyncio.Task[VMResult]] = deque()
    held: dict[int, VMResult] = {}  # finished out of order, waiting for their turn
    pull: asyncio.Future[Any] | None = None  # the async source's next item, on its way
    waiter: asyncio.Future[None] | None = None
    next_index = 0  # next input index to pull
    next_out = 0  # next input index to yield when ordered
    done_count = failed = 0
    exhausted = False

    def wake(_: object = None) -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # A done-callback hands each result over: cheaper than asyncio.wait(), which
    # re-registers a callback on every pending task each time round.
    def on_done(task: asyncio.Task[VMResult]) -> None:
        pending.discard(task)
        finished.append(task)
        wake()

    def launch(item: Any) -> None:
        nonlocal next_index
        task = loop.create_task(
            _fetch_one(client, next_index, item, details, billing_cycle, usage_log)
        )
        task.add_done_callback(on_done)
        pending.add(task)
        next_index += 1

    try:
        while True:
            if client.closed:
                raise ClientClosedError("the HostUpClient was closed; the stream stops")
            room = window - len(pending) - len(finished) - len(held)
            if async_items is None:
                while room > 0 and not exhausted:
                    item = next(sync_items, _END)
                    if item is _END:
                        exhausted = True
                    else:
                        launch(item)
                        room -= 1
            else:
                # The async source is awaited on the side, so results that finish meanwhile
                # are handed over at once (a source may even wait for them, like a queue).
                if pull is not None and pull.done():
                    arrived, pull = pull, None
                    try:
                        launch(arrived.result())
                        room -= 1
                    except StopAsyncIteration:
                        exhausted = True
                if pull is None and room > 0 and not exhausted:
                    pull = asyncio.ensure_future(async_items.__anext__())
                    pull.add_done_callback(wake)
            if not finished:
                if not pending and pull is None:
                    return
                waiter = loop.create_future()
                try:
                    await waiter
                finally:
                    waiter = None
                continue
            batch = [task.result() for task in finished]
            finished.clear()
            done_count += len(batch)
            failed += sum(result.error is not None for result in batch)
            if ordered:
                held.update((result.index, result) for result in batch)
                batch = []
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
            for result in batch:
                yield result
    finally:
        # Breaking out, aclose() and cancellation all land here: stop what is in flight.
        stopping: list[asyncio.Future[Any]] = [*pending, *([pull] if pull is not None else [])]
        for future in stopping:
            future.cancel()
        if stopping:
            await asyncio.gather(*stopping, return_exceptions=True)
        for task in finished:  # results never taken: mark their errors as seen
            if not task.cancelled():
                task.exception()


async def _fetch_one(
    client: HostUpClient,
    index: int,
    vmid: Any,
    details: bool,
    billing_cycle: bool,
    usage_log: bool,
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
