"""A private event loop on a daemon thread, where synchronous callers run one async resource.

The sync client's engine (the pattern of anyio's blocking portal): one event loop per process,
started on first use, runs every coroutine that callers from any thread submit, and waits for
none of them itself. After ``fork()`` the child finds the parent's loop thread gone (only the
forking thread survives a fork): it starts its own, with a new resource, the first time it is
used, and leaves the parent's untouched. Closing runs the resource's own close on the loop
thread, then stops the loop and joins the thread, so nothing is left for finalizers.
"""

from __future__ import annotations

import _thread
import asyncio
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from ._exceptions import ClientClosedError

__all__ = ["Portal", "Runtime"]

R = TypeVar("R")
T = TypeVar("T")

# Seconds a waiting caller sleeps between looks at signals (Ctrl-C).
_SIGNAL_CHECK = 0.05

# A forked child must never touch its parent's loop: the epoll instance behind it is shared
# with the parent, so unregistering a socket there would unregister the parent's. The child
# keeps those objects referenced instead, so no finalizer of theirs ever runs in it.
_ABANDONED: list[object] = []

# Every portal with a lock, so a fork can hand the child fresh ones: a lock held by a thread
# that does not exist in the child would stay held forever.
_PORTALS: weakref.WeakSet[Portal[Any]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for portal in list(_PORTALS):
        portal._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _Call(Generic[T]):
    """One coroutine submitted from another thread: started on the loop, waited for on a lock.

    Leaner than ``run_coroutine_threadsafe``'s chained futures and condition: a bare lock
    the loop releases when the task is done is the whole hand-over, on every sync call.
    """

    __slots__ = ("_coro", "done", "task")

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self._coro = coro
        self.done = _thread.allocate_lock()
        self.done.acquire()
        self.task: asyncio.Task[T] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop: run the coroutine as a task, and release ``done`` when it ends."""
        self.task = loop.create_task(self._coro)
        self.task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[T]) -> None:
        self.done.release()

    def result(self) -> T:
        """The task's result, or its exception, once ``done`` has been released."""
        if self.task is None:  # pragma: no cover - done is released only by the task's end
            raise RuntimeError("the call never started")
        return self.task.result()

    def cancel(self) -> None:
        """On the loop: cancel the task (the caller stopped waiting)."""
        if self.task is not None:
            self.task.cancel()


class Runtime(Generic[R]):
    """One process's loop, the thread running it, and the resource living on it."""

    def __init__(self, resource: R, name: str) -> None:
        self.resource = resource
        """The object whose coroutines run on this loop."""
        self.pid = os.getpid()
        """The process the loop runs in."""
        self.loop = asyncio.new_event_loop()
        """The private event loop."""
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), name=name, daemon=True)
        """The daemon thread running the loop."""
        self._submitting = threading.Lock()
        self._stopped = False
        self.thread.start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            try:
                # As asyncio.run() ends: a call that slipped in while closing is cancelled.
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    @property
    def current(self) -> bool:
        """Whether this runtime belongs to this process and its loop still runs."""
        return self.pid == os.getpid() and self.thread.is_alive()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (or its exception)."""
        if threading.get_ident() == self.thread.ident:
            coro.close()
            raise RuntimeError(
                "a sync HostUpClient was called from its own event loop thread (from a hook "
                "such as progress= or on_attempt=); hooks must not call the client"
            )
        call = _Call(coro)
        with self._submitting:
            if self._stopped:
                coro.close()
                raise ClientClosedError("this HostUpClient is closed; create a new one")
            # Queued before any stop of the loop, so the task exists before the loop ends.
            self.loop.call_soon_threadsafe(call.start, self.loop)
        try:
            # In slices: a Ctrl-C the kernel hands another thread of the process only sets
            # Python's flag, which this thread acts on between waits, never inside one.
            while not call.done.acquire(timeout=_SIGNAL_CHECK):
                pass
        except BaseException:
            # Ctrl-C while waiting: the call stops too, rather than running on unseen.
            if not self._stopped:
                self.loop.call_soon_threadsafe(call.cancel)
            raise
        try:
            return call.result()
        except asyncio.CancelledError:
            if self._stopped:
                raise ClientClosedError("this HostUpClient was closed during the call") from None
            raise

    def stop(self, close: Callable[[R], Awaitable[None]]) -> None:
        """Run ``close(resource)`` on the loop, then stop the loop and wait for its thread."""
        if threading.get_ident() == self.thread.ident:
            raise RuntimeError("a sync HostUpClient cannot be closed from its own hooks")

        async def closing() -> None:
            await close(self.resource)

        try:
            asyncio.run_coroutine_threadsafe(closing(), self.loop).result()
        finally:
            with self._submitting:
                self._stopped = True
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()


class Portal(Generic[R]):
    """Hands callers in any thread the current process's ``Runtime``, starting it when needed."""

    def __init__(
        self,
        make: Callable[[], R],
        close: Callable[[R], Awaitable[None]],
        *,
        first: R,
        name: str,
    ) -> None:
        """``make`` builds a resource for a new process; ``first`` is this process's."""
        self._make = make
        self._close = close
        self._first: R | None = first
        self._first_made = first
        self._first_pid = os.getpid()
        self._name = name
        self._lock = threading.Lock()
        self._runtime: Runtime[R] | None = None
        self.closed = False
        """Whether ``close()`` was called; a closed portal runs nothing."""
        _PORTALS.add(self)

    def runtime(self) -> Runtime[R]:
        """Return this process's runtime, starting its loop thread on first use."""
        runtime = self._runtime
        if runtime is not None and runtime.pid == os.getpid() and not self.closed:
            return runtime  # the hot path: no lock
        with self._lock:
            if self.closed:
                raise ClientClosedError("this HostUpClient is closed; create a new one")
            runtime = self._runtime
            if runtime is not None and runtime.pid == os.getpid():
                return runtime
            if runtime is not None:
                _ABANDONED.append(runtime)  # the parent's, inherited through fork()
            self._runtime = runtime = Runtime(self._resource(), self._name)
            return runtime

    def resource(self) -> R:
        """Return the resource of this process once its loop runs, else the first one."""
        runtime = self._runtime
        if runtime is not None and runtime.current:
            return runtime.resource
        return self._first_made

    def _resource(self) -> R:
        first, self._first = self._first, None
        if first is not None and self._first_pid == os.getpid():
            return first
        return self._make()

    def close(self) -> None:
        """Close this process's resource and stop its loop thread; safe to call twice."""
        with self._lock:
            self.closed = True
            runtime, self._runtime = self._runtime, None
            self._first = None
        if runtime is not None and runtime.pid == os.getpid():
            runtime.stop(self._close)
        elif runtime is not None:
            _ABANDONED.append(runtime)
