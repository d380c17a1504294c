"""``HostUpClient``: owns the HTTP session, the pacing and the retry policy, and exposes the endpoints."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

import aiohttp

from ._bulk import ProgressHook, VMIds, VMResult, fetch_vms, stream_vms
from ._constants import (
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_RATE_LIMIT,
    DEFAULT_TIMEOUT,
    MAX_CONCURRENCY_LIMIT,
)
from ._events import AttemptHook, ClientStats
from ._exceptions import ClientClosedError, ConfigurationError
from ._http.answer import BILLING, DETAILS
from ._http.retry import Backoff, RetryBudget
from ._http.transport import Transport
from ._lifetime import NO_LOOP, NOT_A_WITH, OTHER_LOOP, hold_for_the_loop
from ._models import BillingCycle, VMDetails
from ._pacing import LocalPacer, Pacer
from ._secret import SecretStr
from ._telemetry import telemetry_for
from ._validate import (
    check_api_key,
    check_base_url,
    check_count,
    check_hook,
    check_positive,
    check_tls,
    check_user_agent,
    check_vmid,
)
from ._version import __version__

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider
    from redis.asyncio import Redis

__all__ = ["HostUpClient"]

USER_AGENT = f"hostup-async/{__version__}"


class HostUpClient:
    """Async client for HostUp's VPS API; use it as ``async with HostUpClient() as client``.

    Every request goes through one aiohttp session, one rate limiter (``rate_limit``
    requests per second) and one concurrency cap (``max_concurrency`` requests in flight).
    Failed attempts are retried as described in the docs' failure model: 429, 500, 502,
    503, 504, timeouts and transport errors, with jittered exponential backoff (``backoff``,
    a ``Backoff``) that never undercuts a server-given wait. A 429 pauses the whole client
    and lowers its rate to what the server accepts (probing back up later); with
    ``rate_limit=None`` there is no limit until a 429 arrives after some requests got
    through, which installs one.
    No server hint is waited on beyond ``max_retry_after`` seconds (per client, or per
    call): a longer one ends the call at once with ``RateLimitError``. ``deadline`` (per
    client, or per call) bounds a whole call, every wait and retry included: a call that
    cannot be done in time ends at once with ``DeadlineExceededError``, leaving nothing
    queued, so a service sheds load instead of queueing it.

    ``tracer_provider`` and ``meter_provider`` (with the ``otel`` extra) take
    OpenTelemetry providers; ``None`` means the global ones. Without the extra, or with no
    OpenTelemetry SDK configured, tracing and metrics cost next to nothing.

    ``base_url`` defaults to ``$HOSTUP_BASE_URL``, else HostUp's API. Requests carry
    ``User-Agent: hostup-async/<version>``, after ``user_agent`` when given (your product
    token, such as ``"inventory-sync/2.1"``) and after a ``session``'s own ``User-Agent``.
    ``trust_env=True`` lets the client's own session use the proxy settings of the
    environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``, ``~/.netrc``); a ``session``
    you pass keeps its own ``trust_env``.

    Plain ``http://`` is refused for any host but loopback unless ``allow_http=True``;
    ``tls`` takes an ``ssl.SSLContext`` or the path of a CA bundle to verify the server
    with. A body larger than ``max_body_size`` bytes (after decompression) ends the
    attempt with ``ResponseTooLargeError``.

    ``shared_limit`` (a ``redis://`` URL, or a ``redis.asyncio.Redis`` you configured;
    needs the ``redis`` extra) makes every client on the same API key, base URL and Redis
    share one ``rate_limit``, one 429 pause and one adaptive rate, across processes and
    hosts. If Redis goes away, each client paces alone at its share until it is back.
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
        self._api_key = SecretStr(check_api_key(api_key))
        if base_url is None:
            base_url = os.environ.get(BASE_URL_ENV, "").strip() or DEFAULT_BASE_URL
        if not isinstance(allow_http, bool):
            raise TypeError(f"allow_http must be a bool, not {type(allow_http).__name__}")
        self.base_url = check_base_url(base_url, allow_http=allow_http)
        """Root URL the endpoint paths are appended to."""
        self.rate_limit = check_positive("rate_limit", rate_limit, allow_none=True)
        """Configured requests per second for the whole client (``None``: none until a 429)."""
        self.max_concurrency = check_count(
            "max_concurrency", max_concurrency, minimum=1, maximum=MAX_CONCURRENCY_LIMIT
        )
        """Most requests in flight at once."""
        self.timeout = check_positive("timeout", timeout)
        """Seconds allowed per attempt, unless a call overrides it."""
        self.max_retries = check_count("max_retries", max_retries, minimum=0)
        """Retries after a failed first attempt, unless a call overrides it."""
        self.max_retry_after = check_positive("max_retry_after", max_retry_after)
        """Most seconds a server's retry hint may hold a call, unless a call overrides it."""
        self.deadline = check_positive("deadline", deadline, allow_none=True)
        """Most seconds one call may take, waits and retries included (``None``: no bound),
        unless a call overrides it."""
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(
                f"session must be an aiohttp.ClientSession, not {type(session).__name__}"
            )
        self.max_body_size = check_count("max_body_size", max_body_size, minimum=1)
        """Most bytes of one answer's body (after decompression) the client reads."""
        if tls is not None and session is not None:
            raise ConfigurationError(
                "pass tls= or session=, not both: give your own session's connector the TLS settings"
            )
        self._tls = check_tls(tls)
        if retry_budget is not None and not isinstance(retry_budget, RetryBudget):
            raise TypeError("retry_budget must be a RetryBudget")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise TypeError(f"backoff must be a Backoff, not {type(backoff).__name__}")
        check_hook("on_attempt", on_attempt)
        check_hook("on_retry", on_retry)
        if not isinstance(trust_env, bool):
            raise TypeError(f"trust_env must be a bool, not {type(trust_env).__name__}")
        self._user_agent = check_user_agent(user_agent)
        self._trust_env = trust_env
        self._user_session = session
        self._budget = retry_budget if retry_budget is not None else RetryBudget()
        self.backoff = backoff if backoff is not None else Backoff()
        """The wait between a failed attempt and its retry (``Backoff()`` by default)."""
        self._on_attempt = on_attempt
        self._on_retry = on_retry
        self.stats = ClientStats()
        """Running totals of requests, retries, 429s and time spent throttled."""
        # Shared by every request of this client; it touches no event loop until used.
        self._pacer: Pacer
        if shared_limit is None:
            self._pacer = LocalPacer(self.rate_limit, max_pause=self.max_retry_after)
        else:
            from ._pacing.shared import SharedPacer, namespace_for, redis_from  # needs the extra

            redis, owned = redis_from(shared_limit)
            self._pacer = SharedPacer(
                redis,
                namespace=namespace_for(self._api_key.get_secret_value(), self.base_url),
                rate_limit=self.rate_limit,
                owns_redis=owned,
                max_pause=self.max_retry_after,
                stats=self.stats,
            )
        self._telemetry = telemetry_for(self.base_url, tracer_provider, meter_provider, self.stats)
        self._session: aiohttp.ClientSession | None = None
        self._transport: Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held: AsyncGenerator[None, None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"HostUpClient(base_url={self.base_url!r}, rate_limit={self.rate_limit!r}, "
            f"max_concurrency={self.max_concurrency!r}, timeout={self.timeout!r}, "
            f"max_retries={self.max_retries!r})"
        )

    def __reduce__(self) -> Any:
        # A copy would hold the API key and pace apart from this client (its own rate
        # limit, its own 429 pause): refuse, and say what to do instead.
        raise TypeError(
            "a HostUpClient cannot be pickled or copied: create one client per process "
            "(or per event loop) from your settings instead"
        )

    async def __aenter__(self) -> HostUpClient:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> NoReturn:
        raise TypeError(NOT_A_WITH)

    def __exit__(self, *exc: object) -> None:
        """Present only so that ``with`` reaches ``__enter__`` and its advice."""

    @property
    def effective_rate_limit(self) -> float | None:
        """Requests per second the client sends at now: ``rate_limit``, or lower after 429s."""
        return self._pacer.rate

    @property
    def closed(self) -> bool:
        """Whether ``aclose()`` has been called; a closed client cannot be used again."""
        return self._closed

    async def aclose(self) -> None:
        """Close the session this client opened (never a caller's own); safe to call twice.

        Called from another event loop than the client's while that loop runs in another
        thread, it closes the client there: only that loop can close its connections.
        """
        owner = self._loop
        if (
            owner is not None
            and self._transport is not None
            and owner is not asyncio.get_running_loop()
            and owner.is_running()
        ):
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.aclose(), owner))
            return
        self._closed = True
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()  # calls in flight, or waiting to retry, end with ClientClosedError
        self._session = None
        held, self._held = self._held, None
        if held is not None:
            await held.aclose()  # our own session and the pacer, at once if the loop ended
        else:
            await self._pacer.aclose()

    def _open(self) -> Transport:
        """Return the transport, opening the session in the running loop on first use."""
        if self._closed:
            raise ClientClosedError("this HostUpClient is closed; create a new one")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(NO_LOOP) from None
        if self._loop is not loop and self._loop is not None:
            raise RuntimeError(OTHER_LOOP)
        if self._transport is None:
            self._loop = loop
            session = self._user_session
            # Product tokens, most general last: the caller's session, the caller, the SDK.
            agents = [self._user_agent, USER_AGENT]
            if session is not None:
                agents.insert(0, session.headers.get("User-Agent"))
            headers = {
                "X-API-Key": self._api_key.get_secret_value(),
                "Accept": "application/json",
                "User-Agent": " ".join(a for a in agents if a),
            }
            request_headers: dict[str, str] | None = headers
            if session is None:
                # Our own session carries the headers itself: merging them into every
                # request was a percent of a bulk fetch's CPU. A caller's session gets them
                # per request, over its own defaults.
                connector = aiohttp.TCPConnector(
                    limit=self.max_concurrency,
                    limit_per_host=0,
                    ssl=self._tls if self._tls is not None else True,
                )
                session = aiohttp.ClientSession(
                    connector=connector,
                    headers=headers,
                    raise_for_status=False,
                    trust_env=self._trust_env,
                )
                request_headers = None
            self._session = session
            owned = session if session is not self._user_session else None
            self._held = hold_for_the_loop(owned, self._pacer)
            self._transport = Transport(
                session=session,
                base_url=self.base_url,
                headers=request_headers,
                secret=self._api_key.get_secret_value(),
                pacer=self._pacer,
                max_concurrency=self.max_concurrency,
                budget=self._budget,
                backoff=self.backoff,
                stats=self.stats,
                on_attempt=self._on_attempt,
                on_retry=self._on_retry,
                max_body_size=self.max_body_size,
                telemetry=self._telemetry,
            )
        return self._transport

    def _call_options(
        self,
        timeout: float | None,
        max_retries: int | None,
        max_retry_after: float | None,
        deadline: float | None,
    ) -> tuple[float, int, float, float | None]:
        """Resolve per-call options against the client's defaults, checked before any I/O."""
        return (
            self.timeout if timeout is None else check_positive("timeout", timeout),
            (
                self.max_retries
                if max_retries is None
                else check_count("max_retries", max_retries, minimum=0)
            ),
            (
                self.max_retry_after
                if max_retry_after is None
                else check_positive("max_retry_after", max_retry_after)
            ),
            self.deadline if deadline is None else check_positive("deadline", deadline),
        )

    async def get_vm_details(
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
        vmid = check_vmid(vmid)
        if not isinstance(usage_log, bool):
            raise TypeError(f"usage_log must be a bool, not {type(usage_log).__name__}")
        timeout, max_retries, max_retry_after, deadline = self._call_options(
            timeout, max_retries, max_retry_after, deadline
        )
        return await self._open().get(
            f"/vm/{vmid}/details",
            DETAILS[usage_log],
            timeout=timeout,
            max_retries=max_retries,
            max_retry_after=max_retry_after,
            deadline=deadline,
            operation="get_vm_details",
            vmid=vmid,
        )

    async def get_billing_cycle(
        self,
        vmid: int,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        max_retry_after: float | None = None,
        deadline: float | None = None,
    ) -> BillingCycle:
        """Fetch one VM's billing cycle and options (``GET /vm/{vmid}/billing-cycle``)."""
        vmid = check_vmid(vmid)
        timeout, max_retries, max_retry_after, deadline = self._call_options(
            timeout, max_retries, max_retry_after, deadline
        )
        return await self._open().get(
            f"/vm/{vmid}/billing-cycle",
            BILLING,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_after=max_retry_after,
            deadline=deadline,
            operation="get_billing_cycle",
            vmid=vmid,
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
    ) -> AsyncGenerator[VMResult, None]:
        """Stream one ``VMResult`` per input vmid, fetching a bounded window ahead of you.

        ``vmids`` may be any iterable or async iterable, even endless: at most
        ``2 * max_concurrency`` items are pulled ahead of what you have taken. Results come
        in completion order, or input order with ``ordered=True``. A failing VM is a result
        with ``.error`` set; the stream goes on. ``aclose()`` (or ``contextlib.aclosing``
        around the stream) and cancelling the consumer cancel the requests in flight; a
        ``break`` does so once the stream object is dropped. The arguments are checked when
        you call this, before any request.
        """
        self._open()
        return stream_vms(
            self,
            vmids,
            details=details,
            billing_cycle=billing_cycle,
            ordered=ordered,
            usage_log=usage_log,
            progress=progress,
        )

    async def fetch_vms(
        self,
        vmids: VMIds,
        *,
        details: bool = True,
        billing_cycle: bool = False,
        usage_log: bool = True,
        progress: ProgressHook | None = None,
    ) -> list[VMResult]:
        """Fetch every vmid and return one ``VMResult`` per input item, in input order."""
        self._open()
        return await fetch_vms(
            self,
            vmids,
            details=details,
            billing_cycle=billing_cycle,
            usage_log=usage_log,
            progress=progress,
        )
