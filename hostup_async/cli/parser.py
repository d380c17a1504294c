"""The argument parser: every subcommand, its options and their checks."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from typing import NoReturn

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
from .._version import __version__
from .errors import EXIT_USAGE
from .output import FORMATS

__all__ = ["build_parser"]

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
