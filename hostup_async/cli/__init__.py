"""The ``hostup-async`` command line: fetch VMs as JSON, bulk-fetch as JSON Lines, run a demo.

Exit codes: 0 when everything succeeded, 1 when some VM (or the one VM) failed, 2 for a
usage or configuration error (bad vmid, no key, a key the API rejects, a base URL where no
HostUp API answers), always with a one-line message; 130 when interrupted, 141 when stdout
is closed early (``| head``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import IO, Any

from .._exceptions import ConfigurationError, HostUpError, InvalidVMIDError
from .commands import configure_logging, run_fetch, run_one
from .demo import run_demo, run_serve_fake
from .errors import EXIT_BROKEN_PIPE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, UsageError
from .output import error_object, result_object
from .parser import build_parser
from .stats import _percentile
from .vmids import parse_vmids

__all__ = [
    "UsageError",
    "_percentile",
    "build_parser",
    "error_object",
    "main",
    "parse_vmids",
    "result_object",
]

_COMMANDS: dict[str, Callable[[argparse.Namespace, IO[str]], Coroutine[Any, Any, int]]] = {
    "details": run_one,
    "billing": run_one,
    "fetch": run_fetch,
    "demo": run_demo,
    "serve-fake": run_serve_fake,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Point at the command's own help, where its options are listed.
        args.subparsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    configure_logging(args)
    try:
        code = asyncio.run(_until_interrupted(_COMMANDS[args.command](args, sys.stdout)))
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


async def _until_interrupted(command: Coroutine[Any, Any, int]) -> int:
    """Run ``command``; Ctrl-C cancels it, so it cleans up and reports, and exits 130.

    Python 3.11's ``asyncio.run`` cancels the task itself; 3.10's lets KeyboardInterrupt
    end it, and then logs the task's exception with a traceback. A handler on the loop does
    the same on both. Off the main thread (``main()`` called in-process) signals stay as
    they are.
    """
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, interrupt)
    except (ValueError, RuntimeError, NotImplementedError):
        return await command  # not the main thread, or a loop without signal handlers
    try:
        return await command
    except asyncio.CancelledError:
        if interrupted:
            return EXIT_INTERRUPTED
        raise
    finally:
        loop.remove_signal_handler(signal.SIGINT)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
