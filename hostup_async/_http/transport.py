"""The one request path: concurrency cap, rate limit, timeout, retries, error mapping, decoding."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from logging import DEBUG
from typing import TypeVar

import aiohttp
from yarl import URL  # aiohttp's own URL type (declared in pyproject with aiohttp's bounds)

from .._constants import DECODE_OFF_LOOP_SIZE, DEFAULT_MAX_BODY_SIZE
from .._events import AttemptEvent, AttemptHook, ClientStats
from .._exceptions import (
    ClientClosedError,
    HostUpError,
    RateLimitError,
    RequestTimeoutError,
    RetryBudgetExhaustedError,
    TransportError,
)
from .._models import sniff_status
from .._pacing import Pacer, PauseTooLong
from .._pacing.pause import pause_spread
from .._secret import Redactor
from .answer import Answer as _Answer
from .answer import interpret, read_body
from .retry import Backoff, RetryBudget, is_retryable, quota_spent_wait, server_wait_of

__all__ = ["Transport", "logger"]

#: The SDK's logger; every attempt is logged here at DEBUG, never with the API key.
logger = logging.getLogger("hostup_async")

T = TypeVar("T")

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
    ) -> None:
        self._session = session
        # Request URLs are built from the parsed base URL with a pre-encoded path: parsing
        # and encoding a fresh URL string per request was a few percent of a bulk fetch's
        # CPU, and the paths need no encoding (the vmid in them is a checked int).
        self._base_url = URL(base_url)
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
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        #: Set when the client closes; attempts after that raise ClientClosedError.
        self.closed = False
        # Done when the client closes: wakes calls sleeping in a backoff or a 429 pause.
        self._closing: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def get(
        self,
        path: str,
        decode: Callable[[bytes, int], T],
        *,
        timeout: float,
        max_retries: int,
        max_retry_after: float,
    ) -> T:
        """GET ``path`` and decode the answer, retrying what is worth retrying.

        No wait the server asks for (a 429's hint, or the client-wide pause it caused) is
        sat out beyond ``max_retry_after`` seconds: such a call ends in ``RateLimitError``.
        """
        spent = 0
        attempt = 0
        while True:
            attempt += 1
            answer: _Answer | None = None
            if self._pacer.paused_for() > 0:
                await self._sit_out_pause(path, max_retry_after)  # holding no slot
            # The slot is held for one attempt only: backoff sleeps below let others run.
            # (acquire/release, not `async with`: two coroutines fewer on the hot path.)
            await self._slots.acquire()
            try:
                sent_at = self._pacer.try_acquire()
                if sent_at is None:
                    sent_at = await self._wait_for_turn(path, max_retry_after)
                self._stats.requests += 1
                started = time.perf_counter()  # latency excludes the wait for the limiter
                try:
                    answer = await self._send(path, timeout, sent_at)
                    result = (
                        self._interpret(answer, decode)
                        if len(answer.body) < DECODE_OFF_LOOP_SIZE
                        else await self._interpret_off_loop(answer, decode)
                    )
                except HostUpError as exc:
                    error: HostUpError | None = exc
                else:
                    error = None
            finally:
                self._slots.release()
            if error is None:
                self._pacer.on_accepted(
                    sent_at, quota_spent_wait(answer.headers) if answer is not None else None
                )
                self._budget.on_success(spent)
                if attempt > 1 or self._on_attempt is not None or logger.isEnabledFor(DEBUG):
                    request_id = getattr(result, "request_id", None)
                    self._report(
                        path, attempt=attempt, answer=answer, started=started, request_id=request_id
                    )
                return result

            if answer is not None and answer.status == 429 and isinstance(error, RateLimitError):
                # Every 429 paces the whole client (pause, adaptive rate), retried or not.
                self._pacer.on_rate_limited(answer.sent_at, error.retry_after)
                if error.retry_after is not None and error.retry_after > max_retry_after:
                    self._report(path, attempt=attempt, answer=answer, started=started, error=error)
                    raise error  # asked to wait longer than the caller allows: end it now
            elif answer is not None:
                self._pacer.on_accepted(answer.sent_at, quota_spent_wait(answer.headers))
            body_is_json = answer is None or sniff_status(answer.body) is not None
            retry_in: float | None = None
            if attempt <= max_retries and is_retryable(error, body_is_json):
                server_wait = server_wait_of(error, answer.headers if answer else None)
                retry_in = self._backoff.delay(attempt, server_wait)
                cost = (
                    self._budget.timeout_cost
                    if isinstance(error, RequestTimeoutError)
                    else self._budget.retry_cost
                )
                if not self._budget.try_spend(cost):
                    self._report(path, attempt=attempt, answer=answer, started=started, error=error)
                    raise RetryBudgetExhaustedError(
                        "retries suspended: too many recent calls failed; "
                        f"the last attempt failed with: {error}",
                        last_error=error,
                    ) from error
                spent += cost
            self._report(
                path,
                attempt=attempt,
                answer=answer,
                started=started,
                error=error,
                retry_in=retry_in,
            )
            if retry_in is None:
                raise error
            await self._nap(retry_in)

    def close(self) -> None:
        """Refuse new attempts and wake the calls that are waiting, so they end at once."""
        self.closed = True
        if not self._closing.done():
            self._closing.set_result(None)

    async def _nap(self, seconds: float) -> None:
        """Sleep ``seconds`` before a retry, or less if the client closes meanwhile."""
        await asyncio.wait((self._closing,), timeout=seconds)

    async def _wait_for_turn(self, path: str, max_pause: float) -> float:
        """Wait for the rate limit and any 429 pause; return the pacer's time of sending."""
        asked = time.perf_counter()
        turn = asyncio.ensure_future(self._pacer.acquire(max_pause))
        try:
            await asyncio.wait((turn, self._closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not turn.done():
                turn.cancel()
        self._stats.throttle_wait += time.perf_counter() - asked
        if not turn.done() or turn.cancelled():
            raise self._closed_error(path)
        refusal = turn.exception()
        if isinstance(refusal, PauseTooLong):
            raise self._pause_error(path, refusal.seconds, max_pause)
        return turn.result()

    async def _sit_out_pause(self, path: str, max_pause: float) -> None:
        """Wait out a 429 pause before taking a slot, so paused calls hold none."""
        asked = time.perf_counter()
        try:
            while (left := self._pacer.paused_for()) > 0:
                if left > max_pause:
                    raise self._pause_error(path, left, max_pause)
                # Rechecked every second at most (a refusal may extend the pause); each
                # call wakes at its own point a little after it, never before.
                await self._nap(min(left, 1.0) + pause_spread(left) * random.random())
                if self.closed:
                    raise self._closed_error(path)
        finally:
            self._stats.throttle_wait += time.perf_counter() - asked

    def _pause_error(self, path: str, left: float, max_pause: float) -> RateLimitError:
        """Build the error for a call that will not wait as long as the server asked."""
        return RateLimitError(
            f"GET {path} not sent: the server asked for a wait of {left:.0f} s more after "
            f"a 429, longer than max_retry_after ({max_pause:g} s)",
            status=429,
            retry_after=left,
        )

    async def _send(self, path: str, timeout: float, sent_at: float) -> _Answer:
        """Make one HTTP exchange and read the whole body; map transport errors."""
        url = self._base_url.with_path(self._base_path + path, encoded=True)
        if self.closed or self._session.closed:
            raise self._closed_error(path)
        failure: HostUpError
        try:
            async with self._session.get(
                url,
                headers=self._headers,
                timeout=self._client_timeout(timeout),
                allow_redirects=False,
                raise_for_status=False,  # a caller's session may say otherwise; we map statuses
            ) as response:
                body = await read_body(response, self._max_body_size, f"GET {path}")
                return _Answer(response.status, response.headers, body, sent_at)
        except asyncio.TimeoutError:
            failure = RequestTimeoutError(f"GET {path} took longer than its {timeout:g} s timeout")
        except aiohttp.ClientPayloadError as exc:
            text = self._redactor.text(str(exc))[:500]
            failure = TransportError(f"GET {path}: the response body was cut short ({text})")
        except (aiohttp.ClientError, RuntimeError) as exc:
            # Closing the client mid-request surfaces from aiohttp as a connection error
            # or a RuntimeError("Session is closed"): say what really happened.
            if self.closed or self._session.closed:
                failure = self._closed_error(path)
            elif isinstance(exc, aiohttp.ClientError):
                text = self._redactor.text(str(exc))[:500] or type(exc).__name__
                failure = TransportError(f"GET {path} failed: {text}")
            else:
                raise
        # Raised here, outside the except blocks, so the aiohttp error is not kept as
        # __context__: its request_info holds the request headers, API key included.
        raise failure

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

    def _interpret(self, answer: _Answer, decode: Callable[[bytes, int], T]) -> T:
        """Turn an answer into a result or a HostUp error (see ``_answer.interpret``)."""
        if answer.status == 429:
            self._stats.rate_limited += 1
        return interpret(answer, decode, self._redactor)

    async def _interpret_off_loop(self, answer: _Answer, decode: Callable[[bytes, int], T]) -> T:
        """Like ``_interpret``, in a worker thread: a large body's decode must not stall the loop."""
        if answer.status == 429:
            self._stats.rate_limited += 1
        return await asyncio.to_thread(interpret, answer, decode, self._redactor)

    def _report(
        self,
        path: str,
        *,
        attempt: int,
        answer: _Answer | None,
        started: float,
        error: HostUpError | None = None,
        request_id: str | None = None,
        retry_in: float | None = None,
    ) -> None:
        """Log the attempt at DEBUG, count it, and call the caller's hooks."""
        if attempt > 1:
            self._stats.retries += 1
        hooks = self._on_attempt is not None or (
            retry_in is not None and self._on_retry is not None
        )
        if not hooks and not logger.isEnabledFor(DEBUG):
            return
        elapsed = time.perf_counter() - started
        status = answer.status if answer is not None else None
        if request_id is None:
            request_id = getattr(error, "request_id", None)
        logger.debug(
            "GET %s -> %s in %.1f ms (attempt %d, request_id=%s)%s",
            path,
            " ".join(
                part
                for part in (str(status) if status is not None else None, _error_name(error))
                if part
            ),
            elapsed * 1000,
            attempt,
            request_id,
            f", retrying in {retry_in:.2f} s" if retry_in is not None else "",
        )
        if hooks:
            event = AttemptEvent("GET", path, attempt, status, error, elapsed, request_id, retry_in)
            if self._on_attempt is not None:
                self._on_attempt(event)
            if retry_in is not None and self._on_retry is not None:
                self._on_retry(event)


def _error_name(error: HostUpError | None) -> str | None:
    """Name the error an attempt ended in, for the log line (``None`` when it succeeded)."""
    return type(error).__name__ if error is not None else None
