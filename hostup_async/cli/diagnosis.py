"""Diagnosis: telling a wrong base URL or a rejected key from failing VMs, and failing fast."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from .._constants import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
)
from .._exceptions import (
    AuthenticationError,
    HostUpError,
    NotFoundError,
    RequestTimeoutError,
    RetryBudgetExhaustedError,
    TransportError,
)
from .errors import UsageError

if TYPE_CHECKING:
    from .stats import RunStats

_T = TypeVar("_T")

__all__ = [
    "bare_404",
    "cannot_connect",
    "connect_failure",
    "rejected_key",
    "unless_unreachable",
    "wrong_url",
]

# -- failing fast on a wrong URL ----------------------------------------------------------


def connect_failure(error: BaseException | None) -> bool:
    """Whether ``error`` means no connection could be made (not a timeout, not an answer)."""
    if isinstance(error, RetryBudgetExhaustedError):
        error = error.last_error
    return isinstance(error, TransportError) and not isinstance(error, RequestTimeoutError)


def bare_404(error: BaseException | None) -> bool:
    """Whether ``error`` is a 404 without HostUp's JSON error body (a web server's page)."""
    return (
        isinstance(error, NotFoundError)
        and error.code is None
        and error.request_id is None
        and not isinstance(error.body, dict)
    )


def wrong_url(error: HostUpError, stats: RunStats, base_url: str) -> UsageError | None:
    """Return a usage error when the run so far shows no HostUp API at ``base_url``.

    Checked on each failure until something succeeds: every attempt so far failed to
    connect, or every result so far is a bare 404 (``/api`` left off the URL, say).
    """
    if stats.ok:
        return None
    if stats.answered == 0 and connect_failure(error):
        return cannot_connect(base_url)
    if not stats.failures and bare_404(error):
        return UsageError(
            f"{base_url} answered 404 with a page that is not HostUp's API: check --base-url "
            f"(or ${BASE_URL_ENV}); HostUp's API root is {DEFAULT_BASE_URL}, ending in /api"
        )
    return None


def cannot_connect(base_url: str) -> UsageError:
    """Describe a URL nothing answers at."""
    return UsageError(
        f"cannot connect to {base_url}: check --base-url (or ${BASE_URL_ENV}) "
        "and that the server is up"
    )


async def unless_unreachable(work: Awaitable[_T], stats: RunStats, base_url: str) -> _T:
    """Await ``work``, but stop it as soon as its first attempts have all failed to connect.

    Without this a dead URL costs every VM its full retries (a 300-VM fetch ran 40 s)
    before the failed results could tell.
    """
    task = asyncio.ensure_future(work)
    alarm = asyncio.ensure_future(stats.unreachable.wait())
    try:
        await asyncio.wait({task, alarm}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Also reached when we are cancelled (Ctrl-C): the work stops with us.
        alarm.cancel()
        stopped = not task.done()
        if stopped:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if stopped:
        raise cannot_connect(base_url)
    return task.result()


def rejected_key(exc: AuthenticationError) -> UsageError:
    """Describe a 401 as a configuration error, without echoing the key."""
    rid = f", request_id={exc.request_id}" if exc.request_id else ""
    return UsageError(
        f"the API rejected the key (HTTP {exc.status}{rid}): check {API_KEY_ENV} or --api-key-file"
    )
