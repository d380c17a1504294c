"""MkDocs hook: put the latest benchmark results (targets, chart, tables) into docs/benchmarks.md.

The page holds a ``<!-- bench:results -->`` marker; at build time it is replaced by what the
``benchmarks`` package makes of ``benchmarks/results/latest.json``: every benchmark's
``TARGETS`` evaluated over its figures and its ``tables()``, the same data and code the run
prints, so this hook knows no benchmark's layout. Without results, the page says how to
produce them. Rendering never fails the build: a part the package cannot read is left out.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import benchmarks  # noqa: E402
from benchmarks import _report  # noqa: E402
from benchmarks._harness import Table  # noqa: E402

RESULTS = _report.LATEST
CHART = _report.CHART
CHART_URI = "img/benchmark-targets.png"  # where the chart lands in the site
MARKER = "<!-- bench:results -->"


def load() -> dict[str, Any] | None:
    """Return the latest results, or ``None`` when there are none (or they are unreadable)."""
    try:
        results = json.loads(RESULTS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) else None


def _machine(results: dict[str, Any]) -> list[str]:
    m = results.get("machine") or {}
    return [
        f"Measured on {m.get('cpu', '?')}, {m.get('logical_cores', '?')} logical cores, "
        f"Python {m.get('python', '?')} ({m.get('implementation', '?')}), "
        f"{m.get('platform', '?')}.",
        "",
    ]


def _measured(figures: dict[str, Any]) -> list[str]:
    stamp = figures.get("measured")
    if not isinstance(stamp, dict):
        return []
    packages = ", ".join(f"{k} {v}" for k, v in (stamp.get("packages") or {}).items())
    return [
        f"*Measured {str(stamp.get('at', '?'))[:10]} at commit `{stamp.get('git', '?')}`"
        + (f"; {packages}.*" if packages else ".*"),
        "",
    ]


def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown_table(t: Table) -> list[str]:
    """A benchmark's table as Markdown: the first column left-aligned, the figures right."""
    lines = [
        f"**{t.title}**",
        "",
        _row(t.header),
        "|---|" + "---:|" * (len(t.header) - 1),
        *(_row(r) for r in t.rows),
        "",
    ]
    return [*lines, t.note, ""] if t.note else lines


def _targets(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    failed = [r for r in rows if not r["holds"]]
    if failed:
        summary = (
            f"**{len(rows) - len(failed)} of {len(rows)} targets hold; {len(failed)} do not** "
            "(marked **NO** below)."
        )
    else:
        summary = f"All {len(rows)} targets hold."
    table = _report.targets_table(rows)
    lines = [summary, "", _row(table.header), "|---|---:|---:|:---:|"]
    for cells in table.rows:
        *rest, holds = cells
        lines.append(_row([*rest, "yes" if holds == "yes" else "**NO**"]))
    return [*lines, ""]


def _section(name: str, figures: Any) -> list[str]:
    """A benchmark's heading, when it was measured, and its tables; nothing if unreadable."""
    module = benchmarks.load(name)
    try:
        tables = module.tables(figures)
    except (AttributeError, KeyError, TypeError, ValueError, StopIteration):
        return []  # figures in a layout the module no longer reads: leave them out
    lines = [f"### {module.TITLE}", "", *_measured(figures)]
    for t in tables:
        lines += markdown_table(t)
    return lines


def render(results: dict[str, Any] | None, chart: bool) -> str:
    """Return the Markdown for the results, or a note on how to produce them."""
    if not results:
        return "No results yet: run `nox -s bench` and rebuild the docs."
    bench = results.get("benchmarks")
    if not isinstance(bench, dict):
        bench = {}
    lines = _machine(results)
    if results.get("quick"):
        lines += ["These are the small sizes of a `--quick` smoke run, not real figures.", ""]
    lines += _targets(_report.targets(bench))
    if chart:
        lines += [f"![Each target as a share of its allowance]({CHART_URI})", ""]
    for name in benchmarks.names():
        if name in bench:
            lines += _section(name, bench[name])
    return "\n".join(lines).rstrip() + "\n"


def on_files(files: Any, config: Any) -> Any:
    """Add the chart to the site, when there is one."""
    if CHART.is_file():
        from mkdocs.structure.files import File

        files.append(File.generated(config, CHART_URI, abs_src_path=str(CHART)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Fill the benchmarks page's marker with the latest results."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render(load(), CHART.is_file()))
