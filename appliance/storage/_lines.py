"""Physical line numbers of CSV records, for files whose records span several lines.

DuckDB numbers the records of a CSV file, not its lines: a quoted field with
line breaks, a blank line the reader skips, or a malformed record that spans
lines moves every later record down in the file but not in DuckDB's count.
`record_lines` finds where each record starts by scanning the bytes for line
breaks outside quoted fields, and `match_records` pairs those records with
DuckDB's accepted rows and rejected records, so each quarantined row can name
the line it starts on.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Records:
    """The data records of a CSV file, header and blank lines left out."""

    ends: list[int]
    """Byte offset just past each record's line break (or the end of the file)."""
    lines: list[int]
    """Line each record starts on, from 1."""


def record_lines(path: Path, encoding: str, quote: str, escape: str) -> Records:
    """Scan `path` for its records' offsets and first lines.

    Offsets are of the file's UTF-8 bytes, as DuckDB reads it: a file in
    another encoding is converted first.
    """
    data = path.read_bytes()
    if encoding != "utf-8":
        data = data.decode(encoding).encode("utf-8")
    ends, lines = [], []
    start, line, record_line = 0, 1, 1
    for match in _token_pattern(quote, escape).finditer(data):
        token = match.group()
        if token != b"\n":
            line += token.count(b"\n")
            continue
        end = match.end()
        if data[start:end].strip(b"\r\n"):
            ends.append(end)
            lines.append(record_line)
        line += 1
        start, record_line = end, line
    if data[start:].strip(b"\r\n"):
        ends.append(len(data))
        lines.append(record_line)
    # The first record is the header.
    return Records(ends[1:], lines[1:])


def match_records(
    records: Records, rejected_at: list[int], accepted: int
) -> tuple[list[int], list[int]] | None:
    """Return the first line of each accepted row and of each rejected record.

    Args:
        records: The file's records from `record_lines`.
        rejected_at: DuckDB's ``line_byte_position`` of each rejected record.
            It falls inside the record or in the blank lines just before it.
        accepted: Rows DuckDB read from the file.

    Returns:
        The lines of the accepted rows in order and of the rejected records
        in the order given, or None when the records found here do not pair
        up with DuckDB's (a quote left open, for one).
    """
    rejected = [bisect.bisect_right(records.ends, at) for at in rejected_at]
    taken = set(rejected)
    if len(taken) != len(rejected) or any(i >= len(records.ends) for i in taken):
        return None
    kept = [line for i, line in enumerate(records.lines) if i not in taken]
    if len(kept) != accepted:
        return None
    return kept, [records.lines[i] for i in rejected]


def _token_pattern(quote: str, escape: str) -> re.Pattern[bytes]:
    """Return a pattern matching a quoted field (line breaks and all) or a line break.

    Two quoted tokens back to back read a doubled quote, so a quote that is
    its own escape needs no case of its own.
    """
    if not quote:
        return re.compile(rb"\n")
    q = re.escape(quote.encode())
    if not escape or escape == quote:
        return re.compile(q + rb"[^" + q + rb"]*" + q + rb"|\n")
    e = re.escape(escape.encode())
    return re.compile(
        q + rb"(?:[^" + q + e + rb"]|" + e + rb".)*" + q + rb"|\n", re.DOTALL
    )
