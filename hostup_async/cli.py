"""The ``hostup-async`` command line: fetch VMs as JSON, bulk-fetch as JSON Lines, run a demo.

Exit codes: 0 when everything succeeded, 1 when some VM (or the one VM) failed, 2 for a
usage or configuration error (bad vmid, no key, a key the API rejects), always with a
one-line message; 130 when interrupted, 141 when stdout is closed early (``| head``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, aclosing, nullcontext
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Any, NoReturn

import msgspec

from ._bulk import BulkProgress, VMResult
from ._client import HostUpClient
from ._constants import API_KEY_ENV, DEFAULT_BASE_URL, MAX_CONCURRENCY_LIMIT, MAX_VMID
from ._events import AttemptEvent
from ._exceptions import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    HostUpError,
    InvalidVMIDError,
)
from ._export import json_encoder, python_names
from ._version import __version__

__all__ = ["main", "parse_vmids"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141  # 128 + SIGINT, 128 + SIGPIPE, as shells report


class UsageError(Exception):
    """A mistake in the command line; reported in one line with exit code 2."""


# -- vmid parsing -------------------------------------------------------------------------


def parse_vmids(tokens: Iterable[str]) -> tuple[list[range], int]:
    """Parse ids and ranges such as ``7``, ``100-200`` or ``1,2``; return ranges and total size."""
    ranges: list[range] = []
    for token in tokens:
        for text in (part.strip() for part in token.split(",")):
            if text:
                ranges.append(_parse_range(text))
    return ranges, sum(len(r) for r in ranges)


def _parse_range(token: str) -> range:
    """Parse one id or ``low-high`` range."""
    first, sep, last = token.partition("-")
    try:
        low = int(first)
        high = int(last) if sep else low
    except ValueError:
        raise UsageError(f"not a vmid or range: {token!r:.60}") from None
    if low < 1 or high < low or high > MAX_VMID:
        raise UsageError(f"vmids must be from 1 to 2**63 - 1 and ranges low-high: {token!r:.60}")
    return range(low, high + 1)


def _tokens_from_file(path: str) -> list[str]:
    """Read whitespace-separated vmid tokens from a file, or stdin for ``-``."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return text.split()  # parse_vmids splits each token on commas


# -- JSON output --------------------------------------------------------------------------


def error_object(error: HostUpError) -> dict[str, Any]:
    """Describe an error for JSON output: kind, status, code, message, request_id."""
    return {
        "kind": type(error).__name__,
        "status": getattr(error, "status", None),
        "code": getattr(error, "code", None),
        "message": error.message if isinstance(error, APIError) else str(error),
        "request_id": getattr(error, "request_id", None),
    }


def result_object(result: VMResult) -> dict[str, Any]:
    """Describe a bulk result for JSON Lines output."""
    line: dict[str, Any] = {"vmid": result.vmid, "ok": result.ok}
    if result.error is not None:
        line["error"] = error_object(result.error)
    if result.details is not None:
        line["details"] = python_names(result.details)
    if result.billing_cycle is not None:
        line["billing_cycle"] = python_names(result.billing_cycle)
    return line


# -- run statistics -----------------------------------------------------------------------


_LATENCY_SAMPLE = 10_000


@dataclass
class RunStats:
    """Counts and latencies of one bulk run, for the closing summary."""

    started: float = field(default_factory=time.perf_counter)
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    ok: int = 0
    attempts: int = 0

    def on_attempt(self, event: AttemptEvent) -> None:
        """Record one HTTP attempt's latency (the client's ``on_attempt`` hook)."""
        # A uniform sample of at most _LATENCY_SAMPLE latencies (reservoir sampling), so
        # the percentiles stay honest while memory stays flat however long the run.
        self.attempts += 1
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

    def summary(self, client: HostUpClient) -> str:
        """Return the closing summary: outcomes, request rate, latency, 429s and retries."""
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        failed = sum(self.failures.values())
        kinds = ", ".join(f"{kind} {n}" for kind, n in self.failures.most_common())
        stats = client.stats
        lat = sorted(self.latencies)
        p50 = _percentile(lat, 0.50) * 1000
        p95 = _percentile(lat, 0.95) * 1000
        return (
            f"{self.ok + failed} VMs in {elapsed:.1f} s: {self.ok} ok, {failed} failed"
            + (f" ({kinds})" if kinds else "")
            + f"\nrequests {stats.requests} ({stats.requests / elapsed:.1f}/s), "
            f"latency p50 {p50:.1f} ms p95 {p95:.1f} ms, "
            f"429s {stats.rate_limited}, retries {stats.retries}, "
            f"rate-limit wait {_per(stats.throttle_wait, stats.requests) * 1000:.0f} ms/request"
            + _rate_note(client)
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
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


# -- progress display ---------------------------------------------------------------------


def _progress_detail(p: BulkProgress) -> str:
    """Describe failures and rate limiting so far, for either progress display."""
    wait = p.throttle_wait / p.done * 1000 if p.done else 0.0
    return f"{p.failed} failed, {p.rate_limited} 429s, rate-limit wait {wait:.0f} ms/VM"


class _TextProgress:
    """A one-line progress display on stderr, used when rich is not installed."""

    def __init__(self, stream: IO[str], total: int | None) -> None:
        """Write to ``stream``; ``total`` is the input size when known."""
        self._stream = stream
        self._total = total
        self._last = 0.0

    def update(self, p: BulkProgress) -> None:
        """Redraw the line, at most ten times a second."""
        now = time.monotonic()
        if now - self._last < 0.1 and p.done != self._total:
            return
        self._last = now
        of = f"/{self._total}" if self._total is not None else ""
        self._stream.write(f"\r{p.done}{of} VMs, {_progress_detail(p)} ")
        self._stream.flush()

    def __enter__(self) -> _TextProgress:
        """Start showing progress."""
        return self

    def __exit__(self, *exc: object) -> None:
        """End the progress line."""
        self._stream.write("\n")


class _RichProgress:
    """A rich progress bar on stderr (the ``[cli]`` extra)."""

    def __init__(self, total: int | None) -> None:
        """Build the bar for ``total`` VMs (an open-ended bar when unknown)."""
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]fetching"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task("fetch", total=total, detail="")

    def update(self, p: BulkProgress) -> None:
        """Move the bar to the latest counts."""
        self._progress.update(self._task, completed=p.done, detail=_progress_detail(p))

    def __enter__(self) -> _RichProgress:
        """Start drawing the bar."""
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop drawing the bar, leaving it on screen."""
        self._progress.stop()


def _progress_display(total: int | None, enabled: bool) -> Any:
    """Return a progress display for stderr, or ``None`` when stderr is not a terminal."""
    if not enabled:
        return None
    if not os.environ.get("HOSTUP_ASYNC_NO_RICH"):
        try:
            return _RichProgress(total)
        except ImportError:
            pass  # rich comes with the [cli] extra; the plain line does without it
    return _TextProgress(sys.stderr, total)


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
    except OSError as exc:
        raise UsageError(f"cannot read the API key file: {exc.strerror}") from None
    if not key:
        raise UsageError(f"no API key: {args.api_key_file} is empty")
    return key


def _client(args: argparse.Namespace, **options: Any) -> HostUpClient:
    """Build the client from the common options; bad settings raise before any I/O."""
    return HostUpClient(_read_key(args), base_url=args.base_url, **options)


def _rejected_key(exc: AuthenticationError) -> UsageError:
    """Describe a 401 as a configuration error, without echoing the key."""
    rid = f", request_id={exc.request_id}" if exc.request_id else ""
    return UsageError(
        f"the API rejected the key (HTTP {exc.status}{rid}): check {API_KEY_ENV} or --api-key-file"
    )


async def _one(args: argparse.Namespace, out: IO[str]) -> int:
    """``details`` and ``billing``: print one decoded object as pretty JSON."""
    async with _client(args) as client:
        try:
            if args.command == "details":
                obj: Any = await client.get_vm_details(args.vmid)
            else:
                obj = await client.get_billing_cycle(args.vmid)
        except AuthenticationError as exc:
            raise _rejected_key(exc) from None
        except (ConfigurationError, InvalidVMIDError):
            raise
        except HostUpError as exc:
            line = json_encoder().encode({"error": error_object(exc)}).decode()
            print(line, file=out)
            print(f"hostup-async: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_FAILED
    raw = json_encoder(show_secrets=args.show_secrets).encode(python_names(obj))
    print(msgspec.json.format(raw, indent=2).decode(), file=out)
    return EXIT_OK


async def _bulk(
    client: HostUpClient,
    vmids: Iterable[int],
    total: int,
    args: argparse.Namespace,
    out: IO[str],
    stats: RunStats,
    show_progress: bool,
    write: Callable[[VMResult], None] | None = None,
) -> int:
    """Stream results as JSON Lines with a progress display; return the exit code."""
    encoder = json_encoder(show_secrets=args.show_secrets)
    display = _progress_display(total, show_progress)
    with display if display is not None else nullcontext():
        hook = display.update if display is not None else None
        stream = client.stream_vms(
            vmids,
            details=args.details,
            billing_cycle=args.billing,
            usage_log=args.usage_log,
            progress=hook,
        )
        # aclosing: leaving the loop early (a rejected key, a closed pipe) cancels what is in flight.
        async with aclosing(stream):
            async for result in stream:
                if isinstance(result.error, AuthenticationError):
                    # Every other VM would get the same 401: stop instead of sending the rest.
                    raise _rejected_key(result.error)
                stats.add(result)
                if write is not None:
                    write(result)
                else:
                    out.write(encoder.encode(result_object(result)).decode() + "\n")
    return EXIT_OK if not stats.failures else EXIT_FAILED


async def _fetch(args: argparse.Namespace, out: IO[str]) -> int:
    """``fetch``: bulk-fetch VMs as JSON Lines, with progress and a closing summary."""
    tokens = list(args.vmids)
    if args.from_file is not None:
        tokens += _tokens_from_file(args.from_file)
    ranges, total = parse_vmids(tokens)
    if not ranges:
        raise UsageError("no vmids given: pass ids or ranges, or --from-file")
    stats = RunStats()
    options: dict[str, Any] = {"on_attempt": stats.on_attempt}
    if args.concurrency is not None:
        options["max_concurrency"] = args.concurrency
    if args.rate is not None:
        options["rate_limit"] = args.rate or None  # --rate 0: no client-side limit
    client = _client(args, **options)
    # Opened only now, so a bad setting or vmid does not truncate an existing file.
    sink = _open_out(args.out) if args.out else nullcontext(out)
    with sink as target:
        async with client:
            code = await _bulk(
                client,
                itertools.chain(*ranges),
                total,
                args,
                target,
                stats,
                show_progress=sys.stderr.isatty() and not args.quiet,
            )
            print(stats.summary(client), file=sys.stderr)
    return code


def _open_out(path: str) -> AbstractContextManager[IO[str]]:
    """Open ``--out`` for writing; an unwritable path is a usage error."""
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


# The demo fleet: realistic trouble, small enough to finish in a few seconds.
_DEMO_FLEET = 400
_DEMO_FORBIDDEN = frozenset(range(37, _DEMO_FLEET, 53))
_DEMO_MISSING = frozenset(range(90, _DEMO_FLEET, 97))
_DEMO_SERVER_LIMIT = 150  # requests per second the fake accepts
_DEMO_CLIENT_RATE = 250.0  # set above the server's hidden limit on purpose


async def _demo(args: argparse.Namespace, out: IO[str]) -> int:
    """``demo``: run a bulk fetch against the embedded fake server and summarise it."""
    from .testing import FakeHostUp

    key = "demo-key"
    fake = FakeHostUp(
        api_key=key,
        forbidden=_DEMO_FORBIDDEN,
        missing=_DEMO_MISSING,
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
            args.details, args.billing, args.usage_log = True, True, True
            await _bulk(
                client,
                range(1, _DEMO_FLEET + 1),
                _DEMO_FLEET,
                args,
                out,
                stats,
                show_progress=sys.stderr.isatty(),
                write=keep,
            )
            for result in sorted(shown, key=lambda r: int(r.vmid)):
                vm, bc = result.details, result.billing_cycle
                assert vm is not None and bc is not None
                sent = sum(s.data_sent for s in vm.usage_log.values()) / 1e9
                price = next((c.price for c in bc.cycles if c.is_current), Decimal(0))
                print(
                    f"  vm {result.vmid:>4}  {vm.hostname:<20} {vm.cpu} cores {vm.ram:g} GB  "
                    f"{vm.vm_status:<8} {sent:7.1f} GB sent/{len(vm.usage_log)} h  "
                    f"{bc.current_name} {price} {vm.pricing.currency if vm.pricing else ''}",
                    file=out,
                )
            print(stats.summary(client), file=sys.stderr)
    return EXIT_OK


async def _serve_fake(args: argparse.Namespace, out: IO[str]) -> int:
    """``serve-fake``: run the fake API until interrupted."""
    from .testing import FakeHostUp

    fake = FakeHostUp(
        api_key=args.fake_key,
        port=args.port,
        rate_limit=args.rate_limit,
        usage_log_hours=args.hours,
    )
    try:
        await fake.start()
    except OSError as exc:
        raise UsageError(f"cannot listen on port {args.port}: {exc.strerror}") from None
    try:
        print(
            f"fake HostUp API at {fake.url} (X-API-Key: {args.fake_key}); Ctrl-C stops it", file=out
        )
        out.flush()
        await asyncio.Event().wait()
    finally:
        await fake.stop()
    return EXIT_OK  # pragma: no cover - only reached by cancellation


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


def _rate(text: str) -> float:
    """Parse ``--rate``: a finite number of requests per second, 0 for no client limit."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more: {text!r}")
    return value


_EPILOG = f"""\
The API key is read from the {API_KEY_ENV} environment variable, or from --api-key-file;
it is never printed.

exit codes:
  0    every VM fetched
  1    some VMs failed (their errors are in the output)
  2    usage or configuration error: bad vmid or option, no key, a key the API rejects
  130  interrupted (Ctrl-C)
  141  stdout closed early (for example by `| head`)
"""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the contract), not a usage block."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` in one line and exit with the usage error code."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for every subcommand."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--base-url",
        default=os.environ.get("HOSTUP_BASE_URL", DEFAULT_BASE_URL),
        help="API root (default: %(default)s)",
    )
    common.add_argument(
        "--api-key-file",
        metavar="FILE",
        help=f"read the API key from FILE instead of ${API_KEY_ENV}",
    )
    common.add_argument(
        "--show-secrets", action="store_true", help="print VM passwords instead of **********"
    )

    parser = _Parser(
        prog="hostup-async",
        description="Fetch HostUp VMs from the command line.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hostup-async {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    hours = _int_in("a number of hours", 0)

    for name, what in (("details", "a VM's details"), ("billing", "a VM's billing cycle")):
        p = sub.add_parser(name, parents=[common], help=f"print {what} as JSON")
        p.add_argument("vmid", type=_int_in("a vmid", 1))

    fetch = sub.add_parser(
        "fetch",
        parents=[common],
        help="bulk-fetch VMs as JSON Lines",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fetch.add_argument(
        "vmids", nargs="*", metavar="VMIDS", help="ids and ranges such as 7 100-200 or 1,2,5"
    )
    fetch.add_argument("--from-file", metavar="F", help="read vmids from F (- for stdin)")
    fetch.add_argument("--billing", action="store_true", help="also fetch billing cycles")
    fetch.add_argument(
        "--no-details",
        dest="details",
        action="store_false",
        help="skip details (use with --billing)",
    )
    fetch.add_argument(
        "--no-usage-log",
        dest="usage_log",
        action="store_false",
        help="skip decoding usage logs (faster)",
    )
    fetch.add_argument(
        "--concurrency",
        type=_int_in("an integer", 1, MAX_CONCURRENCY_LIMIT),
        help="requests in flight",
    )
    fetch.add_argument("--rate", type=_rate, help="requests per second (0: no client limit)")
    fetch.add_argument("--out", metavar="FILE", help="write JSON Lines to FILE")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")

    demo = sub.add_parser("demo", help="bulk-fetch from an embedded fake server (no key needed)")
    demo.add_argument("--hours", type=hours, default=24, help="usage-log hours per VM")
    demo.set_defaults(show_secrets=False)

    serve = sub.add_parser("serve-fake", help="run the fake HostUp API on loopback")
    serve.add_argument(
        "--port", type=_int_in("a port", 0, 65535), default=8080, help="0 picks a free port"
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
    serve.add_argument("--hours", type=hours, default=24, help="usage-log hours per VM")
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
    args = parser.parse_args(argv)
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
