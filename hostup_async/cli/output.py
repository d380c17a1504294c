"""The command line's output formats for bulk results: JSON Lines, CSV and a table for people."""

from __future__ import annotations

import csv
import io
from typing import Any, Protocol

from .._bulk import VMResult
from .._exceptions import APIError, HostUpError
from .._export import json_encoder, python_names

__all__ = ["FORMATS", "Formatter", "error_object", "error_text", "formatter", "result_object"]

FORMATS = ("jsonl", "csv", "table")


def error_object(error: HostUpError) -> dict[str, Any]:
    """Describe an error for JSON output: kind, status, code, message, request_id."""
    return {
        "kind": type(error).__name__,
        "status": getattr(error, "status", None),
        "code": getattr(error, "code", None),
        "message": error.message if isinstance(error, APIError) else str(error),
        "request_id": getattr(error, "request_id", None),
    }


def error_text(error: HostUpError) -> str:
    """Describe an error in one short line: kind, HTTP status and code when there are some."""
    status = getattr(error, "status", None)
    code = getattr(error, "code", None)
    extra = " ".join(str(x) for x in (status, code) if x is not None)
    return f"{type(error).__name__} {extra}".strip()


def result_object(result: VMResult) -> dict[str, Any]:
    """Describe a bulk result for JSON Lines output."""
    line: dict[str, Any] = {"vmid": result.vmid, "ok": result.ok}
    if result.error is not None:
        line["error"] = error_object(result.error)
    if result.details is not None:
        line["details"] = python_names(result.details)
    if result.billing_cycle is not None:
        line["billing_cycle"] = python_names(result.billing_cycle)
    return line


class Formatter(Protocol):
    """Turns bulk results into lines of one output format."""

    def header(self) -> str | None:
        """Return the line that goes first, if the format has one."""

    def line(self, result: VMResult) -> str:
        """Return one result's line, without the line break."""


class _JSONLines:
    """One JSON object per VM: the whole result, for programs (the default)."""

    def __init__(self, show_secrets: bool) -> None:
        self._encoder = json_encoder(show_secrets=show_secrets)

    def header(self) -> str | None:
        return None

    def line(self, result: VMResult) -> str:
        return self._encoder.encode(result_object(result)).decode()


# The columns of the CSV and table formats: a summary per VM, never its credentials.
_COLUMNS = (
    "vmid",
    "ok",
    "hostname",
    "status",
    "power",
    "cpu",
    "ram_gb",
    "disk_gb",
    "next_due",
    "price",
    "currency",
    "cycle",
    "error",
)


def _row(result: VMResult) -> list[str]:
    """Return the summary columns of one result as text."""
    vm, bc = result.details, result.billing_cycle
    cells = dict.fromkeys(_COLUMNS, "")
    cells["vmid"] = str(result.vmid)
    cells["ok"] = "yes" if result.ok else "no"
    if vm is not None:
        cells.update(
            hostname=vm.hostname,
            status=vm.status,
            power=vm.vm_status,
            cpu=str(vm.cpu),
            ram_gb=f"{vm.ram:g}",
            disk_gb=f"{vm.disk:g}",
            next_due=vm.next_due.isoformat() if vm.next_due else "",
            price=str(vm.price),
            currency=vm.pricing.currency if vm.pricing else "",
            cycle=vm.billingcycle,
        )
    if bc is not None:
        cells["cycle"] = bc.current_name or cells["cycle"]
    if result.error is not None:
        cells["error"] = error_text(result.error)
    return [cells[c] for c in _COLUMNS]


class _CSV:
    """Comma-separated values with a header row, for spreadsheets."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="")

    def _format(self, cells: list[str]) -> str:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(cells)
        return self._buffer.getvalue()

    def header(self) -> str | None:
        return self._format(list(_COLUMNS))

    def line(self, result: VMResult) -> str:
        return self._format(_row(result))


# Column widths of the table: wide enough for typical values, longer ones are cut with "…".
_WIDTHS = {"hostname": 24, "status": 10, "power": 8, "next_due": 10, "cycle": 10, "error": 40}
_RIGHT = frozenset({"vmid", "cpu", "ram_gb", "disk_gb", "price"})


class _Table:
    """Aligned columns, streamed row by row, for reading on a terminal."""

    def _format(self, cells: list[str]) -> str:
        parts = []
        for name, cell in zip(_COLUMNS, cells, strict=True):
            width = _WIDTHS.get(name, max(len(name), 7))
            if len(cell) > width:
                cell = cell[: width - 1] + "…"
            parts.append(cell.rjust(width) if name in _RIGHT else cell.ljust(width))
        return "  ".join(parts).rstrip()

    def header(self) -> str | None:
        return self._format([c.upper() for c in _COLUMNS])

    def line(self, result: VMResult) -> str:
        return self._format(_row(result))


def formatter(name: str, *, show_secrets: bool) -> Formatter:
    """Return the formatter for ``-o NAME``."""
    if name == "csv":
        return _CSV()
    if name == "table":
        return _Table()
    return _JSONLines(show_secrets)


def plural(count: int, word: str) -> str:
    """Return ``1 VM``, ``2 VMs``, ``1 core``, ``8 cores``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
