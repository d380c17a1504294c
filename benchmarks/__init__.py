"""hostup-async benchmarks: one module per benchmark, a small harness, targets as data.

``python -m benchmarks [NAME ...] [--quick]`` (what ``nox -s bench`` runs) runs them.

A benchmark is one public module of this package (its name is the benchmark's name) with:

- ``TITLE``: its heading on the docs page;
- ``TARGETS``: a tuple of ``_targets.Target``, the limits its figures must keep;
- ``run(quick: bool) -> dict``: measure, return the figures as JSON-able data (``quick``:
  small sizes, a smoke run of a few seconds);
- ``tables(result: dict) -> list[_harness.Table]``: its figures as tables, printed by the
  run and shown by the docs page.

Modules whose names start with ``_`` are the harness: ``_harness`` (server process,
machine info, tables), ``_targets`` (targets as data), ``_report`` (results file, chart),
``_server`` (the fake server's process), ``_bodies`` and ``_alt_models`` (what the
contenders decode, and into what). Heavy contenders (orjson, pydantic, httpx) are imported
inside ``run``, so the docs build can import every module for its ``TARGETS`` and ``tables``.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def names() -> list[str]:
    """Every benchmark's name, in page order (alphabetical)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str) -> ModuleType:
    """The module of benchmark ``name``."""
    return importlib.import_module(f"{__name__}.{name}")
