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


def _ratio(value: Any) -> str:
    """Format a ratio with three decimals, so that 1.203 never reads as a passing 1.2."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) >= 100:
        return _fmt(value)
    return f"{value:.3f}"


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
    failed = [r for r in rows if not r.get("holds")]
    if failed:
        summary = (
            f"**{len(rows) - len(failed)} of {len(rows)} targets hold; {len(failed)} do not** "
            "(marked **NO** below)."
        )
    else:
        summary = f"All {len(rows)} targets hold."
    lines = [summary, "", "| target | value | limit | holds |", "|---|---:|---:|:---:|"]
    for r in rows:
        holds = "yes" if r.get("holds") else "**NO**"
        limit = f"{r.get('kind', '')} {_fmt(r.get('limit'))}"
        lines.append(f"| {r.get('target')} | {_ratio(r.get('value'))} | {limit} | {holds} |")
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
        "`stream_vms`: it should not grow with N.",
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


def _fanout(bench: dict[str, Any]) -> list[str]:
    fanout = bench.get("fanout") or {}
    cases = fanout.get("cases") or {}
    if not cases:
        return []
    lines = [
        "### Fan-out",
        "",
        f"Bulk fetch of details bodies at concurrency {fanout.get('concurrency', '?')}, median of "
        f"{fanout.get('rounds', '?')} alternating runs; the fake server shares the machine's cores. "
        "*vs bare* compares with bare aiohttp + msgspec in the same round; *server CPU* is the "
        "share of one core the fake server used.",
        "",
    ]
    for name, case in cases.items():
        clients = case.get("clients") or {}
        lines += [
            f"**{name} usage logs**, {case.get('requests', '?'):,} requests"
            + (
                ": the fake server was the bottleneck of the bare loop, so *vs bare* "
                "understates the client."
                if case.get("server_bound")
                else "."
            ),
            "",
            "| client | req/s | client CPU (µs/req) | req/s vs bare | CPU vs bare | server CPU |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for client, c in clients.items():
            lines.append(
                f"| {client} | {_fmt(c.get('requests_per_s'))} | "
                f"{_fmt(c.get('client_cpu_us_per_request'))} | "
                f"{_ratio(c.get('throughput_vs_bare'))} | {_ratio(c.get('cpu_vs_bare'))} | "
                f"{c.get('server_cpu_share', 0):.0%} |"
            )
        lines.append("")
    return lines


def _rate(bench: dict[str, Any]) -> list[str]:
    runs = (bench.get("rate") or {}).get("runs") or {}
    if not runs:
        return []
    lines = [
        "### Rate accuracy",
        "",
        "A client with `rate_limit` R sending as fast as it may, arrival times recorded by the "
        "fake server. The first second from the first arrival (the limiter's start-up burst "
        "included) is counted apart; after it, no 1-second window should hold more than R "
        "requests.",
        "",
        "| R (req/s) | requests | in the burst | most in any 1 s after | achieved req/s "
        "| achieved / R |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs.values():
        lines.append(
            f"| {_fmt(r.get('rate'))} | {_fmt(r.get('requests'))} | "
            f"{_fmt(r.get('burst_requests'))} | {_fmt(r.get('max_in_any_1s_window_after_burst'))} "
            f"| {_fmt(r.get('achieved_rate'))} | {_ratio(r.get('achieved_fraction'))} |"
        )
    return [*lines, ""]


def _scalars(row: Any) -> dict[str, Any]:
    """The fields of a result row that fit in a table cell."""
    if not isinstance(row, dict):
        return {}
    return {k: v for k, v in row.items() if isinstance(v, (int, float, str))}


def _other(name: str, bench: Any) -> list[str]:
    """A table for a benchmark this hook has no layout for: one row per case or run."""
    if not isinstance(bench, dict):
        return []
    rows = bench.get("runs") or bench.get("cases")
    if not isinstance(rows, dict) or not rows:
        rows = {name: bench}
    columns = list(dict.fromkeys(k for row in rows.values() for k in _scalars(row)))
    if not columns:
        return []
    lines = [
        f"### {name.replace('_', ' ').capitalize()}",
        "",
        "| case | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for key, row in rows.items():
        cells = [_fmt(_scalars(row).get(c, "")) for c in columns]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return [*lines, ""]


KNOWN = {"decode": _decode, "fanout": _fanout, "memory": _memory, "rate": _rate}


def render(results: dict[str, Any] | None, chart: bool) -> str:
    """Return the Markdown for the results, or a note on how to produce them."""
    if not results:
        return "No results yet: run `nox -s bench` and rebuild the docs."
    lines = _machine(results)
    if results.get("quick"):
        lines += ["These are the small sizes of a `--quick` smoke run, not real figures.", ""]
    lines += _targets(results)
    if chart:
        lines += [f"![Each target as a share of its allowance]({CHART_URI})", ""]
    bench = results.get("benchmarks") or {}
    if not isinstance(bench, dict):
        bench = {}
    # The known layouts in page order, then whatever else the results hold.
    for name in [*KNOWN, *(n for n in bench if n not in KNOWN)]:
        if name not in bench:
            continue
        try:
            lines += KNOWN[name](bench) if name in KNOWN else _other(name, bench[name])
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
