"""MkDocs hook: put the table of defaults, read from the code, into the client reference.

The page holds a ``<!-- defaults:table -->`` marker; at build time it is replaced by one row per
public name of ``hostup_async._constants``: its name, value and the ``#:`` comment above it. The
reference stays true to the code without showing readers the private module.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hostup_async._constants as constants

MARKER = "<!-- defaults:table -->"
# A constant with its "#:" comment lines above it, as _constants.py writes them.
_DOCUMENTED = re.compile(r"((?:^#:.*\n)+)^([A-Z_]+) = ", re.M)


def _value(value: Any) -> str:
    """Show a value as code would write it; sets sorted, so the page does not churn."""
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(repr(v) for v in sorted(value)) + "}"
    return repr(value)


def table() -> str:
    """Return the defaults as a Markdown table, in the module's order."""
    source = Path(constants.__file__).read_text(encoding="utf-8")
    rows = ["| name | value | meaning |", "|---|---|---|"]
    for match in _DOCUMENTED.finditer(source):
        name = match.group(2)
        if name not in constants.__all__:
            continue
        meaning = " ".join(line[2:].strip() for line in match.group(1).splitlines())
        meaning = meaning.replace("``", "`").replace("|", "\\|")
        rows.append(f"| `{name}` | `{_value(getattr(constants, name))}` | {meaning} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the marker with the table."""
    return markdown.replace(MARKER, table()) if MARKER in markdown else markdown
