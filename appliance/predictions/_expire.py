"""Retention of the prediction log: rolled Parquet files older than a limit.

With ``[predictions] keep_days`` above 0, a rolled file whose newest row was
predicted more than `keep_days` days ago is deleted whole, so a file is kept
while any of its rows is within the limit. The writer checks at start and
after each roll-over, and a scheduled job checks daily, so the log also shrinks when
traffic stops. Rows in the ``predictions`` table are never expired: they
move to Parquet first. Each deletion is logged and written to the audit log
as ``predictions.expire``.

Rows of a deleted file are gone for every reader. ``predictions`` queries
and ``tail`` no longer list them. A label for one of their request ids
matches no logged prediction, so the feedback request that sends it is
rejected. The live metrics and the rollback watch no longer count them.
Their labels stay in the ``labels`` table, joined to no prediction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from appliance.access import DAEMON, Actor, record
from appliance.predictions._store import parquet_dir
from appliance.storage import Catalog

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpiredFile:
    """One rolled Parquet file deleted by retention."""

    name: str
    rows: int
    bytes: int
    newest: datetime
    """Time of the newest prediction in the file."""


def expire_rolled(
    db: duckdb.DuckDBPyConnection,
    home: Path,
    keep_days: int,
    now: datetime | None = None,
) -> list[ExpiredFile]:
    """Delete the rolled files whose newest row is older than `keep_days` days.

    The caller holds off the prediction log's writer and erasures, because
    they read and rewrite these files.

    Returns:
        The deleted files, oldest first; none when `keep_days` is 0.
    """
    if keep_days <= 0:
        return []
    folder = parquet_dir(home)
    if not folder.is_dir():
        return []
    # NOTE: queries of the log glob the folder without this lock, so a query
    # that lists a file just before its deletion fails and can be retried.
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=keep_days)
    expired = []
    for path in sorted(folder.glob("*.parquet")):
        newest, rows = _newest_row(db, path)
        if newest is not None and newest >= cutoff:
            continue
        size = path.stat().st_size
        path.unlink()
        when = newest or cutoff
        expired.append(ExpiredFile(path.name, rows, size, when))
        logger.info(
            "predictions expired file=%s rows=%d bytes=%d newest=%s keep_days=%d",
            path,
            rows,
            size,
            when.isoformat(),
            keep_days,
        )
    return expired


def record_expiry(catalog: Catalog, expired: list[ExpiredFile], keep_days: int) -> None:
    """Write one ``predictions.expire`` audit entry for the files deleted."""
    if not expired:
        return
    details = {
        "keep_days": keep_days,
        "files": [f.name for f in expired],
        "rows": sum(f.rows for f in expired),
        "bytes": sum(f.bytes for f in expired),
        "newest": max(f.newest for f in expired).isoformat(),
    }
    record(catalog, "predictions.expire", "predictions", details, actor=Actor(DAEMON))


def _newest_row(
    db: duckdb.DuckDBPyConnection, path: Path
) -> tuple[datetime | None, int]:
    text = str(path).replace("'", "''")
    newest, rows = db.execute(
        f"SELECT max(predicted_at), count(*) FROM read_parquet('{text}')"
    ).fetchall()[0]
    if newest is not None:
        newest = newest.astimezone(timezone.utc)
    return newest, int(rows)
