"""The documentation stays true: its code runs, its tables and reference cover the public API.

Every ```python block in docs/*.md compiles, and every block not marked ``<!-- no-run ... -->``
runs as a reader would run it: a complete block as ``python file.py``, a block starting
``# continued`` appended to the block before it, a block with top-level ``await`` as
``python -m asyncio`` (or Jupyter) runs it, and a block of ``test_`` functions with pytest.
All of them run against ``hostup-async serve-fake`` with ``HOSTUP_API_KEY`` and
``HOSTUP_BASE_URL`` set, so the copy-paste pages carry no hidden set-up. Each runs in a process
of its own, forked from one that has imported the package (``tests/fork_runner.py``); the
examples in tests/test_examples.py start from a bare interpreter. Docstring examples
are run with doctest.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import importlib.util
import inspect
import itertools
import json
import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from types import ModuleType

import msgspec
import pytest

import hostup_async
import hostup_async.testing
from hostup_async import _exceptions
from hostup_async.testing import FakeHostUp

from .conftest import USERS_PYTEST, unmeasured_env

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
FENCE = re.compile(r"^(?P<marker><!-- no-run[^>]*-->\n)?```python\n(?P<code>.*?)^```$", re.M | re.S)
CONTINUED = "# continued"
# The pages a newcomer copies from: every block on them runs, none is no-run.
COPY_PASTE_PAGES = {
    "docs/getting-started.md",
    "docs/bulk.md",
    "docs/retries.md",
    "docs/errors.md",
    "docs/testing.md",
    "docs/scripts-and-notebooks.md",
}


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    code: str
    run: bool

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def continued(self) -> bool:
        return self.code.startswith(CONTINUED)


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for m in FENCE.finditer(text):
        if m["code"].lstrip().startswith("--8<--"):
            continue  # an included example file: tests/test_examples.py runs those
        line = text.count("\n", 0, m.start("code")) + 1
        name = str(page.relative_to(ROOT))
        found.append(Block(name, line, m["code"], run=m["marker"] is None))
    return found


ALL_BLOCKS = [b for page in PAGES for b in blocks(page)]


@dataclass(frozen=True)
class Script:
    """What a reader runs: a complete block, with the blocks that continue it."""

    where: str
    code: str

    @property
    def how(self) -> str:
        """``python``, ``asyncio`` (top-level await, as in Jupyter) or ``pytest``."""
        if re.search(r"^(async )?def test_", self.code, re.M):
            return "pytest"
        try:
            compile(self.code, self.where, "exec")
        except SyntaxError:
            return "asyncio"  # test_every_block_compiles shows it compiles with await
        return "python"


def scripts(page: str) -> list[Script]:
    found: list[Script] = []
    for block in (b for b in ALL_BLOCKS if b.page == page and b.run):
        if block.continued:
            assert found, f"{block.where}: continues no block before it"
            last = found.pop()
            found.append(Script(last.where, last.code + "\n" + block.code))
        else:
            found.append(Script(block.where, block.code))
    return found


def test_the_docs_have_code() -> None:
    assert len(ALL_BLOCKS) >= 20
    assert sum(b.run for b in ALL_BLOCKS) >= 15


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: b.where)
def test_every_block_compiles(block: Block) -> None:
    compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_copy_paste_pages_run_every_block() -> None:
    pages = {b.page for b in ALL_BLOCKS}
    assert pages >= COPY_PASTE_PAGES
    assert not [b.where for b in ALL_BLOCKS if b.page in COPY_PASTE_PAGES and not b.run]


def test_a_continued_block_follows_a_runnable_one() -> None:
    for page in {b.page for b in ALL_BLOCKS}:
        runnable = [b for b in ALL_BLOCKS if b.page == page]
        for before, block in itertools.pairwise(runnable):
            if block.continued:
                assert before.run and block.run, block.where
        assert not (runnable and runnable[0].continued), runnable[0].where


class ForkRunner:
    """``tests/fork_runner.py``: each script in a process of its own, forked once the imports
    every block needs are done (0.4 s of CPU a block fewer than a fresh interpreter)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "fork_runner.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=unmeasured_env(),
        )
        assert "ready" in self.reply(), "fork_runner.py did not start"

    def reply(self) -> dict[str, int]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "fork_runner.py ended"
        answer: dict[str, int] = json.loads(line)
        return answer

    def run(
        self, how: str, code: str, where: str, env: dict[str, str], cwd: Path
    ) -> tuple[int, str, str]:
        """Run one script in ``cwd`` with ``env``; its exit status, stdout and stderr."""
        out, err = cwd / "stdout.txt", cwd / "stderr.txt"
        request = {"how": how, "code": code, "where": where, "env": env, "cwd": str(cwd)}
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request | {"out": str(out), "err": str(err)}) + "\n")
        self.proc.stdin.flush()
        status = self.reply()["status"]
        return status, out.read_text(encoding="utf-8"), err.read_text(encoding="utf-8")

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()  # the runner's loop ends
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def fork_runner() -> Iterator[ForkRunner]:
    if not hasattr(os, "fork"):
        pytest.skip("the docs' scripts are run in forked processes (POSIX)")
    runner = ForkRunner()
    try:
        yield runner
    finally:
        runner.close()


@pytest.fixture(scope="module")
def serve_fake() -> Iterator[str]:
    """``hostup-async serve-fake`` on a free port, as the getting-started page runs it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hostup_async", "serve-fake", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=unmeasured_env(),
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        found = re.search(r"(http://\S+/api)", banner)
        assert found, banner
        yield found[1]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


ALL_SCRIPTS = [script for page in sorted({b.page for b in ALL_BLOCKS}) for script in scripts(page)]


@pytest.mark.parametrize("script", ALL_SCRIPTS, ids=lambda s: s.where)
def test_docs_code_runs_against_serve_fake(
    script: Script, serve_fake: str, fork_runner: ForkRunner, tmp_path: Path
) -> None:
    """Each script as ``python -W error -c``, ``python -m asyncio`` or ``python -m pytest``
    runs it, in a process of its own (forked by ``tests/fork_runner.py``)."""
    if sys.version_info < (3, 11) and "Python 3.11+" in script.code:
        pytest.skip("the block says it needs Python 3.11+ (asyncio.timeout)")
    env = {k: v for k, v in unmeasured_env().items() if not k.startswith("HOSTUP_")}
    env |= {"HOSTUP_API_KEY": "test-key", "HOSTUP_BASE_URL": serve_fake}
    code = script.code
    if script.how == "pytest":
        path = tmp_path / "test_docs_block.py"
        path.write_text(script.code, encoding="utf-8")
        code = json.dumps(["-q", *USERS_PYTEST, str(path)])
    status, out, err = fork_runner.run(script.how, code, script.where, env, tmp_path)
    assert status == 0, f"{script.how}:\n{out}{err}"
    if script.how != "pytest":
        assert err == "" or "logging" in script.code, err  # no warning


def test_no_run_blocks_say_why() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in PAGES)
    markers = re.findall(r"<!-- no-run(.*?)-->", text)
    assert markers
    assert all(m.strip().startswith(":") and len(m) > 5 for m in markers), markers


# -- the docs cover the API -------------------------------------------------------------


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def reference() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in (DOCS / "reference").glob("*.md"))


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("hostup_async", sorted(set(hostup_async.__all__) - {"__version__"})),
        ("hostup_async.testing", sorted(hostup_async.testing.__all__)),
    ],
)
def test_every_public_name_is_in_the_api_reference(module: str, names: list[str]) -> None:
    ref = reference()
    missing = [n for n in names if f"::: {module}.{n}\n" not in ref]
    assert not missing


def fenced_tree(text: str) -> str:
    start = text.index("HostUpError\n├")
    return text[start : text.index("```", start)].strip()


def test_error_tree_is_the_one_in_the_code() -> None:
    assert _exceptions.__doc__ is not None
    assert fenced_tree(page("errors.md")) == fenced_tree(_exceptions.__doc__)


def test_error_tree_names_every_error() -> None:
    tree = fenced_tree(page("errors.md"))
    errors = {
        name
        for name in hostup_async.__all__
        if isinstance(getattr(hostup_async, name), type)
        and issubclass(getattr(hostup_async, name), hostup_async.HostUpError)
    }
    assert errors == {"HostUpError", *re.findall(r"[├└]── (\w+)", tree)}


def field_rows(text: str) -> set[str]:
    return set(re.findall(r"^\| `(\w+)`", text, re.M))


@pytest.mark.parametrize(
    "struct",
    [
        hostup_async.VMDetails,
        hostup_async.UsageSample,
        hostup_async.BandwidthUsage,
        hostup_async.Credentials,
        hostup_async.Pricing,
        hostup_async.PricingCycle,
        hostup_async.BillingCycle,
        hostup_async.CycleOption,
    ],
)
def test_models_page_has_a_row_for_every_field(struct: type[msgspec.Struct]) -> None:
    text = page("models.md")
    heading = re.search(rf"^#+ {struct.__name__}\n", text, re.M)
    assert heading is not None
    section = text[heading.end() :]
    table = section[: section.index("\n\n", section.index("|---"))]
    documented = re.findall(r"^\| `(\w+)`", table, re.M)
    assert documented == [f.name for f in msgspec.structs.fields(struct)]


def test_bulk_and_retry_pages_have_a_row_for_every_field() -> None:
    bulk, retries = field_rows(page("bulk.md")), page("retries.md")
    assert {f.name for f in msgspec.structs.fields(hostup_async.VMResult)} | {"ok"} <= bulk
    progress = msgspec.structs.fields(hostup_async.BulkProgress)
    assert {f.name for f in progress} | {"ok"} <= bulk | {"failed"}
    assert all(f"`{f.name}`" in retries for f in fields(hostup_async.AttemptEvent))


def test_testing_page_has_a_row_for_every_fake_server_option() -> None:
    text = page("testing.md")
    options = set(inspect.signature(FakeHostUp).parameters)
    missing = [o for o in options if f"`{o}`" not in text]
    assert not missing


def test_getting_started_lists_every_client_option() -> None:
    rows = field_rows(page("getting-started.md"))
    assert set(inspect.signature(hostup_async.HostUpClient).parameters) <= rows


# -- docstrings -------------------------------------------------------------------------


def package_modules() -> list[ModuleType]:
    names = [
        m.name
        for m in pkgutil.walk_packages(hostup_async.__path__, "hostup_async.")
        if not m.name.endswith("__main__")  # importing it runs the command line
    ]
    return [hostup_async, *(importlib.import_module(n) for n in sorted(names))]


def test_docstring_examples_pass_doctest() -> None:
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for module in package_modules():
        for test in finder.find(module):
            runner.run(test)
    assert runner.failures == 0


def test_fenced_examples_in_docstrings_compile() -> None:
    count = 0
    for module in package_modules():
        docs = [module.__doc__ or ""] + [
            obj.__doc__ or ""
            for _, obj in inspect.getmembers(module)
            if (inspect.isclass(obj) or inspect.isfunction(obj))
            and obj.__module__ == module.__name__
        ]
        for doc in docs:
            for code in re.findall(r"```python\n(.*?)```", inspect.cleandoc(doc), re.S):
                compile(code, module.__name__, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
                count += 1
    assert count >= 1


# -- the benchmarks page ----------------------------------------------------------------


def bench_hook() -> ModuleType:
    path = DOCS / "_hooks" / "benchmark_results.py"
    spec = importlib.util.spec_from_file_location("bench_hook", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmarks_page_has_the_marker_the_hook_fills() -> None:
    assert bench_hook().MARKER in page("benchmarks.md")


def test_benchmarks_hook_renders_machine_targets_and_chart() -> None:
    memory = {
        "hours": 720,
        "ratio": 1.203,
        "runs": {
            str(n): {
                "n": n,
                "ok": n,
                "peak_rss_kib": kib,
                "baseline_rss_kib": 40960,
                "seconds": 2.0,
            }
            for n, kib in ((2000, 51200), (20000, 61594))
        },
        "measured": {"at": "2026-01-02T03:04:05+00:00", "git": "abc1234"},
    }
    results = {
        "machine": {"cpu": "Test CPU", "logical_cores": 2, "python": "3.11.7"},
        "benchmarks": {
            "memory": memory,
            "decode": {"cases": "not what the module reads"},
            "retired": {"runs": {}},
        },
    }
    text = bench_hook().render(results, chart=True)
    assert "Measured on Test CPU, 2 logical cores, Python 3.11.7" in text
    # The targets come from the benchmark's own TARGETS, evaluated over its figures.
    assert "**0 of 1 targets hold; 1 do not**" in text
    assert "| memory: peak RSS 20k / 2k VMs | 1.203 | <= 1.15 | **NO** |" in text
    assert "](img/benchmark-targets.png)" in text
    # The memory section is the module's own table; the unreadable decode part and a
    # benchmark with no module are left out, not broken tables.
    assert "*Measured 2026-01-02 at commit `abc1234`.*" in text
    assert "| 20,000 VMs | 60.2 | 20.2 | 2.0 |" in text
    assert text.count("\n### ") == 1
    assert "nox -s bench" in bench_hook().render(None, chart=False)


def test_benchmark_targets_reach_every_case_a_wildcard_names() -> None:
    targets = bench_hook().benchmarks._targets
    target = targets.Target("R={}: share", ("runs", "*", "share"), "<=", 1.0)
    rows = targets.evaluate(
        [target], {"runs": {"20": {"share": 0.5}, "100": {"share": 1.5}, "x": {"other": 1}}}
    )
    assert [(r["target"], r["holds"]) for r in rows] == [
        ("R=20: share", True),
        ("R=100: share", False),
    ]
    assert targets.evaluate([target], {"runs": "not a mapping"}) == []


def test_benchmarks_hook_renders_the_latest_results_if_any() -> None:
    hook = bench_hook()
    results = hook.load()
    if results is None:
        assert "No results yet" in hook.render(None, chart=False)
        return
    text = hook.render(results, chart=False)
    bench = results["benchmarks"]
    # Every benchmark in the file gets its section, every target reaches a figure (a
    # renamed key would silently drop it), and the page's verdicts are the run's: the file
    # was re-reported after the targets last changed (`python -m benchmarks --report`).
    assert text.count("\n### ") == len(bench)
    for name, figures in bench.items():
        for target in hook.benchmarks.load(name).TARGETS:
            assert hook.benchmarks._targets.evaluate([target], figures), target.name
    assert hook._report.targets(bench) == results["targets"]
    for target in results["targets"]:
        verdict = "yes" if target["holds"] else "**NO**"
        assert re.search(
            rf"^\| {re.escape(target['target'])} \|.*\| {re.escape(verdict)} \|$", text, re.M
        )
