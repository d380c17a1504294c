"""Targets as data: which figure of a benchmark's results must stay within which limit.

Each benchmark module declares ``TARGETS``; the run evaluates them into the results file
and the docs hook evaluates the same declarations against the same file, so neither
re-implements the other. Standard library only: the docs build imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Target:
    """A figure at ``path`` in a benchmark's results, and the limit it must keep.

    A ``"*"`` in ``path`` stands for every key at that level (every case, every run);
    ``name`` is formatted with the keys it matched, in order (``"fan-out {}: ..."``).
    """

    name: str
    path: tuple[str, ...]
    kind: Literal["<=", ">="]
    limit: float


def _figures(
    path: tuple[str, ...], data: Any, keys: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], float]]:
    """Yield ``(matched keys, figure)`` for every figure ``path`` reaches in ``data``."""
    if not path:
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            yield keys, float(data)
        return
    if not isinstance(data, Mapping):
        return
    head, rest = path[0], path[1:]
    if head == "*":
        for key, value in data.items():
            yield from _figures(rest, value, (*keys, str(key)))
    elif head in data:
        yield from _figures(rest, data[head], keys)


def evaluate(targets: Iterable[Target], results: Any) -> list[dict[str, Any]]:
    """One row per figure a target reaches: its name, value, limit, kind and whether it holds.

    A target whose figure is absent (a benchmark not run, a case a quick run skips) gives
    no row rather than a failure.
    """
    rows = []
    for t in targets:
        for keys, value in _figures(t.path, results):
            holds = value <= t.limit if t.kind == "<=" else value >= t.limit
            rows.append(
                {
                    "target": t.name.format(*keys),
                    "value": value,
                    "limit": t.limit,
                    "kind": t.kind,
                    "holds": holds,
                }
            )
    return rows
