"""The ``hostup-async`` command line: fetch VMs as JSON, bulk-fetch as JSON Lines, run a demo.

Exit codes: 0 when everything succeeded, 1 when some VM (or the one VM) failed, 2 for a
usage or configuration error (bad vmid, no key, a key the API rejects, a base URL where no
HostUp API answers), always with a one-line message; 130 when interrupted, 141 when stdout
is closed early (``| head``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import math
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, aclosing, nullcontext
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Any, NoReturn, TypeVar

import msgspec

from .._bulk import BulkProgress, VMResult
from .._client import HostUpClient
from .._constants import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RATE_LIMIT,
    DEFAULT_TIMEOUT,
    MAX_CONCURRENCY_LIMIT,
    SHARED_LIMIT_ENV,
)
from .._events import AttemptEvent
from .._exceptions import (
    AuthenticationError,
    ConfigurationError,
    HostUpError,
    InvalidVMIDError,
    NotFoundError,
    RequestTimeoutError,
    RetryBudgetExhaustedError,
    TransportError,
)
from .._export import json_encoder, python_names
from .._version import __version__
from .output import FORMATS, error_object, error_text, formatter, result_object
from .vmids import ParsedVMIDs, VMIDSyntaxError, merge, parse_one, parse_token

__all__ = ["error_object", "main", "parse_vmids", "result_object"]

_T = TypeVar("_T")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141  # 128 + SIGINT, 128 + SIGPIPE, as shells report


class UsageError(Exception):
    """A mistake in the command line; reported in one line with exit code 2."""


def _plural(count: int, word: str) -> str:
    """Return ``1 VM``, ``2 VMs``, ``1 core``, ``8 cores``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# -- vmid parsing -------------------------------------------------------------------------


def parse_vmids(tokens: Iterable[str]) -> ParsedVMIDs:
    """Parse ids and ranges such as ``7``, ``100-200`` or ``1,2``; duplicates are counted once.

    Only ASCII digits, ``-`` between two ids and ``,`` between items are accepted.
    """
    try:
        return merge(r for token in tokens for r in parse_token(token))
    except VMIDSyntaxError as exc:
        raise UsageError(str(exc)) from None


def _ranges_from_file(path: str) -> Iterator[range]:
    """Read vmids separated by whitespace or commas from a file, or stdin for ``-``."""
    name = "stdin" if path == "-" else path
    try:
        if path == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read --from-file {name}: {reason}") from None
    for number, line in enumerate(lines, 1):
        # In a file, commas and whitespace both separate ids (a column of a CSV, say).
        for token in filter(None, re.split(r"[\s,]+", line)):
            try:
                yield from parse_token(token)
            except VMIDSyntaxError as exc:
                # A CSV's header row ends up here: say where, so it is quick to find.
                raise UsageError(f"--from-file {name}, line {number}: {exc}") from None


def _vmids(args: argparse.Namespace) -> ParsedVMIDs:
    """Collect the vmids of ``fetch`` from its arguments and ``--from-file``."""
    ranges: list[range] = []
    for token in args.vmids:
        try:
            ranges += parse_token(token)
        except VMIDSyntaxError as exc:
            raise UsageError(str(exc)) from None
    if args.from_file is not None:
        from_file = list(_ranges_from_file(args.from_file))
        if not from_file and not ranges:
            name = "stdin" if args.from_file == "-" else args.from_file
            raise UsageError(f"no vmids in --from-file {name}")
        ranges += from_file
    if not ranges:
        raise UsageError("no vmids given: pass ids or ranges (7 100-200 1,2), or --from-file FILE")
    return merge(ranges)


# -- run statistics -----------------------------------------------------------------------


_LATENCY_SAMPLE = 10_000

# Attempts that failed to connect, with none answered, before the URL counts as unreachable:
# more than one, so a single refused connection (a server restarting) is still retried.
_REFUSALS_TO_GIVE_UP = 3


@dataclass
class RunStats:
    """Counts and latencies of one run, for the closing summary and the fail-fast checks."""

    started: float = field(default_factory=time.perf_counter)
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    ok: int = 0
    attempts: int = 0
    answered: int = 0
    """Attempts that got an HTTP answer (any status): the URL reaches some server."""
    refused: int = 0
    """Attempts that could not connect at all."""
    unreachable: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the first attempts all failed to connect: the URL is wrong or the server down."""
    attempt_time: float = 0.0
    """Seconds spent in attempts, summed over all of them."""

    def on_attempt(self, event: AttemptEvent) -> None:
        """Record one HTTP attempt's latency (the client's ``on_attempt`` hook)."""
        # A uniform sample of at most _LATENCY_SAMPLE latencies (reservoir sampling), so
        # the percentiles stay honest while memory stays flat however long the run.
        self.attempts += 1
        self.attempt_time += event.elapsed
        if event.status is not None:
            self.answered += 1
        elif _connect_failure(event.error):
            self.refused += 1
            if not self.answered and self.refused >= _REFUSALS_TO_GIVE_UP:
                self.unreachable.set()
        if len(self.latencies) < _LATENCY_SAMPLE:
            self.latencies.append(event.elapsed)
        else:
            slot = random.randrange(self.attempts)
            if slot < _LATENCY_SAMPLE:
                self.latencies[slot] = event.elapsed

    def add(self, result: VMResult) -> None:
        """Count one result."""
        if result.error is None:
            self.ok += 1
        else:
            self.failures[type(result.error).__name__] += 1

    @property
    def done(self) -> int:
        """Results counted so far."""
        return self.ok + sum(self.failures.values())

    def summary(self, client: HostUpClient, *, total: int | None = None) -> str:
        """Return the closing summary: outcomes, request rate, latency, 429s and retries.

        ``total`` is given when the run was interrupted: the summary says how far it got.
        """
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        failed = sum(self.failures.values())
        kinds = ", ".join(f"{kind} {n}" for kind, n in self.failures.most_common())
        stats = client.stats
        lat = sorted(self.latencies)
        p50 = _percentile(lat, 0.50) * 1000
        p95 = _percentile(lat, 0.95) * 1000
        if total is None:
            head = f"{_plural(self.done, 'VM')} in {elapsed:.1f} s"
        else:
            head = f"interrupted after {self.done} of {_plural(total, 'VM')} ({elapsed:.1f} s)"
        return (
            f"{head}: {self.ok} ok, {failed} failed"
            + (f" ({kinds})" if kinds else "")
            + f"\nrequests {stats.requests} ({stats.requests / elapsed:.1f}/s), "
            f"latency p50 {p50:.1f} ms p95 {p95:.1f} ms, "
            f"429s {stats.rate_limited}, retries {stats.retries}, "
            f"rate-limit wait {_per(stats.throttle_wait, stats.requests) * 1000:.0f} ms/request"
            + _rate_note(client)
            + self._wait_hint(client, elapsed)
        )

    def _wait_hint(self, client: HostUpClient, elapsed: float) -> str:
        """Say what to change when waiting for the client's own rate limit took most of the run."""
        stats = client.stats
        if stats.rate_limited or client.rate_limit is None or elapsed < 1.0:
            return ""  # 429s: the server set the pace, and _rate_note says so
        if stats.throttle_wait <= self.attempt_time:
            return ""
        return (
            f"\nhint: requests spent most of their time waiting for the client-side rate limit "
            f"of {client.rate_limit:g} req/s; if your account allows more, raise --rate "
            "(--rate 0: no client-side limit)"
        )


def _rate_note(client: HostUpClient) -> str:
    """Say where adaptive limiting left the rate, when 429s moved it."""
    now = client.effective_rate_limit
    if now is None or now == client.rate_limit:
        return ""
    configured = f"{client.rate_limit:g}" if client.rate_limit is not None else "no limit"
    return f"\nadaptive rate limit now {now:.0f} req/s (configured: {configured})"


def _per(total: float, count: int) -> float:
    """Return ``total / count``, or 0 when nothing was counted."""
    return total / count if count else 0.0


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Return the ``q`` quantile of already sorted values (nearest rank), 0 when empty."""
    if not sorted_values:
        return 0.0
    # The nearest rank is ceil(q * n); rounded first so that 0.95 * 20 is rank 19, not 20.
    rank = math.ceil(round(q * len(sorted_values), 9))
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]


# -- failing fast on a wrong URL ----------------------------------------------------------


def _connect_failure(error: BaseException | None) -> bool:
    """Whether ``error`` means no connection could be made (not a timeout, not an answer)."""
    if isinstance(error, RetryBudgetExhaustedError):
        error = error.last_error
    return isinstance(error, TransportError) and not isinstance(error, RequestTimeoutError)


def _bare_404(error: BaseException | None) -> bool:
    """Whether ``error`` is a 404 without HostUp's JSON error body (a web server's page)."""
    return (
        isinstance(error, NotFoundError)
        and error.code is None
        and error.request_id is None
        and not isinstance(error.body, dict)
    )


def _wrong_url(error: HostUpError, stats: RunStats, base_url: str) -> UsageError | None:
    """Return a usage error when the run so far shows no HostUp API at ``base_url``.

    Checked on each failure until something succeeds: every attempt so far failed to
    connect, or every result so far is a bare 404 (``/api`` left off the URL, say).
    """
    if stats.ok:
        return None
    if stats.answered == 0 and _connect_failure(error):
        return _cannot_connect(base_url)
    if not stats.failures and _bare_404(error):
        return UsageError(
            f"{base_url} answered 404 with a page that is not HostUp's API: check --base-url "
            f"(or ${BASE_URL_ENV}); HostUp's API root is {DEFAULT_BASE_URL}, ending in /api"
        )
    return None


def _cannot_connect(base_url: str) -> UsageError:
    """Describe a URL nothing answers at."""
    return UsageError(
        f"cannot connect to {base_url}: check --base-url (or ${BASE_URL_ENV}) "
        "and that the server is up"
    )


async def _unless_unreachable(work: Awaitable[_T], stats: RunStats, base_url: str) -> _T:
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
        raise _cannot_connect(base_url)
    return task.result()


def _rejected_key(exc: AuthenticationError) -> UsageError:
    """Describe a 401 as a configuration error, without echoing the key."""
    rid = f", request_id={exc.request_id}" if exc.request_id else ""
    return UsageError(
        f"the API rejected the key (HTTP {exc.status}{rid}): check {API_KEY_ENV} or --api-key-file"
    )


# -- progress display ---------------------------------------------------------------------


def _progress_detail(p: BulkProgress) -> str:
    """Describe failures and rate limiting so far, for either progress display."""
    wait = p.throttle_wait / p.done * 1000 if p.done else 0.0
    return f"{p.failed} failed, {p.rate_limited} 429s, rate-limit wait {wait:.0f} ms/VM"


class _TextProgress:
    """A one-line progress display, used when rich is not installed."""

    def __init__(self, stream: IO[str], total: int | None) -> None:
        """Draw on ``stream``; ``total`` is the input size when known."""
        self._stream = stream
        self._total = total
        self._last = 0.0
        self._line = ""

    def update(self, p: BulkProgress) -> None:
        """Redraw the line, at most ten times a second."""
        now = time.monotonic()
        if now - self._last < 0.1 and p.done != self._total:
            return
        self._last = now
        of = f"/{self._total}" if self._total is not None else ""
        self._line = f"{p.done}{of} VMs, {_progress_detail(p)}"
        self._stream.write(f"\r\x1b[2K{self._line}")
        self._stream.flush()

    def write(self, line: str) -> None:
        """Print an output line above the progress line, then redraw it."""
        self._stream.write(f"\r\x1b[2K{line}\n{self._line}")

    def __enter__(self) -> _TextProgress:
        """Start showing progress."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Clear the progress line: the summary follows."""
        self._stream.write("\r\x1b[2K")
        self._stream.flush()


class _RichProgress:
    """A rich progress bar (the ``[cli]`` extra)."""

    def __init__(self, stream: IO[str], total: int | None) -> None:
        """Build the bar for ``total`` VMs (an open-ended bar when unknown), drawn on ``stream``."""
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Column

        of = f"/{total}" if total is not None else ""
        self._progress = Progress(
            # The count first and never wrapped: on a narrow terminal the detail gives way.
            TextColumn(
                "{task.completed}" + of + " VMs", table_column=Column(no_wrap=True, min_width=5)
            ),
            BarColumn(bar_width=24),
            TimeElapsedColumn(),
            TextColumn(
                "{task.fields[detail]}",
                table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1),
            ),
            console=Console(file=stream),
            transient=True,  # the summary replaces the bar, so nothing is drawn twice
            expand=True,
        )
        self._task = self._progress.add_task("fetch", total=total, detail="")
        self._refreshed = 0.0

    def update(self, p: BulkProgress) -> None:
        """Move the bar to the latest counts."""
        self._progress.update(self._task, completed=p.done, detail=_progress_detail(p))

    def write(self, line: str) -> None:
        """Print an output line above the bar (rich moves the bar below it)."""
        # Rich redraws the bar under the line from its last refresh: refresh it first (at
        # most twenty times a second), so the count under the lines is current.
        now = time.monotonic()
        if now - self._refreshed >= 0.05:
            self._refreshed = now
            self._progress.refresh()
        self._progress.console.out(line, highlight=False)

    def __enter__(self) -> _RichProgress:
        """Start drawing the bar."""
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop drawing the bar and clear it."""
        self._progress.stop()


def _progress_display(stream: IO[str], total: int | None) -> _TextProgress | _RichProgress:
    """Return a progress display drawn on ``stream``: rich's bar, or a plain line without rich."""
    if not os.environ.get("HOSTUP_ASYNC_NO_RICH"):
        try:
            return _RichProgress(stream, total)
        except ImportError:
            pass  # rich comes with the [cli] extra; the plain line does without it
    return _TextProgress(stream, total)


def _isatty(stream: IO[str]) -> bool:
    """Whether ``stream`` is a terminal (a closed or odd stream is not)."""
    try:
        return stream.isatty()
    except (ValueError, AttributeError):
        return False


# -- commands -----------------------------------------------------------------------------


def _read_key(args: argparse.Namespace) -> str | None:
    """Return the key from ``--api-key-file``, else ``None`` so the client reads the env var."""
    if args.api_key_file is None:
        if not os.environ.get(API_KEY_ENV, "").strip():
            # Said here for a terminal user; the library's message talks about api_key=...
            raise UsageError(f"no API key: set {API_KEY_ENV} or use --api-key-file")
        return None
    try:
        with open(args.api_key_file, encoding="utf-8") as f:
            key = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read --api-key-file {args.api_key_file}: {reason}") from None
    if not key:
        raise UsageError(f"no API key: --api-key-file {args.api_key_file} is empty")
    return key


# The library names its options as Python does; the command line's user typed these.
_OPTION_NAMES = {
    "base_url": "--base-url",
    "max_concurrency": "--concurrency",
    "rate_limit": "--rate",
    "timeout": "--timeout",
    "max_retries": "--max-retries",
    "shared_limit": "--shared-limit",
}


def _in_cli_words(exc: ConfigurationError) -> UsageError:
    """Reword a library settings error with the option the user typed."""
    text = str(exc)
    name, sep, rest = text.partition(" ")
    if sep and name in _OPTION_NAMES:
        text = f"{_OPTION_NAMES[name]} {rest}"
    return UsageError(text)


def _client(args: argparse.Namespace, stats: RunStats, **options: Any) -> HostUpClient:
    """Build the client from the common options; bad settings raise before any I/O."""
    key = _read_key(args)
    try:
        return HostUpClient(
            key,
            base_url=args.base_url,
            timeout=args.timeout,
            max_retries=args.max_retries,
            on_attempt=stats.on_attempt,
            shared_limit=args.shared_limit or None,
            **options,
        )
    except ConfigurationError as exc:
        raise _in_cli_words(exc) from None


def _configure_logging(args: argparse.Namespace) -> None:
    """With ``-v``, log every attempt (the SDK's DEBUG log) to stderr."""
    if getattr(args, "verbose", False):
        logging.basicConfig(stream=sys.stderr, format="%(name)s: %(message)s")
        logging.getLogger("hostup_async").setLevel(logging.DEBUG)


async def _one(args: argparse.Namespace, out: IO[str]) -> int:
    """``details`` and ``billing``: print one decoded object as pretty JSON."""
    try:
        vmid = parse_one(args.vmid)
    except VMIDSyntaxError as exc:
        raise UsageError(str(exc)) from None
    stats = RunStats()
    async with _client(args, stats) as client:
        try:
            call: Awaitable[Any] = (
                client.get_vm_details(vmid, usage_log=args.usage_log)
                if args.command == "details"
                else client.get_billing_cycle(vmid)
            )
            obj = await _unless_unreachable(call, stats, client.base_url)
        except AuthenticationError as exc:
            raise _rejected_key(exc) from None
        except (ConfigurationError, InvalidVMIDError):
            raise
        except HostUpError as exc:
            wrong = _wrong_url(exc, stats, client.base_url)
            if wrong is not None:
                raise wrong from None
            # One line on stderr; stdout stays empty, so `| jq` sees no half answer.
            rid = getattr(exc, "request_id", None)
            said = f"{getattr(exc, 'message', None) or exc}"
            said += f" (request_id={rid})" if rid else ""
            print(f"hostup-async: vm {vmid}: {error_text(exc)}: {said}", file=sys.stderr)
            return EXIT_FAILED
    raw = json_encoder(show_secrets=args.show_secrets).encode(python_names(obj))
    print(msgspec.json.format(raw, indent=2).decode(), file=out)
    return EXIT_OK


@dataclass(frozen=True)
class _BulkOptions:
    """What a bulk run fetches and how it writes it: ``fetch``'s options, or the demo's own."""

    details: bool = True
    billing: bool = True
    usage_log: bool = True
    output_format: str = "jsonl"
    show_secrets: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> _BulkOptions:
        """The options ``fetch`` was given."""
        return cls(args.details, args.billing, args.usage_log, args.format, args.show_secrets)


async def _bulk(
    client: HostUpClient,
    vmids: Iterable[int],
    total: int,
    options: _BulkOptions,
    out: IO[str],
    stats: RunStats,
    show_progress: bool,
    write: Callable[[VMResult], None] | None = None,
) -> int:
    """Stream results to ``out`` in the chosen format, with a progress display; return the exit code.

    On a terminal shared by the output and the progress display, lines are printed through
    the display, above its bar, so the two never garble each other.
    """
    fmt = formatter(options.output_format, show_secrets=options.show_secrets)
    shared = show_progress and out is sys.stdout and _isatty(out)
    display = _progress_display(out if shared else sys.stderr, total) if show_progress else None

    def emit(line: str) -> None:
        """Write one output line where it belongs."""
        if shared and display is not None:
            display.write(line)
        else:
            out.write(line + "\n")

    if write is None and (header := fmt.header()) is not None:
        emit(header)
    with display if display is not None else nullcontext():
        stream = client.stream_vms(
            vmids,
            details=options.details,
            billing_cycle=options.billing,
            usage_log=options.usage_log,
            progress=display.update if display is not None else None,
        )
        # aclosing: leaving the loop early (a rejected key, a closed pipe) cancels what is in flight.
        async with aclosing(stream):
            async for result in stream:
                if isinstance(result.error, AuthenticationError):
                    # Every other VM would get the same 401: stop instead of sending the rest.
                    raise _rejected_key(result.error)
                if result.error is not None:
                    wrong = _wrong_url(result.error, stats, client.base_url)
                    if wrong is not None:
                        raise wrong
                stats.add(result)
                if write is not None:
                    write(result)
                else:
                    emit(fmt.line(result))
    return EXIT_OK if not stats.failures else EXIT_FAILED


async def _fetch(args: argparse.Namespace, out: IO[str]) -> int:
    """``fetch``: bulk-fetch VMs, with progress and a closing summary."""
    if not args.details and not args.billing:
        raise UsageError("nothing to fetch: --no-details needs --billing")
    parsed = _vmids(args)
    stats = RunStats()
    client = _client(
        args,
        stats,
        max_concurrency=args.concurrency,
        rate_limit=args.rate or None,  # --rate 0: no client-side limit
    )
    # Opened only now, so a bad setting or vmid does not truncate an existing file.
    sink = _open_out(args.out) if args.out else nullcontext(out)
    with sink as target:
        async with client:
            try:
                work = _bulk(
                    client,
                    itertools.chain(*parsed.ranges),
                    parsed.total,
                    _BulkOptions.from_args(args),
                    target,
                    stats,
                    show_progress=_isatty(sys.stderr) and not args.quiet and not args.verbose,
                )
                code = await _unless_unreachable(work, stats, client.base_url)
            except (asyncio.CancelledError, KeyboardInterrupt):
                target.flush()
                print(stats.summary(client, total=parsed.total), file=sys.stderr)
                raise
            summary = stats.summary(client)
            if parsed.duplicates:
                summary += f"\n{_plural(parsed.duplicates, 'duplicate vmid')} fetched once"
            print(summary, file=sys.stderr)
    return code


def _open_out(path: str) -> AbstractContextManager[IO[str]]:
    """Open ``--out`` for writing; an unwritable path is a usage error."""
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write --out {path}: {exc.strerror}") from None


# The demo fetches the start of the demo fleet: realistic trouble, done in a few seconds.
_DEMO_FLEET = 400
_DEMO_SERVER_LIMIT = 150  # requests per second the fake accepts
_DEMO_CLIENT_RATE = 250.0  # set above the server's hidden limit on purpose


async def _demo(args: argparse.Namespace, out: IO[str]) -> int:
    """``demo``: run a bulk fetch against the embedded fake server and summarise it."""
    from ..testing import FakeHostUp
    from ..testing._data import demo_fleet

    key = "demo-key"
    fake = FakeHostUp(
        api_key=key,
        **demo_fleet(),
        rate_limit=_DEMO_SERVER_LIMIT,
        usage_log_hours=args.hours,
    )
    async with fake:
        print(
            f"demo: fake HostUp API at {fake.url} (no key, no network needed): "
            f"{_DEMO_FLEET} VMs, some forbidden or missing, a hidden limit of "
            f"{_DEMO_SERVER_LIMIT} req/s; the client is set to {_DEMO_CLIENT_RATE:g} req/s",
            file=sys.stderr,
        )
        stats = RunStats()
        shown: list[VMResult] = []

        def keep(result: VMResult) -> None:
            """Keep the first few successful results to show."""
            if len(shown) < 5 and result.ok:
                shown.append(result)

        async with HostUpClient(
            key,
            base_url=fake.url,
            rate_limit=_DEMO_CLIENT_RATE,
            max_concurrency=16,
            on_attempt=stats.on_attempt,
        ) as client:
            await _bulk(
                client,
                range(1, _DEMO_FLEET + 1),
                _DEMO_FLEET,
                _BulkOptions(),  # details, billing cycles and usage logs; secrets masked
                out,
                stats,
                show_progress=sys.stderr.isatty(),
                write=keep,
            )
            for result in sorted(shown, key=lambda r: int(r.vmid)):
                vm, bc = result.details_or_raise(), result.billing_cycle_or_raise()
                sent = sum(s.data_sent for s in vm.usage_log.values()) / 1e9
                price = next((c.price for c in bc.cycles if c.is_current), Decimal(0))
                print(
                    f"  vm {result.vmid:>4}  {vm.hostname:<20} {_plural(vm.cpu, 'core')} {vm.ram:g} GB  "
                    f"{vm.vm_status:<8} {sent:7.1f} GB sent/{len(vm.usage_log)} h  "
                    f"{bc.current_name} {price} {vm.pricing.currency if vm.pricing else ''}",
                    file=out,
                )
            print(stats.summary(client), file=sys.stderr)
    return EXIT_OK


async def _serve_fake(args: argparse.Namespace, out: IO[str]) -> int:
    """``serve-fake``: run the fake API until interrupted."""
    from ..testing import FakeHostUp

    fleet = _fake_fleet(args)
    fake = FakeHostUp(
        api_key=args.fake_key,
        port=args.port,
        rate_limit=args.rate_limit,
        usage_log_hours=args.hours,
        **fleet,
    )
    try:
        await fake.start()
    except OSError as exc:
        raise UsageError(f"cannot listen on port {args.port}: {exc.strerror}") from None
    try:
        print(
            f"fake HostUp API at {fake.url} (X-API-Key: {args.fake_key}); Ctrl-C stops it\n"
            f"{_describe_fleet(fleet)}",
            file=out,
        )
        out.flush()
        await asyncio.Event().wait()
    finally:
        await fake.stop()
    return EXIT_OK  # pragma: no cover - only reached by cancellation


# Most vmids --forbidden and --missing may list: the fake keeps them in memory.
_MAX_LISTED = 1_000_000


def _fake_fleet(args: argparse.Namespace) -> dict[str, Any]:
    """The fleet ``serve-fake`` serves: the demo's, changed by its options."""
    from ..testing._data import demo_fleet

    fleet = demo_fleet()
    if args.all_ok:
        fleet = {"forbidden": frozenset(), "missing": frozenset(), "max_vmid": None}
    for name in ("forbidden", "missing"):
        tokens = getattr(args, name)
        if tokens is not None:
            parsed = parse_vmids([tokens]) if tokens.strip() else ParsedVMIDs([], 0, 0)
            if parsed.total > _MAX_LISTED:
                raise UsageError(f"--{name} lists {parsed.total} vmids; at most {_MAX_LISTED:,}")
            fleet[name] = frozenset(itertools.chain(*parsed.ranges))
    if args.max_vmid is not None:
        fleet["max_vmid"] = args.max_vmid or None
    return fleet


def _describe_fleet(fleet: dict[str, Any]) -> str:
    """Say in one line which vmids answer 403 and 404."""
    from ..testing._data import DEMO_MAX_VMID, demo_fleet

    if fleet == demo_fleet():
        return (
            "the demo fleet: 403 for vmids 7, 403 and every vmid ending in 37; 404 for 42, 404, "
            f"every vmid ending in 90 and every vmid above {DEMO_MAX_VMID}"
        )

    def listed(ids: frozenset[int]) -> str:
        first = sorted(ids)[:6]
        return ", ".join(map(str, first)) + (f" and {len(ids) - 6} more" if len(ids) > 6 else "")

    missing = [listed(fleet["missing"])] if fleet["missing"] else []
    if fleet["max_vmid"] is not None:
        missing.append(f"every vmid above {fleet['max_vmid']}")
    forbidden = f"403 for vmids {listed(fleet['forbidden'])}" if fleet["forbidden"] else "no 403s"
    return f"{forbidden}; " + (f"404 for {', '.join(missing)}" if missing else "no 404s")


# -- argument parsing ---------------------------------------------------------------------


def _int_in(what: str, low: int, high: int | None = None) -> Callable[[str], int]:
    """Build an argparse type for an integer from ``low`` to ``high``, named ``what`` in errors."""

    def parse(text: str) -> int:
        """Parse and check one value."""
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if value < low or (high is not None and value > high):
            limits = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise argparse.ArgumentTypeError(f"{what} must be {limits}: {text!r}")
        return value

    return parse


def _number(low: float, *, zero: bool) -> Callable[[str], float]:
    """Build an argparse type for a finite number above ``low`` (or equal to 0 when ``zero``)."""

    def parse(text: str) -> float:
        """Parse and check one value."""
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value < low or (value == low and not zero):
            least = "0 or more" if zero else "above 0"
            raise argparse.ArgumentTypeError(f"must be a finite number, {least}: {text!r}")
        return value

    return parse


_rate = _number(0, zero=True)

_EPILOG = f"""\
The API key is read from the {API_KEY_ENV} environment variable, or from --api-key-file;
it is never printed.

exit codes:
  0    every VM fetched
  1    some VMs failed (their errors are in the output)
  2    usage or configuration error: bad vmid or option, no key, a key the API rejects,
       no HostUp API at the base URL (nothing answers, or a bare 404 page)
  130  interrupted (Ctrl-C)
  141  stdout closed early (for example by `| head`)
"""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the contract), not a usage block."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` in one line and exit with the usage error code."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common_options() -> _Parser:
    """Build the options every command that calls the API shares."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--base-url",
        metavar="URL",
        default=os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL,
        help=f"API root (default: ${BASE_URL_ENV}, else {DEFAULT_BASE_URL})",
    )
    common.add_argument(
        "--api-key-file",
        metavar="FILE",
        help=f"read the API key from FILE instead of ${API_KEY_ENV}",
    )
    common.add_argument(
        "--timeout",
        type=_number(0, zero=False),
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="seconds allowed per attempt (default: %(default)g)",
    )
    common.add_argument(
        "--max-retries",
        type=_int_in("an integer", 0),
        default=DEFAULT_MAX_RETRIES,
        metavar="N",
        help="retries after a failed attempt (default: %(default)s)",
    )
    common.add_argument(
        "--shared-limit",
        metavar="URL",
        # No %(default)s in the help: the URL may hold a Redis password.
        default=os.environ.get(SHARED_LIMIT_ENV),
        help=f"share the key's rate limit and 429 pauses with other processes through the "
        f"Redis at URL, such as redis://localhost:6379/0 (default: ${SHARED_LIMIT_ENV}; "
        "needs hostup-async[redis])",
    )
    common.add_argument(
        "--show-secrets", action="store_true", help="print VM passwords instead of **********"
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log every HTTP attempt to stderr (instead of the progress bar)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for every subcommand."""
    common = _common_options()
    parser = _Parser(
        prog="hostup-async",
        description="Fetch HostUp VMs from the command line.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hostup-async {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    hours = _int_in("a number of hours", 0)
    no_usage_log = "leave out the hourly usage log (faster, much shorter)"

    details = sub.add_parser("details", parents=[common], help="print a VM's details as JSON")
    details.add_argument("vmid", metavar="VMID", help="the VM's id, such as 10415")
    details.add_argument(
        "--no-usage-log", dest="usage_log", action="store_false", help=no_usage_log
    )
    billing = sub.add_parser("billing", parents=[common], help="print a VM's billing cycle as JSON")
    billing.add_argument("vmid", metavar="VMID", help="the VM's id, such as 10415")

    fetch = sub.add_parser(
        "fetch",
        parents=[common],
        help="bulk-fetch VMs as JSON Lines (or CSV, or a table)",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fetch.add_argument(
        "vmids", nargs="*", metavar="VMIDS", help="ids and ranges such as 7 100-200 or 1,2,5"
    )
    fetch.add_argument(
        "--from-file", metavar="FILE", help="also read vmids from FILE (- for stdin)"
    )
    fetch.add_argument("--billing", action="store_true", help="also fetch billing cycles")
    fetch.add_argument(
        "--no-details",
        dest="details",
        action="store_false",
        help="skip details (use with --billing)",
    )
    fetch.add_argument("--no-usage-log", dest="usage_log", action="store_false", help=no_usage_log)
    fetch.add_argument(
        "--concurrency",
        type=_int_in("an integer", 1, MAX_CONCURRENCY_LIMIT),
        default=DEFAULT_MAX_CONCURRENCY,
        metavar="N",
        help="requests in flight (default: %(default)s)",
    )
    fetch.add_argument(
        "--rate",
        type=_rate,
        default=DEFAULT_RATE_LIMIT,
        metavar="R",
        help="requests per second; 0: no client-side limit (default: %(default)g)",
    )
    fetch.add_argument(
        "-o",
        "--format",
        choices=FORMATS,
        default="jsonl",
        metavar="FORMAT",
        help="jsonl (JSON Lines, for programs), csv, or table (for people); default: %(default)s",
    )
    fetch.add_argument("--out", metavar="FILE", help="write the output to FILE")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")

    demo = sub.add_parser("demo", help="bulk-fetch from an embedded fake server (no key needed)")
    demo.add_argument(
        "--hours", type=hours, default=24, help="usage-log hours per VM (default: %(default)s)"
    )

    serve = sub.add_parser("serve-fake", help="run the fake HostUp API on loopback")
    serve.add_argument(
        "--port",
        type=_int_in("a port", 0, 65535),
        default=8080,
        help="0 picks a free port (default: %(default)s)",
    )
    serve.add_argument(
        "--api-key",
        dest="fake_key",
        default="test-key",
        help="the key the fake accepts (default: %(default)s)",
    )
    serve.add_argument(
        "--rate-limit", type=_int_in("an integer", 1), help="hidden rate limit in requests/s"
    )
    serve.add_argument(
        "--hours", type=hours, default=24, help="usage-log hours per VM (default: %(default)s)"
    )
    serve.add_argument(
        "--forbidden",
        metavar="VMIDS",
        help="vmids answered 403, such as 7,403 or 100-120 ('' for none; default: the demo "
        "fleet's 7, 403 and every vmid ending in 37)",
    )
    serve.add_argument(
        "--missing",
        metavar="VMIDS",
        help="vmids answered 404 ('' for none; default: the demo fleet's 42, 404 and every "
        "vmid ending in 90)",
    )
    serve.add_argument(
        "--max-vmid",
        type=_int_in("an integer", 0),
        metavar="N",
        help="vmids above N are answered 404; 0: no limit (default: 20000)",
    )
    serve.add_argument(
        "--all-ok",
        action="store_true",
        help="no forbidden or missing vmids: every vmid is a VM (unless listed with the above)",
    )
    parser.set_defaults(subparsers=sub.choices)
    return parser


_COMMANDS = {
    "details": _one,
    "billing": _one,
    "fetch": _fetch,
    "demo": _demo,
    "serve-fake": _serve_fake,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Point at the command's own help, where its options are listed.
        args.subparsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    _configure_logging(args)
    try:
        code = asyncio.run(_COMMANDS[args.command](args, sys.stdout))
        sys.stdout.flush()  # a closed pipe shows up here, not at exit as an ignored exception
        return code
    except (UsageError, ConfigurationError, InvalidVMIDError) as exc:
        print(f"hostup-async: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HostUpError as exc:
        print(f"hostup-async: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly. Python flushes stdout again at
        # exit, so point it at devnull first (the recipe in the docs' signal module notes).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
