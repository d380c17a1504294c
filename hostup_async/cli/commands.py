"""The commands that call the API: ``details``, ``billing`` and ``fetch``."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager, aclosing, nullcontext
from dataclasses import dataclass
from typing import IO, Any

import msgspec

from .._bulk import VMResult
from .._client import HostUpClient
from .._constants import (
    API_KEY_ENV,
)
from .._exceptions import (
    AuthenticationError,
    ConfigurationError,
    HostUpError,
    InvalidVMIDError,
)
from .._export import json_encoder, python_names
from .diagnosis import rejected_key, unless_unreachable, wrong_url
from .errors import EXIT_FAILED, EXIT_OK, UsageError
from .output import error_text, formatter, plural
from .progress import isatty, progress_display
from .stats import RunStats
from .vmids import VMIDSyntaxError, fetch_vmids, parse_one

__all__ = ["BulkOptions", "configure_logging", "run_bulk", "run_fetch", "run_one"]

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


def configure_logging(args: argparse.Namespace) -> None:
    """With ``-v``, log every attempt (the SDK's DEBUG log) to stderr."""
    if getattr(args, "verbose", False):
        logging.basicConfig(stream=sys.stderr, format="%(name)s: %(message)s")
        logging.getLogger("hostup_async").setLevel(logging.DEBUG)


async def run_one(args: argparse.Namespace, out: IO[str]) -> int:
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
            obj = await unless_unreachable(call, stats, client.base_url)
        except AuthenticationError as exc:
            raise rejected_key(exc) from None
        except (ConfigurationError, InvalidVMIDError):
            raise
        except HostUpError as exc:
            wrong = wrong_url(exc, stats, client.base_url)
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
class BulkOptions:
    """What a bulk run fetches and how it writes it: ``fetch``'s options, or the demo's own."""

    details: bool = True
    billing: bool = True
    usage_log: bool = True
    output_format: str = "jsonl"
    show_secrets: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BulkOptions:
        """The options ``fetch`` was given."""
        return cls(args.details, args.billing, args.usage_log, args.format, args.show_secrets)


async def run_bulk(
    client: HostUpClient,
    vmids: Iterable[int],
    total: int,
    options: BulkOptions,
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
    shared = show_progress and out is sys.stdout and isatty(out)
    display = progress_display(out if shared else sys.stderr, total) if show_progress else None

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
                    raise rejected_key(result.error)
                if result.error is not None:
                    wrong = wrong_url(result.error, stats, client.base_url)
                    if wrong is not None:
                        raise wrong
                stats.add(result)
                if write is not None:
                    write(result)
                else:
                    emit(fmt.line(result))
    return EXIT_OK if not stats.failures else EXIT_FAILED


async def run_fetch(args: argparse.Namespace, out: IO[str]) -> int:
    """``fetch``: bulk-fetch VMs, with progress and a closing summary."""
    if not args.details and not args.billing:
        raise UsageError("nothing to fetch: --no-details needs --billing")
    parsed = fetch_vmids(args)
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
                work = run_bulk(
                    client,
                    itertools.chain(*parsed.ranges),
                    parsed.total,
                    BulkOptions.from_args(args),
                    target,
                    stats,
                    show_progress=isatty(sys.stderr) and not args.quiet and not args.verbose,
                )
                code = await unless_unreachable(work, stats, client.base_url)
            except (asyncio.CancelledError, KeyboardInterrupt):
                target.flush()
                print(stats.summary(client, total=parsed.total), file=sys.stderr)
                raise
            summary = stats.summary(client)
            if parsed.duplicates:
                summary += f"\n{plural(parsed.duplicates, 'duplicate vmid')} fetched once"
            print(summary, file=sys.stderr)
    return code


def _open_out(path: str) -> AbstractContextManager[IO[str]]:
    """Open ``--out`` for writing; an unwritable path is a usage error."""
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write --out {path}: {exc.strerror}") from None
