"""Progress displays for bulk runs: rich's bar, or a plain line without rich."""

from __future__ import annotations

import os
import time
from typing import IO

from .._bulk import BulkProgress

__all__ = ["isatty", "progress_display"]

# -- progress display ---------------------------------------------------------------------


def _progress_detail(p: BulkProgress) -> str:
    """Describe failures and rate limiting so far, for either progress display."""
    wait = p.throttle_wait / p.done * 1000 if p.done else 0.0
    return f"{p.failed} failed, {p.rate_limited} 429s, rate-limit wait {wait:.0f} ms/VM"


class _TextProgress:
    """A one-line progress display, used when rich is not installed."""

    def __init__(self, stream: IO[str], total: int | None) -> None:
        """Draw on ``stream``; ``total`` is the input size when known."""
        self._stream = stream
        self._total = total
        self._last = 0.0
        self._line = ""

    def update(self, p: BulkProgress) -> None:
        """Redraw the line, at most ten times a second."""
        now = time.monotonic()
        if now - self._last < 0.1 and p.done != self._total:
            return
        self._last = now
        of = f"/{self._total}" if self._total is not None else ""
        self._line = f"{p.done}{of} VMs, {_progress_detail(p)}"
        self._stream.write(f"\r\x1b[2K{self._line}")
        self._stream.flush()

    def write(self, line: str) -> None:
        """Print an output line above the progress line, then redraw it."""
        self._stream.write(f"\r\x1b[2K{line}\n{self._line}")

    def __enter__(self) -> _TextProgress:
        """Start showing progress."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Clear the progress line: the summary follows."""
        self._stream.write("\r\x1b[2K")
        self._stream.flush()


class _RichProgress:
    """A rich progress bar (the ``[cli]`` extra)."""

    def __init__(self, stream: IO[str], total: int | None) -> None:
        """Build the bar for ``total`` VMs (an open-ended bar when unknown), drawn on ``stream``."""
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Column

        of = f"/{total}" if total is not None else ""
        self._progress = Progress(
            # The count first and never wrapped: on a narrow terminal the detail gives way.
            TextColumn(
                "{task.completed}" + of + " VMs", table_column=Column(no_wrap=True, min_width=5)
            ),
            BarColumn(bar_width=24),
            TimeElapsedColumn(),
            TextColumn(
                "{task.fields[detail]}",
                table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1),
            ),
            console=Console(file=stream),
            transient=True,  # the summary replaces the bar, so nothing is drawn twice
            expand=True,
        )
        self._task = self._progress.add_task("fetch", total=total, detail="")
        self._refreshed = 0.0

    def update(self, p: BulkProgress) -> None:
        """Move the bar to the latest counts."""
        self._progress.update(self._task, completed=p.done, detail=_progress_detail(p))

    def write(self, line: str) -> None:
        """Print an output line above the bar (rich moves the bar below it)."""
        # Rich redraws the bar under the line from its last refresh: refresh it first (at
        # most twenty times a second), so the count under the lines is current.
        now = time.monotonic()
        if now - self._refreshed >= 0.05:
            self._refreshed = now
            self._progress.refresh()
        self._progress.console.out(line, highlight=False)

    def __enter__(self) -> _RichProgress:
        """Start drawing the bar."""
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop drawing the bar and clear it."""
        self._progress.stop()


def progress_display(stream: IO[str], total: int | None) -> _TextProgress | _RichProgress:
    """Return a progress display drawn on ``stream``: rich's bar, or a plain line without rich."""
    if not os.environ.get("HOSTUP_ASYNC_NO_RICH"):
        try:
            return _RichProgress(stream, total)
        except ImportError:
            pass  # rich comes with the [cli] extra; the plain line does without it
    return _TextProgress(stream, total)


def isatty(stream: IO[str]) -> bool:
    """Whether ``stream`` is a terminal (a closed or odd stream is not)."""
    try:
        return stream.isatty()
    except (ValueError, AttributeError):
        return False
