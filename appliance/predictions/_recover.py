"""Recovery of the prediction log rows that a crash left in the journal."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pyarrow as pa

from appliance.predictions._journal import journal_dir, read_segment, segment_files
from appliance.predictions._rows import entries_to_table
from appliance.predictions._store import insert_missing_rows

logger = logging.getLogger(__name__)


def recover_journal(db: duckdb.DuckDBPyConnection, home: Path) -> int:
    """Insert the journal's rows that the prediction log lacks.

    Each segment is inserted in one transaction and then deleted. A row whose
    request id and row index are already in the ``predictions`` table or its
    Parquet files is skipped, so a segment inserted just before a crash, but
    not yet deleted, is not inserted twice. A segment that fails stays for
    the next start.

    Returns:
        Number of rows inserted.
    """
    inserted = 0
    for path in segment_files(journal_dir(home)):
        try:
            inserted += insert_segment(db, home, path)
        except (duckdb.Error, pa.ArrowException, OSError):
            logger.exception(
                "journal recovery failed file=%s; the file stays for the next start",
                path,
            )
            break
        path.unlink()
    return inserted


def insert_segment(db: duckdb.DuckDBPyConnection, home: Path, path: Path) -> int:
    """Insert the rows of one journal segment that the prediction log lacks.

    Returns:
        Number of rows inserted.

    Raises:
        duckdb.Error, pyarrow.ArrowException, OSError: The segment could not
            be read or its rows could not be inserted.
    """
    entries = read_segment(path)
    table = entries_to_table(entries, db)
    rows = insert_missing_rows(db, table, home)
    logger.info(
        "journal segment recovered file=%s entries=%d rows=%d skipped_rows=%d",
        path,
        len(entries),
        rows,
        table.num_rows - rows,
    )
    return rows
