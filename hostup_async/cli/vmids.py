"""The command line's vmid syntax: ASCII ids and ranges separated by commas, duplicates once."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from .._constants import MAX_VMID
from .errors import UsageError

__all__ = [
    "ParsedVMIDs",
    "VMIDSyntaxError",
    "merge",
    "parse_one",
    "parse_token",
    "parse_vmids",
]


# re.ASCII: \d would also match full-width and other Unicode digits, which int() accepts.
_ITEM = re.compile(r"([0-9]+)(?:-([0-9]+))?", re.ASCII)

_SYNTAX = "use ids such as 7 and ranges such as 100-200, separated by commas"


class VMIDSyntaxError(ValueError):
    """A vmid, range or list the command line cannot read; its text is a one-line message."""


class ParsedVMIDs(NamedTuple):
    """The distinct vmids asked for, as ascending disjoint ranges."""

    ranges: list[range]
    """Disjoint ranges in ascending order (ranges stay lazy, however large)."""
    total: int
    """Number of distinct vmids."""
    duplicates: int
    """Ids given more than once (each is fetched once)."""


def parse_one(text: str) -> int:
    """Parse a single vmid, worded like the items of a list."""
    item = parse_token(text)
    if len(item) != 1 or len(item[0]) != 1:
        raise VMIDSyntaxError(f"expected one vmid, got {text!r}")
    return item[0].start


def parse_token(token: str) -> list[range]:
    """Parse one token such as ``7``, ``100-200`` or ``1,2,5-9`` into ranges."""
    if not token:
        raise VMIDSyntaxError(f"empty vmid: {_SYNTAX}")
    return [_parse_item(item, token) for item in token.split(",")]


def _parse_item(item: str, token: str) -> range:
    """Parse one comma-separated item of ``token``."""
    if not item:
        raise VMIDSyntaxError(f"empty item in {token!r}: {_SYNTAX}")
    match = _ITEM.fullmatch(item)
    if match is None:
        raise VMIDSyntaxError(f"not a vmid or range: {item!r}: {_SYNTAX}")
    first, last = match.group(1), match.group(2)
    for digits in (first, last):
        # Checked on the text, so a thousand-digit "id" is refused before int() parses it.
        if digits is not None and (len(digits) > 19 or int(digits) > MAX_VMID):
            raise VMIDSyntaxError(f"vmid too large: {digits[:24]!r}")
    low = int(first)
    high = int(last) if last is not None else low
    if low < 1:
        raise VMIDSyntaxError(f"vmids start at 1: {item!r}")
    if high < low:
        raise VMIDSyntaxError(f"range {item!r} runs backwards: write {high}-{low}")
    return range(low, high + 1)


def merge(ranges: Iterable[range]) -> ParsedVMIDs:
    """Merge ranges into ascending disjoint ones, counting the ids given more than once."""
    given = 0
    merged: list[range] = []
    for r in sorted(ranges, key=lambda r: r.start):
        given += len(r)
        if merged and r.start <= merged[-1].stop:
            if r.stop > merged[-1].stop:
                merged[-1] = range(merged[-1].start, r.stop)
        else:
            merged.append(r)
    total = sum(len(r) for r in merged)
    return ParsedVMIDs(merged, total, given - total)


# -- vmid parsing -------------------------------------------------------------------------


def parse_vmids(tokens: Iterable[str]) -> ParsedVMIDs:
    """Parse ids and ranges such as ``7``, ``100-200`` or ``1,2``; duplicates are counted once.

    Only ASCII digits, ``-`` between two ids and ``,`` between items are accepted.
    """
    try:
        return merge(r for token in tokens for r in parse_token(token))
    except VMIDSyntaxError as exc:
        raise UsageError(str(exc)) from None


def _ranges_from_file(path: str) -> Iterator[range]:
    """Read vmids separated by whitespace or commas from a file, or stdin for ``-``."""
    name = "stdin" if path == "-" else path
    try:
        if path == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read --from-file {name}: {reason}") from None
    for number, line in enumerate(lines, 1):
        # In a file, commas and whitespace both separate ids (a column of a CSV, say).
        for token in filter(None, re.split(r"[\s,]+", line)):
            try:
                yield from parse_token(token)
            except VMIDSyntaxError as exc:
                # A CSV's header row ends up here: say where, so it is quick to find.
                raise UsageError(f"--from-file {name}, line {number}: {exc}") from None


def fetch_vmids(args: argparse.Namespace) -> ParsedVMIDs:
    """Collect the vmids of ``fetch`` from its arguments and ``--from-file``."""
    ranges: list[range] = []
    for token in args.vmids:
        try:
            ranges += parse_token(token)
        except VMIDSyntaxError as exc:
            raise UsageError(str(exc)) from None
    if args.from_file is not None:
        from_file = list(_ranges_from_file(args.from_file))
        if not from_file and not ranges:
            name = "stdin" if args.from_file == "-" else args.from_file
            raise UsageError(f"no vmids in --from-file {name}")
        ranges += from_file
    if not ranges:
        raise UsageError("no vmids given: pass ids or ranges (7 100-200 1,2), or --from-file FILE")
    return merge(ranges)
