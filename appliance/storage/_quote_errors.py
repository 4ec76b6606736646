"""CSV records with a quote error over several lines, quarantined line by line.

DuckDB 2.0.1 reads everything after a quote that no later quote closes as
one field, so the rest of the file becomes one rejected record. A quote left
open can also run on to the next quote in the file, such as the opening
quote of a later quoted value, and the record is rejected there because
text follows that quote. Either way one row of the ``malformed`` table (see
`_loading.malformed_records`) contains many lines of the file, which may have
been meant as rows of their own. `split_quote_errors` quarantines each
non-blank line of such a record as a row of its own instead. That way the
ingest's counts add up to the file's lines, and each line is kept whole in
the quarantine, while DuckDB 2.0.1 keeps only the first 10,000 characters of
the record.
"""

from __future__ import annotations

import bisect
import logging
from pathlib import Path

import duckdb
import pyarrow as pa

from appliance.errors import IngestError
from appliance.storage._lines import (
    Records,
    match_records,
    record_lines,
    record_texts,
)
from appliance.storage._sources import Dialect, SourceFile

logger = logging.getLogger(__name__)

_QUOTE_ERROR = "UNQUOTED VALUE"
"""DuckDB's ``error_type`` of a quote left open or followed by text."""

Lines = list[tuple[int, str]]
"""Non-blank lines of a record, each with its number, from 1."""


def split_quote_errors(
    db: duckdb.DuckDBPyConnection,
    sources: list[SourceFile],
    dialects: list[Dialect],
    records: list[int],
    encoding: str,
) -> None:
    """Replace the ``malformed`` row of each quote error over lines by one per line.

    Only files with a quote error in ``malformed`` are scanned. The first
    line keeps the record's row, and its reason names the lines that could
    not be read. Each later line gets a row without a ``line_position`` or
    column. A quote error on one line keeps its row and reason.

    Args:
        db: The ingest's connection, with the ``malformed`` table.
        sources: The CSV files.
        dialects: The CSV dialect of each file.
        records: Rows DuckDB read from each file.
        encoding: The files' encoding.

    Raises:
        IngestError: A file has a quote error, and the records found by
            scanning it do not pair up with the rows and rejected records of
            DuckDB, so its rows cannot be counted by line.
    """
    files = db.execute(
        "SELECT DISTINCT _file FROM malformed WHERE error_type = ? ORDER BY _file",
        [_QUOTE_ERROR],
    ).fetchall()
    for (index,) in files:
        _split_file(
            db, index, sources[index], dialects[index], records[index], encoding
        )


def _split_file(
    db: duckdb.DuckDBPyConnection,
    index: int,
    source: SourceFile,
    dialect: Dialect,
    accepted: int,
    encoding: str,
) -> None:
    """Split the quote errors over lines of file `index`, as `split_quote_errors`."""
    found = record_lines(
        source.read_path, encoding, dialect.quote, dialect.escape, dialect.delimiter
    )
    rejects = db.execute(
        "SELECT rowid, line_position, line, error_type FROM malformed WHERE _file = ?",
        [index],
    ).fetchall()
    matched = match_records(found, [r[1] for r in rejects], accepted)
    if matched is None:
        first = min(r[2] for r in rejects if r[3] == _QUOTE_ERROR)
        raise IngestError(_unpaired_message(source.path, first))
    quote_errors = {
        bisect.bisect_left(found.lines, line): reject[0]
        for reject, line in zip(rejects, matched[1])
        if reject[3] == _QUOTE_ERROR
    }
    texts = record_texts(source.read_path, encoding, found, sorted(quote_errors))
    split: list[int] = []
    split_lines = 0
    for record, rowid in quote_errors.items():
        lines = texts[record]
        reasons = _reasons(found, record, lines)
        if reasons is None:
            continue
        _store_lines(db, index, rowid, lines, reasons)
        split.append(lines[0][0])
        split_lines += len(lines)
    if split:
        logger.warning(
            "quote errors over several lines, each line quarantined file=%s "
            "records=%d lines=%d first_line=%d",
            source.path,
            len(split),
            split_lines,
            min(split),
        )


def _reasons(found: Records, record: int, lines: Lines) -> tuple[str, str] | None:
    """Return the reasons of the first and later lines of a quote error's record.

    None for a record of one line, whose reason stays as it is.
    """
    first, last, count = lines[0][0], lines[-1][0], len(lines)
    if record == len(found.lines) - 1 and found.open_quote is not None:
        unread = ""
        if count > 1:
            unread = (
                f", so none of the {count} non-blank lines from line {first} to "
                f"{last} could be read as a row"
            )
        return (
            "unterminated quote: the quoted field that starts at line "
            f"{found.open_quote} runs to the end of the file{unread}; close the "
            'quote, or write it twice ("") if it is part of the value',
            "unterminated quote: the line is part of the quoted field that "
            f"starts at line {found.open_quote} and runs to the end of the file; "
            "close that quote",
        )
    if count == 1:
        return None
    return (
        f"stray quote: the record from line {first} to {last} has a quoted field "
        f"with text after its closing quote, so none of its {count} non-blank "
        "lines could be read as a row; look for a quote that is not closed, and "
        'write a quote inside a quoted value twice ("")',
        f"stray quote: the line is part of the record from line {first} to "
        f"{last}, which has a quoted field with text after its closing quote",
    )


def _store_lines(
    db: duckdb.DuckDBPyConnection,
    index: int,
    rowid: int,
    lines: Lines,
    reasons: tuple[str, str],
) -> None:
    """Store each line of a quote error's record as a row of ``malformed``."""
    (first, text), *rest = lines
    db.execute(
        "UPDATE malformed SET line = ?, csv_line = ?, message = ? WHERE rowid = ?",
        [first, text, reasons[0], rowid],
    )
    if not rest:
        return
    table = pa.table({"line": [n for n, _ in rest], "csv_line": [t for _, t in rest]})
    db.register("quote_error_lines", table)
    try:
        db.execute(
            "INSERT INTO malformed SELECT ?, line, NULL, NULL, csv_line, ?, ? "
            "FROM quote_error_lines",
            [index, reasons[1], _QUOTE_ERROR],
        )
    finally:
        db.unregister("quote_error_lines")


def _unpaired_message(path: Path, line: int) -> str:
    return (
        f"{path}, line {line}: a quote is not closed, or has text after it, and "
        "the rows that the CSV reader made of the lines after it cannot be "
        "matched to those lines, so they cannot be counted; check the quotes "
        'from that line on, and write a quote inside a quoted value twice ("")'
    )
