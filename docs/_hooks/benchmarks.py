"""MkDocs hook: put the latest benchmark results (tables and chart) into docs/benchmarks.md.

The page holds a ``<!-- bench:results -->`` marker; at build time it is replaced by the figures
in ``benchmarks/results/latest.json`` and the chart ``benchmarks/results/ratios.png``, so the
site always shows what ``nox -s bench`` last measured. Without results, the page says how to
produce them. Rendering never fails the build: unknown or missing parts are left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
CHART = ROOT / "benchmarks" / "results" / "ratios.png"
CHART_URI = "img/benchmark-targets.png"  # where the chart lands in the site
MARKER = "<!-- bench:results -->"


def load() -> dict[str, Any] | None:
    """Return the latest results, or ``None`` when there are none (or they are unreadable)."""
    try:
        results = json.loads(RESULTS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) else None


def _fmt(value: Any) -> str:
    """Format a figure compactly: ``0.749``, ``1.1``, ``35.9``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"


def _machine(results: dict[str, Any]) -> list[str]:
    m = results.get("machine") or {}
    packages = ", ".join(f"{k} {v}" for k, v in (m.get("packages") or {}).items())
    return [
        f"Measured {str(results.get('updated', '?'))[:10]} on {m.get('cpu', '?')}, "
        f"{m.get('logical_cores', '?')} logical cores, Python {m.get('python', '?')} "
        f"({m.get('implementation', '?')}), {m.get('platform', '?')}; {packages}. "
        f"Commit `{m.get('git', '?')}`.",
        "",
    ]


def _targets(results: dict[str, Any]) -> list[str]:
    rows = results.get("targets") or []
    if not rows:
        return []
    lines = ["| target | value | limit | holds |", "|---|---:|---:|:---:|"]
    for r in rows:
        holds = "yes" if r.get("holds") else "**no**"
        limit = f"{r.get('kind', '')} {_fmt(r.get('limit'))}"
        lines.append(f"| {r.get('target')} | {_fmt(r.get('value'))} | {limit} | {holds} |")
    return [*lines, ""]


def _decode(bench: dict[str, Any]) -> list[str]:
    cases = (bench.get("decode") or {}).get("cases") or {}
    if not cases:
        return []
    parsers = list(next(iter(cases.values())).get("us_per_body", {}))
    lines = [
        "### Decoding",
        "",
        "Microseconds per details body (lower is better); *touch* reads every usage sample.",
        "",
        "| parser | " + " | ".join(cases) + " |",
        "|---|" + "---:|" * len(cases),
    ]
    for parser in parsers:
        cells = [_fmt(c.get("us_per_body", {}).get(parser, "")) for c in cases.values()]
        lines.append(f"| {parser} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _memory(bench: dict[str, Any]) -> list[str]:
    runs = (bench.get("memory") or {}).get("runs") or {}
    if not runs:
        return []
    lines = [
        "### Memory",
        "",
        "Peak resident memory of a process streaming N VMs (720-hour usage logs) with "
        "`stream_vms`: flat, whatever N.",
        "",
        "| VMs | peak RSS (MiB) | baseline (MiB) | seconds |",
        "|---:|---:|---:|---:|",
    ]
    for r in runs.values():
        lines.append(
            f"| {r.get('n', '?'):,} | {r.get('peak_rss_kib', 0) / 1024:.1f} | "
            f"{r.get('baseline_rss_kib', 0) / 1024:.1f} | {_fmt(r.get('seconds'))} |"
        )
    return [*lines, ""]


def render(results: dict[str, Any] | None, chart: bool) -> str:
    """Return the Markdown for the results, or a note on how to produce them."""
    if not results:
        return "No results yet: run `nox -s bench` and rebuild the docs."
    lines = _machine(results)
    if chart:
        lines += [f"![Each target as a share of its allowance]({CHART_URI})", ""]
    lines += _targets(results)
    bench = results.get("benchmarks") or {}
    for part in (_decode, _memory):
        try:
            lines += part(bench)
        except (AttributeError, KeyError, TypeError, ValueError):
            continue  # a results layout this hook does not know: leave that part out
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
