"""Physical line numbers of CSV and JSON-lines records, from 1.

DuckDB numbers the records of a file, not its lines. A quoted CSV field with
line breaks, a blank line the reader skips, or a malformed record that spans
lines moves every later record down in the file, but not in DuckDB's count.
`record_lines` finds where each CSV record starts by scanning the bytes for
line breaks outside quoted fields, and `match_records` pairs those records
with DuckDB's accepted rows and rejected records, so each quarantined row can
name the line it starts on. The scan also finds a quote that no later quote
closes, whose record runs to the end of the file (see `_quote_errors`).
`json_record_lines` finds the non-blank lines of a JSON-lines file, one
object each, unless some lines are malformed; then the line of each object
was stored as the file was read. `line_sql` returns those lines to the
ingest's query.
"""

from __future__ import annotations

import array
import bisect
import codecs
import logging
import mmap
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from appliance.storage._sources import Dialect, SourceFile
from appliance.storage._sql import ident

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Records:
    """The data records of a CSV file, header and blank lines left out."""

    ends: Sequence[int]
    """Byte offset just past each record's line break (or the end of the file)."""
    lines: Sequence[int]
    """Line each record starts on, from 1."""
    start: int = 0
    """Byte offset just past the header's line break."""
    open_quote: int | None = None
    """Line of a quote that no later quote closes, so that the file's last
    record runs from it to the end of the file; None without one."""


def record_lines(
    path: Path, encoding: str, quote: str, escape: str, delimiter: str = ""
) -> Records:
    """Scan `path` for its records' offsets and first lines.

    Offsets are of the file's UTF-8 bytes, as DuckDB reads it. Given the
    `delimiter`, a quote opens a quoted field only at the start of a field
    or after one space there, as DuckDB 2.0.1 reads ``1,ab"c`` and
    ``1,  "c"`` as text but ``1, "c"`` as ``c``; without it, every quote
    does.
    """
    pattern = _token_pattern(quote, escape, delimiter)
    with _utf8_data(path, encoding) as data:
        return _scan(data, pattern)


def record_texts(
    path: Path, encoding: str, records: Records, indices: Iterable[int]
) -> dict[int, list[tuple[int, str]]]:
    """Return the non-blank lines of the records at `indices`, with their numbers.

    Each line is text without its line break. `records` is the scan of
    `path` by `record_lines`.
    """
    texts: dict[int, list[tuple[int, str]]] = {}
    with _utf8_data(path, encoding) as data:
        for index in indices:
            start = records.ends[index - 1] if index else records.start
            chunk = data[start : records.ends[index]]
            # The blank lines before a record end the previous record's bytes.
            blank = len(chunk) - len(chunk.lstrip(b"\r\n"))
            first = records.lines[index] - chunk[:blank].count(b"\n")
            texts[index] = _non_blank(chunk, first)
    return texts


def long_record(
    path: Path, encoding: str, dialect: tuple[str, str, str], limit: int
) -> tuple[int, int] | None:
    """Return the first line and size of the first record longer than `limit`.

    The size is in UTF-8 bytes without the final line feed, as DuckDB 2.0.1
    measures a record for ``max_line_size``, so the carriage return of a
    CRLF line counts. The header counts as a record.

    Args:
        dialect: The quote, escape and delimiter of the file.

    Returns:
        The line the record starts on, from 1, and its size in bytes, or
        None when no record is longer than `limit`.
    """
    pattern = _token_pattern(*dialect)
    with _utf8_data(path, encoding) as data:
        records = _scan(data, pattern)
        header = _record_size(data[: records.start])
        if header > limit:
            return 1, header
        start = records.start
        for end, line in zip(records.ends, records.lines):
            size = _record_size(data[start:end])
            if size > limit:
                return line, size
            start = end
    return None


def _record_size(chunk: bytes) -> int:
    """Return the size of a record's bytes without blank lines before it and
    its final line feed."""
    return len(chunk.lstrip(b"\r\n").removesuffix(b"\n"))


@contextmanager
def _utf8_data(path: Path, encoding: str) -> Iterator[bytes | mmap.mmap]:
    """Yield the bytes of `path` in UTF-8, as DuckDB reads the file.

    A UTF-8 file is mapped into memory rather than read; a file in another
    encoding is read and converted first.
    """
    with (
        path.open("rb") as handle,
        mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
    ):
        if encoding == "utf-8":
            yield mapped
        else:
            yield mapped[:].decode(encoding).encode()


def _scan(data: bytes | mmap.mmap, pattern: re.Pattern[bytes]) -> Records:
    ends, lines = array.array("q"), array.array("q")
    start, line, record_line = 0, 1, 1
    quote_line = None
    for match in pattern.finditer(data):
        token = match.group()
        if token != b"\n":
            if match.lastgroup == _UNCLOSED:
                quote_line = line
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
    header_end = ends[0] if ends else len(data)
    return Records(ends[1:], lines[1:], header_end, quote_line)


def _non_blank(text: bytes, first: int) -> list[tuple[int, str]]:
    """Return the non-blank lines of UTF-8 `text` that starts on line `first`."""
    numbered = enumerate(text.split(b"\n"), start=first)
    return [
        (number, line.removesuffix(b"\r").decode())
        for number, line in numbered
        if line.strip(b"\r")
    ]


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


def line_sql(
    db: duckdb.DuckDBPyConnection,
    index: int,
    source: SourceFile,
    records: int,
    dialect: Dialect | None,
    any_malformed: int,
    encoding: str,
) -> str:
    """Return SQL mapping each record of view ``raw_N`` to its line in the file.

    CSV records start on line 2 after the header, one line each unless the
    file has more lines than records; then `record_lines` finds each
    record's line, and the lines of the file's rows in the ``malformed``
    table are set too. JSON-lines records are the file's lines from 1 unless
    it has blank lines, which `json_record_lines` skips. For Parquet the
    number is the row's position, from 1.

    Args:
        db: The ingest's connection, with ``raw_N`` and ``malformed`` tables.
        index: N, the file's position among the sources.
        source: The file.
        records: Rows DuckDB read from the file.
        dialect: The file's CSV dialect; None for other formats.
        any_malformed: Count of malformed records of all the files.
        encoding: The file's encoding.
    """
    keys = f"SELECT {index} AS _file, _record"
    if source.reader == "read_json":
        return _json_line_sql(db, index, source, records, any_malformed)
    if source.reader != "read_csv":
        return f"{keys}, _record + 1 AS line FROM raw_{index}"
    malformed = 0
    if any_malformed:
        malformed = db.execute(
            f"SELECT count(*) FROM malformed WHERE _file = {index}"
        ).fetchall()[0][0]
    if source.lines <= records + malformed + 1:
        simple = f"{keys}, _record + 2 AS line FROM raw_{index}"
        return _skip_malformed_lines(simple) if malformed else simple
    assert dialect is not None
    found = record_lines(
        source.read_path, encoding, dialect.quote, dialect.escape, dialect.delimiter
    )
    rejected = []
    if malformed:
        # Lines of an open quote's record after its first have no position.
        rejected = db.execute(
            "SELECT rowid, line_position FROM malformed "
            f"WHERE _file = {index} AND line_position IS NOT NULL"
        ).fetchall()
    matched = match_records(found, [r[1] for r in rejected], records)
    if matched is None:
        logger.warning(
            "line numbers estimated file=%s records=%d lines=%d",
            source.path,
            records,
            source.lines,
        )
        return _estimated_lines(db, index, malformed)
    accepted, rejected_lines = matched
    if rejected:
        fixed = pa.table({"id": [r[0] for r in rejected], "line": rejected_lines})
        db.register("rejected_lines", fixed)
        db.execute(
            "UPDATE malformed SET line = r.line FROM rejected_lines r "
            "WHERE malformed.rowid = r.id"
        )
        db.unregister("rejected_lines")
    return _registered_lines(db, index, accepted)


def json_record_lines(path: Path) -> Sequence[int]:
    """Return the line of each record of a JSON-lines file, from 1."""
    return array.array("q", (number for number, _ in non_blank_lines(path)))


def non_blank_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield each line of a JSON-lines file that DuckDB reads, with its number.

    DuckDB's ``read_json`` skips blank lines, lines of only spaces, tabs or
    carriage returns, and a UTF-8 byte order mark at the start of the file,
    so those are left out. Lines are split at line feeds only.
    """
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if number == 1:
                line = line.removeprefix(codecs.BOM_UTF8)
            if line.strip():
                yield number, line


def _json_line_sql(
    db: duckdb.DuckDBPyConnection,
    index: int,
    source: SourceFile,
    records: int,
    any_malformed: int,
) -> str:
    """Return SQL mapping each record of a JSON-lines file to its line.

    A file with malformed lines has the line of each object in table
    ``json_records_N`` (see `_json_lines`).
    """
    if source.lines == records:
        return f"SELECT {index} AS _file, _record, _record + 1 AS line FROM raw_{index}"
    table = f"json_records_{index}"
    if any_malformed and _has_table(db, table):
        found = db.execute(f"SELECT line FROM {table} ORDER BY _record").fetchall()
        lines: Sequence[int] = [line for (line,) in found]
    else:
        lines = json_record_lines(source.read_path)
    if len(lines) != records:
        # NOTE: DuckDB read another count of objects than the file has
        # non-blank lines, so each row's line is taken from its position.
        logger.warning(
            "line numbers estimated file=%s records=%d non_blank_lines=%d",
            source.path,
            records,
            len(lines),
        )
        return f"SELECT {index} AS _file, _record, _record + 1 AS line FROM raw_{index}"
    return _registered_lines(db, index, lines)


def _has_table(db: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Return whether the ingest's connection has temporary table `name`."""
    rows = db.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = ?",
        [name],
    ).fetchall()
    return bool(rows[0][0])


def _registered_lines(
    db: duckdb.DuckDBPyConnection, index: int, lines: Sequence[int]
) -> str:
    """Register the line of each record of file `index` and return SQL of them."""
    table = f"record_lines_{index}"
    numbers = pa.table({"_record": range(len(lines)), "line": lines})
    db.register(table, numbers)
    return f"SELECT {index} AS _file, _record, line FROM {table}"


def _estimated_lines(db: duckdb.DuckDBPyConnection, index: int, malformed: int) -> str:
    """Return SQL of each record's line counted from the line breaks in its values.

    NOTE: this misses blank lines and counts a malformed record as one line,
    so it is used only when `match_records` cannot pair the file's records with
    DuckDB's, which happens when the scan reads quotes or escapes otherwise
    than DuckDB does.
    """
    columns = [r[0] for r in db.execute(f"DESCRIBE raw_{index}").fetchall()]
    breaks = " + ".join(
        f"coalesce(length({text}) - length(replace({text}, chr(10), '')), 0)"
        for text in (f"CAST({ident(c)} AS VARCHAR)" for c in columns[1:])
    )
    sql = (
        f"SELECT {index} AS _file, _record, 2 + _record + coalesce(sum(breaks) "
        "OVER (ORDER BY _record ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), "
        f"0) AS line FROM (SELECT _record, {breaks} AS breaks FROM raw_{index})"
    )
    return _skip_malformed_lines(sql) if malformed else sql


def _skip_malformed_lines(line_sql: str) -> str:
    """Move each record's line past the malformed records above it.

    The text read leaves malformed records out, so a record's line counted
    from its position is short by the malformed records before it. With the
    malformed lines L1 < L2 < ... of a file, the i-th one (from 1) moves down
    every record whose counted line is at least Li - (i - 1). Each malformed
    record is taken to span one line, which holds when the file has no more
    line breaks than records.
    """
    shifts = (
        "SELECT _file, line - (row_number() OVER (PARTITION BY _file ORDER BY line)"
        " - 1) AS from_line FROM malformed"
    )
    return (
        f"SELECT l._file, l._record, l.line + (SELECT count(*) FROM ({shifts}) m "
        f"WHERE m._file = l._file AND m.from_line <= l.line) AS line "
        f"FROM ({line_sql}) l"
    )


_UNCLOSED = "unclosed"
"""Group of `_token_pattern` that matches the end of the file in place of a
closing quote."""


def _token_pattern(quote: str, escape: str, delimiter: str) -> re.Pattern[bytes]:
    """Return a pattern matching a quoted field (line breaks and all) or a line break.

    Two quoted tokens back to back read a doubled quote, so a quote that is
    its own escape needs no case of its own, and a quote right after a quote
    opens a token too. A quote left open runs to the end of the file, as
    DuckDB reads it: one malformed record, whose token ends with the empty
    group `_UNCLOSED`.
    """
    if not quote:
        return re.compile(rb"\n")
    q = re.escape(quote.encode())
    opening = q
    if delimiter:
        starts = (rb"\n", re.escape(delimiter.encode()))
        after = b"|".join(rb"(?<=" + start + rb")" for start in starts)
        opening = rb"(?:(?:\A|" + after + rb") ?|(?<=" + q + rb"))" + q
    close = rb"(?:" + q + rb"|(?P<" + _UNCLOSED.encode() + rb">\Z))"
    if not escape or escape == quote:
        return re.compile(opening + rb"[^" + q + rb"]*" + close + rb"|\n")
    e = re.escape(escape.encode())
    return re.compile(
        opening + rb"(?:[^" + q + e + rb"]|" + e + rb".)*" + close + rb"|\n",
        re.DOTALL,
    )
