"""Command line: ``python -m benchmarks [NAME ...] [--quick] [--no-chart] [--report]``."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from . import load, names
from ._harness import ROOT, machine_info, print_table
from ._report import results_path, save, targets_table


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks (all by default), print their tables, save the results."""
    known = names()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "benchmarks", nargs="*", help=f"which to run: {', '.join(known)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of seconds")
    parser.add_argument("--no-chart", action="store_true", help="do not redraw the chart")
    parser.add_argument(
        "--report",
        action="store_true",
        help="run nothing: re-evaluate the targets over the saved figures and redraw the chart",
    )
    args = parser.parse_args(argv)
    unknown = set(args.benchmarks) - set(known)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    chosen = [] if args.report else [n for n in known if n in (args.benchmarks or known)]
    m = machine_info()
    print(
        f"machine: {m['cpu']}, {m['logical_cores']} logical cores; Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    )
    new: dict[str, Any] = {}
    started = time.perf_counter()
    for name in chosen:
        module = load(name)
        t0 = time.perf_counter()
        new[name] = module.run(args.quick)
        new[name]["seconds"] = round(time.perf_counter() - t0, 1)
        for table in module.tables(new[name]):
            print_table(table)
    results = save(new, args.quick, not args.no_chart)
    print_table(targets_table(results["targets"]))
    where = results_path(args.quick).relative_to(ROOT)
    print(f"\nwrote {where} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
