"""Compaction of the catalog file, so that deleted rows leave no bytes behind.

DuckDB 2.0.1 marks the blocks of deleted and updated rows as free but keeps
their bytes in the file, and neither ``CHECKPOINT`` nor ``VACUUM`` clears
them. ``COPY FROM DATABASE`` into a new file copies the live rows only, with
the sequences' current values and the constraints. The copy then replaces the
catalog with one rename, so a crash leaves the old file or the new one.

It needs the only connection to the catalog, so an erasure in a running
daemon leaves the marker file ``HOME/catalog.compact``, and the daemon
compacts at its next start.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import duckdb

from appliance.errors import StorageError
from appliance.storage._fsync import fsync_path
from appliance.storage._sql import literal

logger = logging.getLogger(__name__)

MARKER = "catalog.compact"
"""Marker file under the home: while it exists, the next daemon start compacts."""


def request_compaction(home: Path) -> None:
    """Leave the marker that makes the daemon's next start compact the catalog."""
    (home / MARKER).touch()


def compaction_requested(home: Path) -> bool:
    """Tell whether an erasure asked for a compaction that has not run yet."""
    return (home / MARKER).exists()


def compact_catalog(home: Path) -> None:
    """Rewrite ``HOME/catalog.duckdb`` with its live rows only.

    No other connection to the catalog may be open.

    Raises:
        StorageError: The copy failed; the catalog is unchanged.
    """
    path = home / "catalog.duckdb"
    if not path.exists():
        (home / MARKER).unlink(missing_ok=True)
        return
    copy = home / "catalog.duckdb.compact.tmp"
    for leftover in (copy, copy.with_name(copy.name + ".wal")):
        leftover.unlink(missing_ok=True)
    try:
        with duckdb.connect() as db:
            db.execute(f"ATTACH {literal(str(path))} AS old")
            db.execute(f"ATTACH {literal(str(copy))} AS new")
            db.execute("COPY FROM DATABASE old TO new")
            db.execute("DETACH old")
            db.execute("DETACH new")
    except duckdb.Error as exc:
        copy.unlink(missing_ok=True)
        raise StorageError(
            f"compaction of the catalog {path} failed: {exc}; the catalog is "
            "unchanged, check the free disk space"
        ) from exc
    wal = path.with_name(path.name + ".wal")
    if wal.exists():
        # DETACH checkpoints the log into the file; one left over would be
        # replayed onto the copy.
        copy.unlink(missing_ok=True)
        raise StorageError(
            f"compaction of the catalog {path} stopped, because its write-ahead "
            f"log {wal} was not checkpointed; the catalog is unchanged, open it "
            "once with the appliance and retry"
        )
    fsync_path(copy)
    before = path.stat().st_size
    os.replace(copy, path)
    fsync_path(home)
    (home / MARKER).unlink(missing_ok=True)
    logger.info(
        "catalog compacted path=%s bytes_before=%d bytes_after=%d",
        path,
        before,
        path.stat().st_size,
    )
