"""The report step: merge a run's figures into the results file, evaluate the targets, draw the chart.

``results/latest.json`` holds ``updated``, ``quick``, ``machine``, ``benchmarks`` (each
benchmark's figures under its name) and ``targets`` (every benchmark's ``TARGETS``
evaluated over those figures). A quick run writes ``quick.json`` and ``quick.png`` instead,
so smoke figures never replace real ones.
"""

from __future__ import annotations

import json
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import load, names
from ._harness import ROOT, Table, machine_info
from ._targets import evaluate

RESULTS = ROOT / "benchmarks" / "results"
LATEST = RESULTS / "latest.json"
CHART = RESULTS / "ratios.png"


def targets(benchmarks: dict[str, Any]) -> list[dict[str, Any]]:
    """Every benchmark's targets evaluated over its figures, in page order."""
    rows = []
    for name in names():
        if name in benchmarks:
            rows += evaluate(load(name).TARGETS, benchmarks[name])
    return rows


def targets_table(rows: list[dict[str, Any]]) -> Table:
    """The evaluated targets as a table."""
    return Table(
        "targets",
        ["target", "value", "limit", "holds"],
        [
            [
                r["target"],
                f"{r['value']:.3f}",
                f"{r['kind']} {r['limit']:g}",
                "yes" if r["holds"] else "NO",
            ]
            for r in rows
        ],
    )


def results_path(quick: bool) -> Path:
    """Where a full or a quick run's results go."""
    return RESULTS / "quick.json" if quick else LATEST


def chart_path(quick: bool) -> Path:
    """Where a full or a quick run's chart goes."""
    return RESULTS / "quick.png" if quick else CHART


def save(new: dict[str, Any], quick: bool, chart: bool) -> dict[str, Any]:
    """Merge this run's figures into the results file, re-evaluate every target, redraw the chart.

    With no new figures this only re-evaluates and redraws: after a target changes, or to
    redraw the chart, without measuring again.
    """
    RESULTS.mkdir(exist_ok=True)
    path = results_path(quick)
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = {}
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = machine_info() if new else old.get("machine") or machine_info()
    # Each benchmark keeps when and at which commit it was measured: a partial run
    # leaves the others' figures (and their stamps) as they were.
    stamp = {"at": now, "git": machine["git"], "packages": machine["packages"]}
    bench = {**old.get("benchmarks", {}), **{n: {**r, "measured": stamp} for n, r in new.items()}}
    results = {
        "updated": now if new else old.get("updated", now),
        "quick": quick,
        "machine": machine,
        "benchmarks": bench,
        "targets": targets(bench),
    }
    path.write_text(json.dumps(results, indent=2) + "\n")
    if chart:
        draw_chart(results, chart_path(quick))
    return results


def draw_chart(results: dict[str, Any], path: Path) -> None:
    """Horizontal bars: each target as a share of its allowance (1.0 is the limit).

    Sized for the docs' content column (about 700 px): 7 inches wide at 9-point text,
    saved at twice the resolution so it stays sharp when scaled.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["targets"]
    if not rows:
        return
    # Normalised so that "within target" is always left of 1: value/limit for <=,
    # limit/value for >=.
    scores = [
        (r["value"] / r["limit"]) if r["kind"] == "<=" else (r["limit"] / max(r["value"], 1e-9))
        for r in rows
    ]
    labels = [textwrap.fill(r["target"], 34) for r in rows]
    colours = ["#2a9d5c" if r["holds"] else "#d1495b" for r in rows]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.2))
    y = list(range(len(rows)))
    ax.barh(y, scores, color=colours, height=0.6)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    for i, (score, r) in enumerate(zip(scores, rows, strict=True)):
        ax.text(
            max(score, 1.0) + 0.03,
            i,
            f"{r['value']:.3f} {r['kind']} {r['limit']:g}",
            va="center",
            fontsize=8.5,
        )
    ax.set_yticks(y, labels, fontsize=8.5)
    ax.invert_yaxis()
    ax.set_xlim(0, max([*scores, 1.0]) + 0.4)
    ax.set_xlabel("share of the target's allowance (left of the dashed line: holds)", fontsize=9)
    m = results["machine"]
    ax.set_title(
        f"hostup-async targets: {m['cpu']}, {m['logical_cores']} cores, Python {m['python']}",
        fontsize=9,
    )
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=200)
    plt.close(fig)
