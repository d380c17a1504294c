"""What every benchmark shares: the fake server's process, the machine's description, tables.

A benchmark module uses these and nothing else from the package; it never prints or saves
by itself (``_report`` does both).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hostup-async", "msgspec", "aiohttp", "orjson", "pydantic", "httpx")


@dataclass(frozen=True)
class Table:
    """One table of a benchmark's figures, already formatted: printed by the run, shown by the docs."""

    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    note: str = ""


def print_table(t: Table) -> None:
    """Print a table aligned: the first column left, the others right."""
    cells = [[str(c) for c in row] for row in [t.header, *t.rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(t.header))]
    print(f"\n## {t.title}")
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))
    if t.note:
        print(t.note)
    sys.stdout.flush()


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, Python and package versions, and the git commit."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:  # psutil is in the bench group; the docs build may lack it
        physical = None
    packages: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "git": git_state(),
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "physical_cores": physical,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": packages,
    }


def git_state() -> str | None:
    """The commit the figures were measured at, marked ``+dirty`` when the package had changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "hostup_async"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return None
    return (head + ("+dirty" if dirty else "")) or None


@contextmanager
def fake_server(hours: int, **options: Any) -> Iterator[str]:
    """Run the fake server (``benchmarks._server``) in its own process; yield its base URL.

    ``options`` go to ``FakeHostUp`` (a hidden rate limit and its style, say).

    Its own process, so its CPU is not the client's and the two share the machine's cores
    as a real client and server would not: the figures are ratios for that reason.
    """
    with server_process(
        "benchmarks._server", "--hours", str(hours), "--fake", json.dumps(options)
    ) as url:
        yield url


@contextmanager
def server_process(module: str, *args: str) -> Iterator[str]:
    """Run ``python -m module *args``, which prints ``URL <base url>`` once serving; yield it.

    The server stops when its standard input closes, so it never outlives the benchmark.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("URL "):
            raise RuntimeError(f"fake server did not start: {line!r}")
        yield line.split()[1]
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the server stops when its stdin closes
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_route(url: str, route: str, method: str = "GET") -> Any:
    """Call one of the fake server's ``/_bench/`` routes; return its decoded JSON."""
    req = urllib.request.Request(url.removesuffix("/api") + "/_bench/" + route, method=method)
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def server_cpu(url: str) -> float:
    """CPU seconds the fake server process has used so far."""
    return float(server_route(url, "cpu")["cpu"])


VALGRIND = shutil.which("valgrind")


def instructions(module: str, *args: str) -> int:
    """Instructions that ``python -m module *args`` executes, counted by valgrind's callgrind.

    A count of the work done, not of the time it took: it does not move with the machine's
    load, its clock speed or what other processes run, where process time moves by a quarter
    from one run to the next. A fixed hash seed keeps dict and set orders the same.
    """
    if VALGRIND is None:
        raise RuntimeError("valgrind is not installed (apt-get install valgrind)")
    callgrind = (VALGRIND, "--tool=callgrind", "--callgrind-out-file=/dev/null")
    done = subprocess.run(
        [*callgrind, sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"python -m {module} under callgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def instructions_per_item(
    module: str, args: Callable[[int], Sequence[str]], small: int, large: int
) -> float:
    """Instructions one more item costs: the counts of a ``large`` and a ``small`` run, apart.

    The difference leaves out what both runs pay once (the interpreter, imports, connecting),
    so the figure is the cost of an item in a run that has warmed up.
    """
    with ThreadPoolExecutor(2) as pool:  # the two runs side by side: counts ignore the load
        big, little = pool.map(lambda n: instructions(module, *args(n)), (large, small))
    return (big - little) / (large - small)


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """The first and third quartiles of ``values``: the middle half of the runs lies between."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (0.0, 0.0)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]
