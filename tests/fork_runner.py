"""Run scripts as ``python -W error -c CODE`` would, each in a process of its own, forked.

``python tests/fork_runner.py`` imports what the docs' scripts import (under ``-W error``: an
import that warns fails here), then answers each request line on stdin, a JSON object
``{"how", "code", "where", "cwd", "env", "out", "err"}``, by forking a child that runs the
script and replying ``{"status": N}``, the child's exit status (negative: the signal that
ended it). The child starts where a fresh interpreter would be once those imports are done,
about 0.4 s of CPU sooner: its own ``__main__``, ``sys.argv``, environment, working folder,
stdout and stderr in files, warnings as errors, and an ordinary interpreter exit (atexit
hooks, finalizers, the garbage collector's last pass).

``how`` is ``python`` (a whole script), ``asyncio`` (top-level ``await``, as ``python -m
asyncio`` and Jupyter run it) or ``pytest`` (``code`` is a test file's path and its options).
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import json
import os
import signal
import sys
import traceback
import types
import warnings
from typing import Any

import pytest

#: What the docs' scripts import, imported once here, as errors if they warn (``-W error``);
#: and pytest's asyncio plugin and this package's, for the blocks of tests.
PRELOAD = (
    "aiohttp",
    "msgspec",
    "hostup_async",
    "hostup_async.sync",
    "hostup_async.testing",
    "hostup_async.testing.pytest_plugin",
    "pytest_asyncio",
)

#: A child still running after this many seconds is ended by SIGALRM (a hung script).
TIMEOUT = 60


def run(how: str, code: str, where: str) -> int:
    """The script's exit status, as its interpreter would end with it."""
    if how == "pytest":  # python -m pytest: the interpreter's default warning filters
        return int(pytest.main(json.loads(code)))
    main = types.ModuleType("__main__")  # what pickle and multiprocessing find as __main__
    sys.modules["__main__"] = main
    sys.argv = ["-c"] if how == "python" else ["-c", where]
    warnings.resetwarnings()
    warnings.simplefilter("error")  # -W error
    sys.warnoptions[:] = ["error"]  # ... and for the processes the script starts
    try:
        if how == "python":
            exec(compile(code, where, "exec"), main.__dict__)
        else:
            flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
            compiled = compile(code, where, "exec", flags=flags)

            async def top_level() -> None:
                result = eval(compiled, main.__dict__)
                if inspect.iscoroutine(result):
                    await result

            asyncio.run(top_level())
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def child(request: dict[str, Any]) -> None:
    """In the forked child: become the script's process, run it, exit with its status."""
    signal.alarm(TIMEOUT)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["out"]), (2, request["err"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    status = run(request["how"], request["code"], request["where"])
    sys.exit(status)  # the interpreter's own exit: atexit hooks, flushes, finalizers


def serve() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in PRELOAD:
            importlib.import_module(name)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(request)
        _, wait_status = os.waitpid(pid, 0)
        print(json.dumps({"status": os.waitstatus_to_exitcode(wait_status)}), flush=True)


if __name__ == "__main__":
    serve()
