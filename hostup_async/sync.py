"""A blocking ``HostUpClient`` for scripts, notebooks, threads and process pools.

```python
from hostup_async.sync import HostUpClient

with HostUpClient() as client:
    vm = client.get_vm_details(10415)
    results = client.fetch_vms(range(1, 101))
```

The same constructor and the same methods as ``hostup_async.HostUpClient``, without
``await``. Underneath, one async client runs on a private event-loop thread, so the rate
limit, the retries, the 429 pauses and the errors are the async client's: every thread that
shares one sync client shares one rate limit. It can be called from a plain script, from
any number of threads at once, from a thread whose own event loop is running (a notebook
cell: the cell waits for the answer), and in a process forked after it was used (the child
starts its own loop thread on first use). It closes itself when garbage-collected or at
interpreter exit; ``close()`` or ``with`` closes it sooner.

Hooks (``on_attempt``, ``on_retry``, ``progress``) run on the private loop thread: keep
them quick, and do not call the client from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import ssl
import weakref
from collections.abc import AsyncGenerator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

import aiohttp

from ._bulk import ProgressHook, VMIds, VMResult
from ._client import HostUpClient as AsyncHostUpClient
from ._constants import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_RATE_LIMIT,
    DEFAULT_TIMEOUT,
)
from ._events import AttemptHook, ClientStats
from ._exceptions import ClientClosedError, ConfigurationError
from ._http.retry import Backoff, RetryBudget
from ._models import BillingCycle, VMDetails
from ._portal import Portal, Runtime
from ._secret import SecretStr

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider
    from redis.asyncio import Redis

__all__ = ["HostUpClient"]


def _build(key: SecretStr | None, options: dict[str, Any]) -> AsyncHostUpClient:
    """Build the async client of a new process (after ``fork()``) from the same options."""
    return AsyncHostUpClient(None if key is None else key.get_secret_value(), **options)


async def _close(client: AsyncHostUpClient) -> None:
    await client.aclose()


async def _open_stream(
    client: AsyncHostUpClient, vmids: VMIds, options: dict[str, Any]
) -> AsyncGenerator[VMResult, None]:
    # stream_vms checks its arguments and opens the session: on the loop, at call time.
    return client.stream_vms(vmids, **options)


async def _rate_now(client: AsyncHostUpClient) -> float | None:
    return client.effective_rate_limit


# Most results one hop to the caller's thread carries: the hop, not the fetch, was what
# held a sync stream back (0.73x the async stream's VMs/s one result at a time).
_BATCH = 64


class _Pull:
    """Takes an async stream's results in batches: at least one, and all that are ready.

    One hop between threads per batch instead of per result. The next result is asked for
    ahead in a task; one not ready yet stays pending for the next batch, and closing
    cancels it before closing the stream.
    """

    def __init__(self, stream: AsyncGenerator[VMResult, None]) -> None:
        self._stream = stream
        self._pending: asyncio.Future[VMResult] | None = None

    def _ask(self) -> asyncio.Future[VMResult]:
        return asyncio.ensure_future(self._stream.__anext__())

    async def batch(self) -> list[VMResult]:
        """Return the next results, at least one; an empty list when the stream has ended."""
        step, self._pending = self._pending or self._ask(), None
        try:
            results = [await step]
        except StopAsyncIteration:
            return []
        while len(results) < _BATCH:
            step = self._ask()
            await asyncio.sleep(0)  # one turn of the loop: a buffered result is taken at once
            if not step.done() or step.exception() is not None:
                self._pending = step  # not ready, or the end or an error: the next batch's
                break
            results.append(step.result())
        return results

    async def close(self) -> None:
        """Stop the request asked ahead, if any, then close the stream."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        await self._stream.aclose()


class HostUpClient:
    """Blocking client for HostUp's VPS API; use it as ``with HostUpClient() as client``.

    Takes the same arguments as ``hostup_async.HostUpClient`` (see there), except
    ``session``: the sync client's session lives on its own loop thread, so passing one is
    a ``ConfigurationError``. Arguments are checked here, before any thread or request.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        rate_limit: float | None = DEFAULT_RATE_LIMIT,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        deadline: float | None = None,
        session: aiohttp.ClientSession | None = None,
        retry_budget: RetryBudget | None = None,
        backoff: Backoff | None = None,
        on_attempt: AttemptHook | None = None,
        on_retry: AttemptHook | None = None,
        user_agent: str | None = None,
        trust_env: bool = False,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        allow_http: bool = False,
        tls: ssl.SSLContext | str | os.PathLike[str] | None = None,
        shared_limit: str | Redis | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if session is not None:
            raise ConfigurationError(
                "session= is for the async client: the sync client runs its own session on its "
                "own event-loop thread (use hostup_async.HostUpClient to bring a session)"
            )
        options: dict[str, Any] = {
            "base_url": base_url,
            "rate_limit": rate_limit,
            "max_concurrency": max_concurrency,
            "timeout": timeout,
            "max_retries": max_retries,
            "max_retry_after": max_retry_after,
            "deadline": deadline,
            "backoff": backoff,
            "retry_budget": retry_budget,
            "on_attempt": on_attempt,
            "on_retry": on_retry,
            "user_agent": user_agent,
            "trust_env": trust_env,
            "max_body_size": max_body_size,
            "allow_http": allow_http,
            "tls": tls,
            "shared_limit": shared_limit,
            "tracer_provider": tracer_provider,
            "meter_provider": meter_provider,
        }
        first = AsyncHostUpClient(api_key, **options)  # every check, before any thread
        key = SecretStr(api_key) if isinstance(api_key, str) else None
        self._portal: Portal[AsyncHostUpClient] = Portal(
            functools.partial(_build, key, options),
            _close,
            first=first,
            name="hostup-async-sync",
        )
        self._first = first
        # Closes the client when it is dropped, or at exit while the loop thread still runs.
        self._finalizer = weakref.finalize(self, self._portal.close)

    def __repr__(self) -> str:
        return f"hostup_async.sync.{self._client!r}"

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "a sync HostUpClient cannot be pickled: create one in each process "
            "(at module level, say), from the same settings"
        )

    def __enter__(self) -> HostUpClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _client(self) -> AsyncHostUpClient:
        """The async client of this process (the first one until a fork has started another)."""
        return self._portal.resource()

    def _runtime(self) -> Runtime[AsyncHostUpClient]:
        return self._portal.runtime()

    def close(self) -> None:
        """Close the session and stop the loop thread; safe to call twice."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has been called; a closed client cannot be used again."""
        return self._portal.closed

    @property
    def base_url(self) -> str:
        """Root URL the endpoint paths are appended to."""
        return self._first.base_url

    @property
    def rate_limit(self) -> float | None:
        """Configured requests per second for the whole client (``None``: none until a 429)."""
        return self._first.rate_limit

    @property
    def max_concurrency(self) -> int:
        """Most requests in flight at once."""
        return self._first.max_concurrency

    @property
    def timeout(self) -> float:
        """Seconds allowed per attempt, unless a call overrides it."""
        return self._first.timeout

    @property
    def max_retries(self) -> int:
        """Retries after a failed first attempt, unless a call overrides it."""
        return self._first.max_retries

    @property
    def max_retry_after(self) -> float:
        """Most seconds a server's retry hint may hold a call, unless a call overrides it."""
        return self._first.max_retry_after

    @property
    def stats(self) -> ClientStats:
        """Running totals of requests, retries, 429s and time throttled, in this process."""
        return self._client.stats

    @property
    def effective_rate_limit(self) -> float | None:
        """Requests per second the client sends at now: ``rate_limit``, or lower after 429s."""
        if self.closed:
            return self.rate_limit
        runtime = self._runtime()
        return runtime.call(_rate_now(runtime.resource))  # the pacer reads its loop's clock

    def get_vm_details(
        self,
        vmid: int,
        *,
        usage_log: bool = True,
        timeout: float | None = None,
        max_retries: int | None = None,
        max_retry_after: float | None = None,
        deadline: float | None = None,
    ) -> VMDetails:
        """Fetch one VM's details (``GET /vm/{vmid}/details``); ``usage_log=False`` skips the log."""
        runtime = self._runtime()
        return runtime.call(
            runtime.resource.get_vm_details(
                vmid,
                usage_log=usage_log,
                timeout=timeout,
                max_retries=max_retries,
                max_retry_after=max_retry_after,
                deadline=deadline,
            )
        )

    def get_billing_cycle(
        self,
        vmid: int,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        max_retry_after: float | None = None,
        deadline: float | None = None,
    ) -> BillingCycle:
        """Fetch one VM's billing cycle and options (``GET /vm/{vmid}/billing-cycle``)."""
        runtime = self._runtime()
        return runtime.call(
            runtime.resource.get_billing_cycle(
                vmid,
                timeout=timeout,
                max_retries=max_retries,
                max_retry_after=max_retry_after,
                deadline=deadline,
            )
        )

    def fetch_vms(
        self,
        vmids: VMIds,
        *,
        details: bool = True,
        billing_cycle: bool = False,
        usage_log: bool = True,
        progress: ProgressHook | None = None,
    ) -> list[VMResult]:
        """Fetch every vmid and return one ``VMResult`` per input item, in input order."""
        runtime = self._runtime()
        return runtime.call(
            runtime.resource.fetch_vms(
                vmids,
                details=details,
                billing_cycle=billing_cycle,
                usage_log=usage_log,
                progress=progress,
            )
        )

    def stream_vms(
        self,
        vmids: VMIds,
        *,
        details: bool = True,
        billing_cycle: bool = False,
        ordered: bool = False,
        usage_log: bool = True,
        progress: ProgressHook | None = None,
    ) -> Iterator[VMResult]:
        """Yield one ``VMResult`` per input vmid, fetching a bounded window ahead of you.

        A plain iterator over the async client's stream: results in completion order (input
        order with ``ordered=True``), failures as results with ``.error``. Leaving the loop
        (``break``, an exception) stops the requests in flight as soon as the iterator is
        dropped; ``close()`` on it, or ``contextlib.closing``, stops them at once. The
        arguments are checked when you call this, before any request.
        """
        runtime = self._runtime()
        options = {
            "details": details,
            "billing_cycle": billing_cycle,
            "ordered": ordered,
            "usage_log": usage_log,
            "progress": progress,
        }
        stream = runtime.call(_open_stream(runtime.resource, vmids, options))
        return _iterate(runtime, stream)


def _iterate(
    runtime: Runtime[AsyncHostUpClient], stream: AsyncGenerator[VMResult, None]
) -> Iterator[VMResult]:
    """Pull the async stream's results across threads; closing this closes the stream."""
    pull = _Pull(stream)
    try:
        while batch := runtime.call(pull.batch()):
            yield from batch
    finally:
        # In a fork child, or once the client is closed, the stream went with its loop.
        if runtime.current:
            with contextlib.suppress(ClientClosedError):
                runtime.call(pull.close())
