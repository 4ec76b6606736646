"""CSV records that a quote left open runs to the end of their file.

DuckDB 2.0.1 reads everything after a quote that no later quote closes as
one field, so the rest of the file becomes one rejected record, stored as a
single row of the ``malformed`` table (see `_loading.malformed_records`).
`split_open_quotes` quarantines each non-blank line of that record as a row
of its own instead. That way the ingest's counts add up to the file's lines,
and each line is kept whole in the quarantine, while DuckDB 2.0.1 keeps only
the first 10,000 characters of the record.
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pyarrow as pa

from appliance.errors import IngestError
from appliance.storage._lines import OpenQuote, match_records, record_lines
from appliance.storage._sources import Dialect, SourceFile

logger = logging.getLogger(__name__)

_QUOTE_ERROR = "UNQUOTED VALUE"
"""DuckDB's ``error_type`` of a quote left open or followed by text."""


def split_open_quotes(
    db: duckdb.DuckDBPyConnection,
    sources: list[SourceFile],
    dialects: list[Dialect],
    records: list[int],
    encoding: str,
) -> None:
    """Replace the ``malformed`` row of each open quote's record by one per line.

    Only files with a quote error in ``malformed`` are scanned. The first
    line keeps the record's row, and its reason names the lines that could
    not be read. Each later line gets a row without a ``line_position`` or
    column.

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
        source, dialect = sources[index], dialects[index]
        found = record_lines(
            source.path, encoding, dialect.quote, dialect.escape, dialect.delimiter
        )
        rejects = db.execute(
            "SELECT rowid, line_position, line, error_type FROM malformed "
            "WHERE _file = ?",
            [index],
        ).fetchall()
        matched = match_records(found, [r[1] for r in rejects], records[index])
        if matched is None:
            first = min(r[2] for r in rejects if r[3] == _QUOTE_ERROR)
            raise IngestError(_unpaired_message(source.path, first))
        open_quote = found.open_quote
        if open_quote is None or found.lines[-1] not in matched[1]:
            continue
        rowid = rejects[matched[1].index(found.lines[-1])][0]
        _store_lines(db, index, rowid, open_quote)
        logger.warning(
            "quote left open, lines quarantined file=%s quote_line=%d lines=%d",
            source.path,
            open_quote.line,
            len(open_quote.lines),
        )


def _store_lines(
    db: duckdb.DuckDBPyConnection, index: int, rowid: int, open_quote: OpenQuote
) -> None:
    """Store each line of the open quote's record as a row of ``malformed``."""
    (first, text), *rest = open_quote.lines
    db.execute(
        "UPDATE malformed SET line = ?, csv_line = ?, message = ? WHERE rowid = ?",
        [first, text, open_quote_reason(open_quote), rowid],
    )
    if not rest:
        return
    lines = pa.table({"line": [n for n, _ in rest], "csv_line": [t for _, t in rest]})
    reason = (
        "unterminated quote: the line is part of the quoted field that starts "
        f"at line {open_quote.line} and runs to the end of the file; close "
        "that quote"
    )
    db.register("open_quote_lines", lines)
    try:
        db.execute(
            "INSERT INTO malformed SELECT ?, line, NULL, NULL, csv_line, ?, ? "
            "FROM open_quote_lines",
            [index, reason, _QUOTE_ERROR],
        )
    finally:
        db.unregister("open_quote_lines")


def open_quote_reason(open_quote: OpenQuote) -> str:
    """Return the reason of the first line of an open quote's record.

    It names the lines that the quote keeps from being read as rows.
    """
    first, last = open_quote.lines[0][0], open_quote.lines[-1][0]
    count = len(open_quote.lines)
    lines = ""
    if count > 1:
        lines = (
            f", so none of the {count} non-blank lines from line {first} to "
            f"{last} could be read as a row"
        )
    return (
        f"unterminated quote: the quoted field that starts at line "
        f"{open_quote.line} runs to the end of the file{lines}; close the "
        'quote, or write it twice ("") if it is part of the value'
    )


def _unpaired_message(path: Path, line: int) -> str:
    return (
        f"{path}, line {line}: a quote is not closed, or has text after it, and "
        "the rows that the CSV reader made of the lines after it cannot be "
        "matched to those lines, so they cannot be counted; check the quotes "
        'from that line on, and write a quote inside a quoted value twice ("")'
    )
