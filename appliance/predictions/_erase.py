"""Erasure of logged input rows: the table, its Parquet files, journal and spill.

The functions take a SQL condition on the ``input`` column, such as
``json_extract_string(input, '$."tailnum"') = 'N14228'``, and a Python test
of one input row for the journal and spill files, which hold the rows as
sent. `PredictionLog.flushed` first moves every row out of the journal and
the spill files into the table, so an erasure in the daemon changes only the
table and the Parquet files. The journal and spill counts are of the rows
still on disk, which a dry run reports.

A rolled Parquet file that DuckDB cannot read is left as it is and named in
`ParquetErasure.unreadable`, and the other files are still counted or
rewritten. The caller decides what an incomplete erasure means.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from appliance.predictions._journal import journal_dir, read_segment, segment_files
from appliance.predictions._log import read_spill
from appliance.predictions._store import parquet_dir
from appliance.storage import fsync_path, transaction

logger = logging.getLogger(__name__)

RowTest = Callable[[Any], bool]
"""Tells whether one input row, as sent, belongs to the subject."""

_READ_ERRORS = (duckdb.InvalidInputException, duckdb.IOException)
"""Errors of a damaged, truncated or inaccessible Parquet file, such as
``No magic bytes found at end of file``."""


@dataclass
class ParquetErasure:
    """Rows and labels matched, or removed, in the rolled Parquet files."""

    rows: int = 0
    labels: int = 0
    unreadable: dict[Path, str] = field(default_factory=dict)
    """Files that could not be read, with the first line of DuckDB's error.
    Their rows are neither counted nor removed."""


def count_table(db: duckdb.DuckDBPyConnection, condition: str) -> int:
    """Return the rows of the ``predictions`` table whose input matches."""
    if not _has_table(db, "predictions"):
        return 0
    sql = f"SELECT count(*) FROM predictions WHERE {condition}"
    return int(db.execute(sql).fetchall()[0][0])


def delete_from_table(db: duckdb.DuckDBPyConnection, condition: str) -> tuple[int, int]:
    """Delete the matching rows of the table and their labels, in one transaction.

    Returns:
        The rows and the labels deleted.
    """
    if not _has_table(db, "predictions"):
        return 0, 0
    with transaction(db):
        labels = _delete_labels(db, "predictions", condition)
        (deleted,) = db.execute(
            f"DELETE FROM predictions WHERE {condition}"
        ).fetchall()[0]
    return int(deleted), labels


def count_labels(db: duckdb.DuckDBPyConnection, condition: str) -> int:
    """Return the labels of the matching rows of the predictions table."""
    if not _has_table(db, "labels") or not _has_table(db, "predictions"):
        return 0
    sql = f"SELECT count(*) FROM labels WHERE {_labelled('predictions', condition)}"
    return int(db.execute(sql).fetchall()[0][0])


def _count_source_labels(
    db: duckdb.DuckDBPyConnection, source: str, condition: str
) -> int:
    sql = f"SELECT count(*) FROM labels WHERE {_labelled(source, condition)}"
    return int(db.execute(sql).fetchall()[0][0])


def _delete_labels(db: duckdb.DuckDBPyConnection, source: str, condition: str) -> int:
    """Delete the labels of the matching rows of `source`; return their count."""
    if not _has_table(db, "labels"):
        return 0
    sql = f"DELETE FROM labels WHERE {_labelled(source, condition)}"
    return int(db.execute(sql).fetchall()[0][0])


def _labelled(source: str, condition: str) -> str:
    return (
        "(model, request_id, row_index) IN (SELECT (model, request_id, row_index) "
        f"FROM {source} WHERE {condition})"
    )


def count_parquet(
    db: duckdb.DuckDBPyConnection, home: Path, condition: str
) -> ParquetErasure:
    """Count the matching rows of the rolled-over Parquet files and their labels."""
    counted = ParquetErasure()
    has_labels = _has_table(db, "labels")
    for path in _parquet_files(home):
        source = f"read_parquet({_quote(str(path))})"
        try:
            rows = _count_file(db, path, condition)
            labels = _count_source_labels(db, source, condition) if has_labels else 0
        except _READ_ERRORS as exc:
            counted.unreadable[path] = _unreadable(path, exc)
            continue
        counted.rows += rows
        counted.labels += labels
    return counted


def rewrite_parquet(
    db: duckdb.DuckDBPyConnection, home: Path, condition: str
) -> ParquetErasure:
    """Rewrite each rolled-over file that contains a matching row without it.

    Each file is written beside the old one and renamed over it, so a crash
    leaves the old or the new file. The labels of the removed rows are
    deleted first. A file that cannot be read is kept unchanged and named in
    the result, and the other files are still rewritten.
    """
    removed = ParquetErasure()
    for path in _parquet_files(home):
        try:
            matched, labels = _rewrite_file(db, path, condition)
        except _READ_ERRORS as exc:
            removed.unreadable[path] = _unreadable(path, exc)
            continue
        removed.rows += matched
        removed.labels += labels
    return removed


def _rewrite_file(
    db: duckdb.DuckDBPyConnection, path: Path, condition: str
) -> tuple[int, int]:
    """Rewrite one file without its matching rows; return the rows and labels
    removed."""
    matched = _count_file(db, path, condition)
    if not matched:
        return 0, 0
    source = f"read_parquet({_quote(str(path))})"
    labels = _delete_labels(db, source, condition)
    partial = path.with_name(path.name + ".tmp")
    try:
        db.execute(
            f"COPY (SELECT * FROM {source} WHERE ({condition}) IS NOT TRUE) "
            f"TO {_quote(str(partial))} (FORMAT parquet, COMPRESSION zstd)"
        ).fetchall()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    fsync_path(partial)
    os.replace(partial, path)
    fsync_path(path.parent)
    logger.info("prediction file redacted file=%s rows=%d", path, matched)
    return matched, labels


def _unreadable(path: Path, exc: Exception) -> str:
    """Log a Parquet file the erasure cannot read; return its error's first line.

    Only the first line is kept, because DuckDB's later lines quote the SQL,
    which contains the subject's key values.
    """
    error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    logger.error(
        "prediction log file unreadable, not erased file=%s error=%s", path, error
    )
    return error


def count_journal(home: Path, test: RowTest) -> int:
    """Return the matching input rows in the journal segments on disk."""
    count = 0
    for path in segment_files(journal_dir(home)):
        for entry in read_segment(path):
            count += _count_rows(entry.inputs, test)
    return count


def count_spill(home: Path, test: RowTest) -> int:
    """Return the matching input rows in the spill files on disk."""
    count = 0
    for path in sorted((home / "predictions" / "spill").glob("spill-*.arrow")):
        table = read_spill(path)
        texts = table.column("input").to_pylist()
        count += sum(1 for text in texts if test(json.loads(text)))
    return count


def _count_rows(inputs: list[Any] | pa.Table, test: RowTest) -> int:
    rows = inputs.to_pylist() if isinstance(inputs, pa.Table) else inputs
    return sum(1 for row in rows if test(row))


def _count_file(db: duckdb.DuckDBPyConnection, path: Path, condition: str) -> int:
    sql = f"SELECT count(*) FROM read_parquet({_quote(str(path))}) WHERE {condition}"
    return int(db.execute(sql).fetchall()[0][0])


def _parquet_files(home: Path) -> list[Path]:
    folder = parquet_dir(home)
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def _has_table(db: duckdb.DuckDBPyConnection, name: str) -> bool:
    tables = {t for (t,) in db.execute("SHOW TABLES").fetchall()}
    return name in tables


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
