"""Stored predictions: the DuckDB table, its Parquet roll-over and queries.

Each predicted row is one record: request id, row index, model, version, time,
the input row and the output as JSON text, and the request latency. New rows go
to the ``predictions`` table of the catalog. When the table holds more than
``[predictions] roll_rows`` rows, all but the newest ``roll_rows / 2`` are
copied to a zstd Parquet file under ``HOME/predictions/parquet/`` and deleted
from the table. Queries read the table and the Parquet files together and sort
by ``log_id``, so the rows of a Parquet file are in no particular order.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from appliance.errors import RequestError
from appliance.storage import Catalog

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS prediction_log_id;
CREATE TABLE IF NOT EXISTS predictions (
    log_id       BIGINT NOT NULL DEFAULT nextval('prediction_log_id'),
    request_id   VARCHAR NOT NULL,
    row_index    INTEGER NOT NULL,
    model        VARCHAR NOT NULL,
    version      INTEGER NOT NULL,
    predicted_at TIMESTAMPTZ NOT NULL,
    input        VARCHAR NOT NULL,
    output       VARCHAR NOT NULL,
    latency_ms   DOUBLE NOT NULL
);
"""

COLUMNS = (
    "request_id",
    "row_index",
    "model",
    "version",
    "predicted_at",
    "input",
    "output",
    "latency_ms",
)
"""Columns a writer supplies; ``log_id`` comes from the sequence."""

LOG_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("row_index", pa.int32()),
        ("model", pa.string()),
        ("version", pa.int32()),
        ("predicted_at", pa.timestamp("us", tz="UTC")),
        ("input", pa.string()),
        ("output", pa.string()),
        ("latency_ms", pa.float64()),
    ]
)
"""Arrow schema of the rows handed to `insert_rows`, and of spill files."""


ROW_GROUP_BYTES = "8MB"
"""Target size of a Parquet row group written by `roll_over`.

DuckDB's Parquet writer buffers a whole row group per thread, 122,880 rows by
default. With rows of about 700 bytes that buffer alone exceeds a 64 MB
``memory_limit``, and a size in bytes also bounds it for wide input rows."""


def parquet_dir(home: Path) -> Path:
    """Return the folder of the rolled-over Parquet files."""
    return home / "predictions" / "parquet"


# NOTE: DuckDB 2.0 rejects a statement on a cursor whose previous result was
# not read to the end, so every execute here is followed by fetchall().


def create_table(db: duckdb.DuckDBPyConnection) -> None:
    """Create the predictions table and its id sequence when missing."""
    db.execute(SCHEMA).fetchall()


def insert_rows(db: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    """Append rows of `LOG_SCHEMA` to the predictions table in one transaction."""
    # DuckDB finds the local variable by its name (a replacement scan). That
    # costs about half the CPU of registering the table as a view and dropping
    # it again, which was most of the cost of a small batch.
    prediction_rows = table  # noqa: F841
    names = ", ".join(COLUMNS)
    db.execute(
        f"INSERT INTO predictions ({names}) SELECT {names} FROM prediction_rows"
    ).fetchall()


def insert_missing_rows(
    db: duckdb.DuckDBPyConnection, table: pa.Table, home: Path
) -> int:
    """Append the rows of `table` whose request id and row index are neither
    in the predictions table nor in its Parquet files, each once.

    Returns:
        Number of rows appended.
    """
    logged = ["SELECT request_id, row_index FROM predictions"]
    rolled = _parquet_source(home)
    if rolled is not None:
        logged.append(f"SELECT request_id, row_index FROM {rolled}")
    names = ", ".join(COLUMNS)
    db.register("_prediction_rows", table)
    try:
        (inserted,) = db.execute(
            f"INSERT INTO predictions ({names}) SELECT {names} FROM _prediction_rows "
            f"AS new WHERE NOT EXISTS (SELECT 1 FROM ({' UNION ALL '.join(logged)}) "
            "AS old WHERE old.request_id = new.request_id "
            "AND old.row_index = new.row_index) "
            "QUALIFY row_number() OVER (PARTITION BY request_id, row_index) = 1"
        ).fetchall()[0]
    finally:
        db.unregister("_prediction_rows")
    return int(inserted)


def roll_over(db: duckdb.DuckDBPyConnection, home: Path, keep_rows: int) -> int:
    """Move the oldest rows to a Parquet file when the table is above `keep_rows`.

    The file is written and renamed into place before the rows are deleted.
    A crash in between leaves rows in both places, and `remove_rolled` deletes
    them from the table at the next start.

    Returns:
        Number of rows moved.
    """
    (count,) = db.execute("SELECT count(*) FROM predictions").fetchall()[0]
    if count <= keep_rows:
        return 0
    (cutoff,) = db.execute(
        "SELECT log_id FROM predictions ORDER BY log_id LIMIT 1 OFFSET ?",
        [count - keep_rows // 2 - 1],
    ).fetchall()[0]
    folder = parquet_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"part-{time.time_ns()}.parquet"
    partial = target.with_name(target.name + ".tmp")
    _copy_to_parquet(db, cutoff, partial)
    os.replace(partial, target)
    (moved,) = db.execute(
        "DELETE FROM predictions WHERE log_id <= ?", [cutoff]
    ).fetchall()[0]
    logger.info(
        "predictions rolled file=%s rows=%d max_log_id=%d", target, moved, cutoff
    )
    return int(moved)


def _copy_to_parquet(db: duckdb.DuckDBPyConnection, cutoff: int, path: Path) -> None:
    """Copy the rows up to log id `cutoff` to the Parquet file `path`.

    The copy fits in a small DuckDB ``memory_limit``: with DuckDB 2.0.1 it
    moved 1,500,000 rows of about 700 bytes under 64 MB. It sorts nothing,
    and it drops insertion order, so the parallel scan holds back no batches
    to write them in order. Row groups are `ROW_GROUP_BYTES`. The order
    setting belongs to the session of a cursor of its own, so other queries
    keep insertion order.
    """
    cursor = db.cursor()
    try:
        cursor.execute("SET SESSION preserve_insertion_order = false").fetchall()
        cursor.execute(
            f"COPY (SELECT * FROM predictions WHERE log_id <= ?) "
            f"TO {_quote(str(path))} (FORMAT parquet, COMPRESSION zstd, "
            f"ROW_GROUP_SIZE_BYTES '{ROW_GROUP_BYTES}')",
            [cutoff],
        ).fetchall()
    finally:
        cursor.close()


def remove_rolled(db: duckdb.DuckDBPyConnection, home: Path) -> int:
    """Delete table rows already copied to Parquet by an interrupted roll-over."""
    source = _parquet_source(home)
    if source is None:
        return 0
    (rolled,) = db.execute(f"SELECT max(log_id) FROM {source}").fetchall()[0]
    if rolled is None:
        return 0
    (removed,) = db.execute(
        "SELECT count(*) FROM predictions WHERE log_id <= ?", [rolled]
    ).fetchall()[0]
    if removed:
        db.execute("DELETE FROM predictions WHERE log_id <= ?", [rolled]).fetchall()
        logger.warning("predictions duplicated by a roll-over removed rows=%d", removed)
    return int(removed)


def query(
    catalog: Catalog,
    model: str | None = None,
    version: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """Return logged predictions that match every filter given.

    Args:
        catalog: Catalog (or cursor view) whose home holds the log.
        model: Only rows of this model.
        version: Only rows of this model version.
        since: Only rows predicted at or after this time.
        until: Only rows predicted before this time.
        limit: Most rows returned.
        newest_first: Order by newest first instead of oldest first.

    Returns:
        One dict per row, with ``predicted_at`` as an aware time in UTC.

    Raises:
        RequestError: `since` is not before `until`, so no row can match.
    """
    if since is not None and until is not None and since >= until:
        raise RequestError(
            f"since {since.isoformat()} is not before until {until.isoformat()}, "
            "so no prediction can match; swap them or widen the range"
        )
    db = catalog.db
    tables = [t for (t,) in db.execute("SHOW TABLES").fetchall()]
    sources = ["SELECT * FROM predictions"] if "predictions" in tables else []
    rolled = _parquet_source(catalog.home)
    if rolled is not None:
        sources.append(f"SELECT * FROM {rolled}")
    if not sources:
        return []
    where, params = _filters(model, version, since, until)
    order = "DESC" if newest_first else "ASC"
    sql = (
        f"SELECT * FROM ({' UNION ALL '.join(sources)}) {where} "
        f"ORDER BY log_id {order} LIMIT ?"
    )
    cursor = db.execute(sql, [*params, limit])
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, row)) for row in cursor.fetchall()]
    # DuckDB returns TIMESTAMPTZ values in the session's time zone, which is
    # the process's local zone. In UTC every reader prints the same text.
    for row in rows:
        row["predicted_at"] = row["predicted_at"].astimezone(timezone.utc)
    return rows


def newest_inputs(catalog: Catalog, model: str, limit: int) -> list[str]:
    """Return the input rows, as JSON text, of the newest `limit` logged
    predictions of `model`, newest first, as `newest_logged_inputs` reads them."""
    return [text for _, _, text in newest_logged_inputs(catalog, model, limit)]


def newest_logged_inputs(
    catalog: Catalog, model: str, limit: int
) -> list[tuple[str, int, str]]:
    """Return the request id, row index and input row (JSON text) of the
    newest `limit` logged predictions of `model`, newest first.

    The rows come from the predictions table and, when it has fewer than
    `limit` rows of the model, from the rolled Parquet files. Those are read
    newest first until they add the missing rows, so no older file than the
    window needs is read. A file's name contains the time of its roll-over
    (``part-TIME_NS.parquet``), and a later roll-over moves higher log ids, so
    name order is log id order. A file whose footer cannot be read is left
    out with a warning, as in `query`.
    """
    db = catalog.db
    tables = {t for (t,) in db.execute("SHOW TABLES").fetchall()}
    sources: list[str] = []
    found = 0
    if "predictions" in tables:
        sources.append("predictions")
        found = _model_rows(db, "predictions", model)
    folder = parquet_dir(catalog.home)
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    for path in reversed(readable_parquet(files)):
        if found >= limit:
            break
        source = f"read_parquet({_quote(str(path))})"
        rows = _model_rows(db, source, model)
        if rows:
            sources.append(source)
            found += rows
    if not sources:
        return []
    union = " UNION ALL ".join(
        f"SELECT log_id, request_id, row_index, input FROM {source} "
        "WHERE model = $model"
        for source in sources
    )
    rows = db.execute(
        f"SELECT request_id, row_index, input FROM ({union}) "
        "ORDER BY log_id DESC LIMIT $limit",
        {"model": model, "limit": limit},
    ).fetchall()
    return [(request_id, int(row), text) for request_id, row, text in rows]


def _model_rows(db: duckdb.DuckDBPyConnection, source: str, model: str) -> int:
    sql = f"SELECT count(*) FROM {source} WHERE model = ?"
    return int(db.execute(sql, [model]).fetchall()[0][0])


def labelled(
    catalog: Catalog, model: str, version: int, since: datetime, limit: int
) -> list[tuple[str, str, str]]:
    """Return the latest labelled predictions of one version, oldest first.

    Only predictions made at or after `since` count, so a version promoted
    again is judged on the rows it served since then.

    Returns:
        Up to `limit` tuples of label, input row and output, as JSON text,
        taken newest label first.
    """
    db = catalog.db
    tables = {t for (t,) in db.execute("SHOW TABLES").fetchall()}
    if "labels" not in tables or "predictions" not in tables:
        return []
    columns = (
        "log_id, request_id, row_index, model, version, predicted_at, input, output"
    )
    sources = [f"SELECT {columns} FROM predictions"]
    rolled = _parquet_source(catalog.home)
    if rolled is not None:
        sources.append(f"SELECT {columns} FROM {rolled}")
    rows = db.execute(
        "SELECT l.label, p.input, p.output FROM labels AS l "
        f"JOIN ({' UNION ALL '.join(sources)}) AS p ON p.model = l.model "
        "AND p.request_id = l.request_id AND p.row_index = l.row_index "
        "WHERE l.model = ? AND l.version = ? AND p.version = ? "
        "AND p.predicted_at >= ? ORDER BY l.received_at DESC, p.log_id DESC LIMIT ?",
        [model, version, version, since, limit],
    ).fetchall()
    return rows[::-1]


def utc_text(value: datetime) -> str:
    """Format an aware time as ISO 8601 in UTC with a ``Z`` suffix.

    The text is the one msgspec 0.23 writes for the same time in the daemon's
    JSON responses, such as ``2026-12-05T08:00:00.120000Z``.
    """
    text = value.astimezone(timezone.utc).isoformat()
    return text.removesuffix("+00:00") + "Z"


def _filters(
    model: str | None,
    version: int | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[str, list[Any]]:
    clauses, params = [], []
    for clause, value in (
        ("model = ?", model),
        ("version = ?", version),
        ("predicted_at >= ?", since),
        ("predicted_at < ?", until),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


def _parquet_source(home: Path) -> str | None:
    """Return the SQL source of the log's readable Parquet files, or None."""
    folder = parquet_dir(home)
    if not folder.is_dir():
        return None
    files = readable_parquet(sorted(folder.glob("*.parquet")))
    if not files:
        return None
    return f"read_parquet([{', '.join(_quote(str(path)) for path in files)}])"


_FOOTERS: dict[tuple[str, int, int], bool] = {}
"""Whether each Parquet file, by path, size and change time, has a readable
footer, so a file is checked and reported once per process."""


def readable_parquet(files: list[Path]) -> list[Path]:
    """Return the files whose Parquet footer can be read; warn about the rest.

    One damaged file would fail every query of the log, so it is left out
    with a warning that names it, and the rows of the other files are read.
    """
    readable = []
    for path in files:
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _FOOTERS:
            _FOOTERS[key] = _check_footer(path)
        if _FOOTERS[key]:
            readable.append(path)
    return readable


def _check_footer(path: Path) -> bool:
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
    except (OSError, pa.ArrowException) as exc:
        skipped = 1 + sum(
            1 for (name, _, _), ok in _FOOTERS.items() if not ok and name != str(path)
        )
        logger.warning(
            "prediction log file unreadable, skipped file=%s error=%s skipped=%d; "
            "its rows are left out of queries: restore it from a backup or move "
            "it out of %s",
            path,
            exc,
            skipped,
            path.parent,
        )
        return False
    return True


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
