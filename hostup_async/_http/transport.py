"""The one request path: each attempt is read once into an ``Outcome``, then paced, judged, reported.

``Transport.get`` reads as its steps: **attempt** (wait for a turn and a slot, exchange,
read the answer once) → **pacer** (tell it what the server said) → **policy** (retry, and
after how long, or end) → **report** (log, hooks, telemetry). A bound on the whole call
(``deadline``) covers every wait in between.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import sys
import time
from collections.abc import Callable
from logging import DEBUG
from typing import TYPE_CHECKING, Protocol, TypeVar

import aiohttp
from yarl import URL  # aiohttp's own URL type (declared in pyproject with aiohttp's bounds)

from .._constants import DECODE_OFF_LOOP_SIZE, DEFAULT_MAX_BODY_SIZE
from .._events import AttemptEvent, AttemptHook, ClientStats
from .._exceptions import (
    ClientClosedError,
    DeadlineExceededError,
    HostUpError,
    RateLimitError,
    RequestTimeoutError,
    RetryBudgetExhaustedError,
    TransportError,
)
from .._pacing import Pacer, PauseTooLong
from .._pacing.pause import pause_spread
from .._secret import Redactor
from .answer import Answer, Outcome, read_body, settle
from .retry import Backoff, RetryBudget

if TYPE_CHECKING:
    from .._telemetry import CallTrace, Telemetry

__all__ = ["Transport", "http_logger", "pacing_logger"]

#: Every attempt at DEBUG; a call that still fails after retrying at WARNING.
http_logger = logging.getLogger("hostup_async.http")
#: A 429 pause and a lowered rate at INFO.
pacing_logger = logging.getLogger("hostup_async.pacing")

T = TypeVar("T")

# The policy's verdict on a success: no retry, no error.
_DONE: tuple[None, None] = (None, None)

# ``asyncio.timeout`` where it turns its cancel into TimeoutError even in a task that was
# already being cancelled (Python 3.11.3+; before, such a task saw CancelledError).
_TIMEOUT = getattr(asyncio, "timeout", None) if sys.version_info >= (3, 11, 3) else None


class _Scope(Protocol):
    """What ``asyncio.timeout`` enters: a timeout whose deadline can be moved."""

    def reschedule(self, when: float | None) -> None: ...

    def expired(self) -> bool: ...


# Distinct per-call timeouts whose aiohttp ClientTimeout is kept; past this the cache is
# cleared, so a caller passing a fresh timeout on every call cannot grow it without bound.
_TIMEOUTS_KEPT = 64


class Transport:
    """Sends GET requests for a client and turns answers into models or HostUp errors."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        headers: dict[str, str] | None,
        secret: str,
        pacer: Pacer,
        max_concurrency: int,
        budget: RetryBudget,
        backoff: Backoff,
        stats: ClientStats,
        on_attempt: AttemptHook | None,
        on_retry: AttemptHook | None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._session = session
        # Request URLs are built from the parsed base URL with a pre-encoded path: parsing
        # and encoding a fresh URL string per request was a few percent of a bulk fetch's
        # CPU, and the paths need no encoding (the vmid in them is a checked int).
        self._base_url = URL(base_url)
        self._base_text = base_url
        self._base_path = self._base_url.raw_path.rstrip("/")
        self._headers = headers
        self._redactor = Redactor(secret)
        self._max_body_size = max_body_size
        self._pacer = pacer
        self._slots = asyncio.Semaphore(max_concurrency)
        self._budget = budget
        self._backoff = backoff
        self._stats = stats
        self._on_attempt = on_attempt
        self._on_retry = on_retry
        self._telemetry = telemetry
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        # Send permits granted to calls that were cancelled (or ran out of time) before
        # they could use them: the next call sends in one instead of asking the pacer, so
        # a permit (a shared slot already logged in Redis) is never lost.
        self._spare: collections.deque[float] = collections.deque()
        # Calls waiting for a turn from the pacer: with its rate, how long a new one waits.
        self._waiting = 0
        self._loop = asyncio.get_running_loop()
        #: Set when the client closes; attempts after that raise ClientClosedError.
        self.closed = False
        # Done when the client closes: wakes calls sleeping in a backoff or a 429 pause.
        self._closing: asyncio.Future[None] = self._loop.create_future()
        # The timeouts of the calls waiting for a turn in their own task (close ends them).
        self._turns: set[_Scope] = set()

    async def get(
        self,
        path: str,
        decode: Callable[[bytes], T],
        *,
        timeout: float,
        max_retries: int,
        max_retry_after: float,
        deadline: float | None = None,
        operation: str = "get",
        vmid: int | None = None,
    ) -> T:
        """GET ``path`` and decode the answer, retrying what is worth retrying.

        No wait the server asks for (a 429's hint, or the client-wide pause it caused) is
        sat out beyond ``max_retry_after`` seconds: such a call ends in ``RateLimitError``.
        With a ``deadline`` (seconds) the whole call, every wait and retry included, ends
        by then with ``DeadlineExceededError``, at once when a wait could not end in time.
        """
        call = _Call(path, vmid, timeout, max_retry_after, deadline, self._loop)
        telemetry = self._telemetry
        if telemetry is not None and (telemetry.live or telemetry.notice()):
            call.trace = telemetry.start_call(operation, vmid)
        try:
            while True:
                call.attempt += 1
                outcome = await self._attempt(call, decode)  # attempt
                if outcome.error is None and call.attempt == 1:
                    # The common case, each step inline (no method call more on the hot
                    # path): an accepted answer for the pacer, a refund for the budget.
                    self._pacer.on_accepted(outcome.sent_at, outcome.quota_wait)  # pacer
                    if telemetry is not None and outcome.sent_at >= telemetry.rate_due:
                        telemetry.saw_rate(outcome.sent_at, self._pacer.rate)
                    self._budget.on_success(0)  # policy
                    if self._on_attempt is not None or http_logger.isEnabledFor(DEBUG):
                        self._report(call, outcome, None, None)  # report
                    if call.trace is not None:
                        call.trace.end(None)
                    return outcome.result  # type: ignore[return-value]
                self._pace(call, outcome)  # pacer
                retry_in, error = self._judge(call, outcome, max_retries)  # policy
                self._report(call, outcome, retry_in, error)  # report
                if error is None:
                    if call.trace is not None:
                        call.trace.end(None)
                    return outcome.result  # type: ignore[return-value]
                if retry_in is None:
                    raise error
                await self._nap(retry_in)
        except BaseException as exc:
            if call.trace is not None:
                call.trace.end(exc)
            raise

    def close(self) -> None:
        """Refuse new attempts and wake the calls that are waiting, so they end at once."""
        self.closed = True
        if not self._closing.done():
            self._closing.set_result(None)
        now = self._loop.time()
        for scope in self._turns:
            if not scope.expired():  # one already expiring (its deadline) cannot be moved
                scope.reschedule(now)  # their wait for a turn times out at once

    # -- attempt ---------------------------------------------------------------------------

    async def _attempt(self, call: _Call, decode: Callable[[bytes], T]) -> Outcome[T]:
        """Wait for a turn and a slot, make one exchange, and read the answer once."""
        slots = self._slots
        if call.until is None and self._pacer.paused_for() <= 0:
            # The common case inline (no coroutine more on the hot path): a slot (no
            # deadline bounds the wait for one), then a permit at once.
            await slots.acquire()
            sent_at = self._spare.popleft() if self._spare else self._pacer.try_acquire()
            if sent_at is None:
                slots.release()
                sent_at = await self._turn_then_slot(call)
        else:
            sent_at = await self._admit(call)
        try:
            path = call.path
            if self.closed or self._session.closed:
                raise self._closed_error(path)
            timeout = call.timeout
            bounded = False  # whether the deadline, not the timeout, bounds this attempt
            if call.until is not None:
                left = call.until - self._loop.time()
                if left <= 0:
                    raise call.out_of_time("no time was left to send it")
                if left < timeout:
                    timeout, bounded = left, True
            self._stats.requests += 1
            call.started = time.perf_counter()  # latency excludes the waits
            trace = call.trace
            if trace is not None:
                trace.start_attempt(call.attempt, path, bool(self._session.trace_configs))
            failure: HostUpError | None = None
            try:
                async with self._session.get(
                    self._base_url.with_path(self._base_path + path, encoded=True),
                    headers=self._headers,
                    timeout=self._client_timeout(timeout),
                    allow_redirects=False,
                    raise_for_status=False,  # a caller's session may say otherwise
                ) as response:
                    body = await read_body(response, self._max_body_size, f"GET {path}")
                    answer = Answer(response.status, response.headers, body, sent_at)
            except HostUpError as exc:
                failure = exc  # the body was too large
            except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
                failure = self._failure(call, exc, timeout, bounded)
            except RuntimeError as exc:
                if not (self.closed or self._session.closed):
                    raise
                failure = self._failure(call, exc, timeout, bounded)
            finally:
                if trace is not None:
                    trace.exchanged()  # aiohttp's instrumentation was told not to trace it
            if failure is not None:
                # Made outside the except blocks, so the aiohttp error is not kept as
                # __context__: its request_info holds the request headers, key included.
                outcome: Outcome[T] = Outcome(
                    sent_at, error=failure, retryable=isinstance(failure, TransportError)
                )
            else:
                if answer.status == 429:
                    self._stats.rate_limited += 1
                outcome = (
                    settle(answer, decode, self._redactor, self._base_text)
                    if len(body) < DECODE_OFF_LOOP_SIZE
                    # A large body's decode must not stall the loop: a worker thread reads it.
                    else await asyncio.to_thread(
                        settle, answer, decode, self._redactor, self._base_text
                    )
                )
            if trace is not None:
                trace.end_attempt(outcome, time.perf_counter() - call.started)
            return outcome
        finally:
            slots.release()

    async def _admit(self, call: _Call) -> float:
        """Wait out a pause, then for a send permit and a slot; return the send time, slot held."""
        if self._pacer.paused_for() > 0:
            await self._sit_out_pause(call)  # holding no slot
        await self._take_slot(call)
        sent_at = self._spare.popleft() if self._spare else self._pacer.try_acquire()
        if sent_at is not None:
            return sent_at  # the common case: a slot and a permit at once
        self._slots.release()
        return await self._turn_then_slot(call)

    async def _turn_then_slot(self, call: _Call) -> float:
        """Wait for the turn holding no slot, then take one; return the send time, slot held.

        Waiting calls so leave the slots to calls that can send.
        """
        sent_at = await self._wait_for_turn(call)
        try:
            await self._take_slot(call)
        except BaseException:
            self._spare.append(sent_at)  # the permit goes to the next call
            raise
        return sent_at

    async def _take_slot(self, call: _Call) -> None:
        """Wait for a concurrency slot, within the call's deadline."""
        left = call.left()
        if left is None or not self._slots.locked():
            await self._slots.acquire()  # does not suspend when a slot is free
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), left)
        except asyncio.TimeoutError:
            raise call.out_of_time("no connection slot came free in time") from None

    async def _wait_for_turn(self, call: _Call) -> float:
        """Wait for the rate limit and any 429 pause; return the pacer's time of sending.

        The permit a waiter was granted in the very turn it was cancelled (or closed, or
        ran out of time) is kept for the next call, never dropped.
        """
        left = call.left()
        if left is not None:
            rate = self._pacer.rate
            ahead = self._waiting / rate if rate else 0.0
            if ahead > left:
                raise call.out_of_time(
                    f"{self._waiting} calls were waiting for the rate limit "
                    f"({rate:g} req/s), about {ahead:.1f} s"
                )
        asked = time.perf_counter()
        self._waiting += 1
        try:
            if _TIMEOUT is not None:
                return await self._turn_in_place(call, left)
            return await self._turn_in_task(call, left)
        except PauseTooLong as exc:
            raise self._pause_error(call, exc.seconds) from None
        finally:
            self._waiting -= 1
            self._waited(call, "rate_limit", time.perf_counter() - asked)

    async def _turn_in_place(self, call: _Call, left: float | None) -> float:
        """The pacer's turn, waited in the caller's task (Python 3.11.3+).

        A task of its own and ``asyncio.wait`` cost about 80,000 instructions more per
        waiting call (callgrind). Closing the client or the deadline ends the wait as a
        timeout does (``close`` moves each waiter's timeout to now); a permit is never lost
        on the way, since a pacer gives one only as ``acquire`` returns.
        """
        assert _TIMEOUT is not None
        if self.closed:
            # Closed before this wait began (the call was queued for a slot, or retrying):
            # no close() is left to end it, and the turn may be far off.
            raise self._closed_error(call.path)
        scope = _TIMEOUT(left)
        try:
            async with scope:
                self._turns.add(scope)
                try:
                    return await self._pacer.acquire(call.max_pause)
                finally:
                    self._turns.discard(scope)
        except TimeoutError:
            if not scope.expired():
                raise  # not ours: from inside the pacer
            if self.closed:
                raise self._closed_error(call.path) from None
            raise call.out_of_time("its turn under the rate limit did not come in time") from None

    async def _turn_in_task(self, call: _Call, left: float | None) -> float:
        """The pacer's turn, waited in a task of its own beside the client's closing (< 3.11.3)."""
        turn = asyncio.ensure_future(self._pacer.acquire(call.max_pause))
        try:
            await asyncio.wait(
                (turn, self._closing), timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
        except BaseException:
            # Cancelled: a permit granted in this very turn goes to the next call.
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self._spare.append(turn.result())
            raise
        finally:
            if not turn.done():
                turn.cancel()  # closed or out of time: no waiter is left queued in the pacer
        if not turn.done() or turn.cancelled():
            if self.closed:
                raise self._closed_error(call.path)
            raise call.out_of_time("its turn under the rate limit did not come in time")
        return turn.result()

    async def _sit_out_pause(self, call: _Call) -> None:
        """Wait out a 429 pause before taking a slot, so paused calls hold none."""
        asked = time.perf_counter()
        try:
            while (left := self._pacer.paused_for()) > 0:
                if left > call.max_pause:
                    raise self._pause_error(call, left)
                budget = call.left()
                if budget is not None and left > budget:
                    raise call.out_of_time(f"the client is paused {left:.1f} s more after a 429")
                # Rechecked every second at most (a refusal may extend the pause); each
                # call wakes at its own point a little after it, never before.
                await self._nap(min(left, 1.0) + pause_spread(left) * random.random())
                if self.closed:
                    raise self._closed_error(call.path)
        finally:
            self._waited(call, "pause", time.perf_counter() - asked)

    def _waited(self, call: _Call, reason: str, seconds: float) -> None:
        """Count time a call waited before an attempt: for the rate limit, or out a pause."""
        self._stats.throttle_wait += seconds
        if self._telemetry is not None:
            self._telemetry.waited(reason, seconds)
            if call.trace is not None:
                call.trace.waited(reason, seconds)

    def _pause_error(self, call: _Call, left: float) -> RateLimitError:
        """Build the error for a call that will not wait as long as the server asked."""
        return RateLimitError(
            f"GET {call.path} not sent: the server asked for a wait of {left:.0f} s more after "
            f"a 429, longer than max_retry_after ({call.max_pause:g} s)",
            status=429,
            retry_after=left,
        )

    def _failure(self, call: _Call, exc: Exception, timeout: float, bounded: bool) -> HostUpError:
        """Map what aiohttp raised during an exchange to the HostUp error it means."""
        path = call.path
        if isinstance(exc, asyncio.TimeoutError):
            if bounded:
                return call.out_of_time("its last attempt ran into the deadline")
            return RequestTimeoutError(f"GET {path} took longer than its {timeout:g} s timeout")
        if self.closed or self._session.closed:
            # Closing the client mid-request surfaces from aiohttp as a connection error
            # or a RuntimeError("Session is closed"): say what really happened.
            return self._closed_error(path)
        text = self._redactor.text(str(exc))[:500]
        if isinstance(exc, aiohttp.ClientPayloadError):
            return TransportError(f"GET {path}: the response body was cut short ({text})")
        return TransportError(f"GET {path} failed: {text or type(exc).__name__}")

    # -- pacer -----------------------------------------------------------------------------

    def _pace(self, call: _Call, outcome: Outcome[T]) -> None:
        """Tell the pacer what the server said: a 429 paces the whole client."""
        pacer = self._pacer
        if outcome.status == 429:
            before = pacer.rate
            pacer.on_rate_limited(outcome.sent_at, outcome.server_wait)
            self._paced(call, outcome, before)
        elif outcome.status is not None:
            pacer.on_accepted(outcome.sent_at, outcome.quota_wait)
            telemetry = self._telemetry
            if telemetry is not None and outcome.sent_at >= telemetry.rate_due:
                telemetry.saw_rate(outcome.sent_at, pacer.rate)

    def _paced(self, call: _Call, outcome: Outcome[T], before: float | None) -> None:
        """Log and count what a 429 did to the client: its pause and a lowered rate."""
        pause = self._pacer.paused_for()
        rate = self._pacer.rate
        if self._telemetry is not None:
            self._telemetry.rate_limited()
            self._telemetry.saw_rate(outcome.sent_at, rate)
            if call.trace is not None:
                call.trace.rate_limited(pause)
        if pacing_logger.isEnabledFor(logging.INFO):
            facts = call.facts(status=429, request_id=outcome.request_id, wait=round(pause, 3))
            pacing_logger.info(
                "429 for GET %s: the client pauses %.2f s (the server asked for %s)",
                call.path,
                pause,
                "no wait" if outcome.server_wait is None else f"{outcome.server_wait:g} s",
                extra=facts,
            )
            if rate is not None and before is not None and rate < before:
                pacing_logger.info(
                    "rate lowered from %.1f to %.1f req/s after a 429",
                    before,
                    rate,
                    extra={**facts, "rate": round(rate, 3), "previous_rate": round(before, 3)},
                )

    # -- policy ----------------------------------------------------------------------------

    def _judge(
        self, call: _Call, outcome: Outcome[T], max_retries: int
    ) -> tuple[float | None, HostUpError | None]:
        """Decide after an attempt: retry in how many seconds, and the error it ended in.

        ``(None, None)``: done. ``(s, error)``: retry in ``s`` seconds. ``(None, error)``:
        end with ``error``. Spends the retry budget, and refunds it on success.
        """
        error = outcome.error
        if error is None:
            self._budget.on_success(call.spent)
            return _DONE
        if not outcome.retryable or call.attempt > max_retries:
            return None, error
        wait = outcome.server_wait
        if wait is not None and wait > call.max_pause:
            return None, error  # asked to wait longer than the caller allows: end it now
        retry_in = self._backoff.delay(call.attempt, wait)
        left = call.left()
        if left is not None and retry_in >= left:
            return None, call.out_of_time(
                f"its retry was due in {retry_in:.2f} s, after the deadline", last_error=error
            )
        cost = (
            self._budget.timeout_cost
            if isinstance(error, RequestTimeoutError)
            else self._budget.retry_cost
        )
        if not self._budget.try_spend(cost):
            return None, RetryBudgetExhaustedError(
                f"retries suspended: too many recent calls failed; the last attempt failed with: {error}",
                last_error=error,
            )
        call.spent += cost
        return retry_in, error

    async def _nap(self, seconds: float) -> None:
        """Sleep ``seconds`` before a retry, or less if the client closes meanwhile."""
        await asyncio.wait((self._closing,), timeout=seconds)

    # -- report ----------------------------------------------------------------------------

    def _report(
        self,
        call: _Call,
        outcome: Outcome[T],
        retry_in: float | None,
        final: HostUpError | None,
    ) -> None:
        """Count the attempt, log it, call the caller's hooks and record it in telemetry."""
        attempt = call.attempt
        if attempt > 1:
            self._stats.retries += 1
        error = outcome.error
        if retry_in is not None and self._telemetry is not None:
            self._telemetry.retried(error)
        hooks = self._on_attempt is not None or (
            retry_in is not None and self._on_retry is not None
        )
        # Retried, or stopped by the policy itself (budget, deadline): worth a warning.
        gave_up = retry_in is None and final is not None and (attempt > 1 or final is not error)
        if not (hooks or gave_up or http_logger.isEnabledFor(DEBUG)):
            return
        elapsed = time.perf_counter() - call.started
        status = outcome.status
        if http_logger.isEnabledFor(DEBUG):
            http_logger.debug(
                "GET %s -> %s in %.1f ms (attempt %d, request_id=%s)%s",
                call.path,
                " ".join(
                    part
                    for part in (
                        str(status) if status is not None else None,
                        type(error).__name__ if error is not None else None,
                    )
                    if part
                ),
                elapsed * 1000,
                attempt,
                outcome.request_id,
                f", retrying in {retry_in:.2f} s" if retry_in is not None else "",
                extra=call.facts(
                    status=status,
                    request_id=outcome.request_id,
                    error_type=type(error).__name__ if error is not None else None,
                    elapsed=round(elapsed, 6),
                    retry_in=retry_in,
                ),
            )
        if gave_up and http_logger.isEnabledFor(logging.WARNING):
            http_logger.warning(
                "GET %s failed after %d attempts: %s",
                call.path,
                attempt,
                final,
                extra=call.facts(
                    status=status,
                    request_id=outcome.request_id,
                    error_type=type(final).__name__,
                ),
            )
        if hooks:
            event = AttemptEvent(
                "GET", call.path, attempt, status, error, elapsed, outcome.request_id, retry_in
            )
            if self._on_attempt is not None:
                self._on_attempt(event)
            if retry_in is not None and self._on_retry is not None:
                self._on_retry(event)

    # -- helpers ---------------------------------------------------------------------------

    def _closed_error(self, path: str) -> ClientClosedError:
        """Build the error for a request the closed client (or session) can no longer make."""
        what = "the HostUpClient" if self.closed else "the aiohttp session"
        return ClientClosedError(f"GET {path} stopped: {what} was closed")

    def _client_timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        """Return the aiohttp timeout for ``seconds``, built once per value (it is on the hot path)."""
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            if len(self._timeouts) >= _TIMEOUTS_KEPT:
                self._timeouts.clear()
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout


class _Call:
    """One call's state across its attempts: where it is, what it spent, and its deadline."""

    __slots__ = (
        "attempt",
        "deadline",
        "loop",
        "max_pause",
        "path",
        "spent",
        "started",
        "timeout",
        "trace",
        "until",
        "vmid",
    )

    def __init__(
        self,
        path: str,
        vmid: int | None,
        timeout: float,
        max_pause: float,
        deadline: float | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.path = path
        self.vmid = vmid
        self.timeout = timeout
        self.max_pause = max_pause
        self.deadline = deadline
        self.loop = loop
        #: The loop time the deadline falls at (``None``: the call has none).
        self.until = None if deadline is None else loop.time() + deadline
        self.attempt = 0
        self.spent = 0  # retry budget tokens this call's retries took
        self.started = 0.0
        self.trace: CallTrace | None = None

    def left(self) -> float | None:
        """Seconds left before the deadline (``None``: the call has none)."""
        return None if self.until is None else self.until - self.loop.time()

    def out_of_time(
        self, why: str, *, last_error: HostUpError | None = None
    ) -> DeadlineExceededError:
        """Build the error that ends this call at its deadline."""
        return DeadlineExceededError(
            f"GET {self.path} ended at its {self.deadline:g} s deadline: {why}",
            deadline=self.deadline or 0.0,
            last_error=last_error,
        )

    def facts(self, **more: object) -> dict[str, object]:
        """The fields of a log record about this call, for JSON formatters (``extra=``)."""
        return {
            "method": "GET",
            "path": self.path,
            "vmid": self.vmid,
            "attempt": self.attempt,
            **more,
        }
