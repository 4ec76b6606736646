"""The prediction log's roll-over to Parquet under a small DuckDB memory limit."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pytest

from appliance.memory import limit_duckdb
from appliance.predictions._store import create_table, parquet_dir, roll_over

LIMIT_MB = 64
ROWS = 150_000
"""Rows of about 700 bytes each: about 105 MB of input text, above the limit.
A roll-over that sorted the rows or kept the default row groups of 122,880
rows failed with DuckDB's out-of-memory error on this log."""


def fill_log(db: duckdb.DuckDBPyConnection, rows: int) -> None:
    """Insert `rows` distinct log rows with a 672-character input each."""
    for start in range(0, rows, 25_000):
        db.execute(
            "INSERT INTO predictions (request_id, row_index, model, version, "
            "predicted_at, input, output, latency_ms) "
            "SELECT md5(i::VARCHAR), 0, 'demo', 1, "
            "TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_microseconds(i), "
            "repeat(md5(i::VARCHAR), 21), '{\"prediction\": 1}', 1.0 "
            "FROM range(?, ?) AS t(i)",
            [start, min(rows, start + 25_000)],
        ).fetchall()


def test_roll_over_logs_row_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = duckdb.connect(str(tmp_path / "catalog.duckdb"))
    create_table(db)
    fill_log(db, 40)
    caplog.set_level(logging.INFO, logger="appliance.predictions._store")

    moved = roll_over(db, tmp_path, keep_rows=20)
    db.close()

    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith("predictions rolled file=")
    assert f" rows={moved} " in message


def test_roll_over_larger_than_memory_limit(tmp_path: Path) -> None:
    db = duckdb.connect(str(tmp_path / "catalog.duckdb"))
    limit_duckdb(db, LIMIT_MB)
    create_table(db)
    fill_log(db, ROWS)
    (ids_before,) = db.execute("SELECT sum(log_id) FROM predictions").fetchall()[0]

    moved = roll_over(db, tmp_path, keep_rows=ROWS // 2)

    assert moved == ROWS - ROWS // 4
    rolled = f"read_parquet('{parquet_dir(tmp_path)}/*.parquet')"
    count, distinct, top = db.execute(
        f"SELECT count(*), count(DISTINCT log_id), max(log_id) FROM {rolled}"
    ).fetchall()[0]
    assert count == moved
    assert distinct == moved
    kept, bottom = db.execute(
        "SELECT count(*), min(log_id) FROM predictions"
    ).fetchall()[0]
    assert kept == ROWS // 4
    assert bottom == top + 1
    (ids_after,) = db.execute(
        f"SELECT sum(log_id) FROM (SELECT log_id FROM predictions "
        f"UNION ALL SELECT log_id FROM {rolled})"
    ).fetchall()[0]
    assert ids_after == ids_before
    (text,) = db.execute(f"SELECT min(length(input)) FROM {rolled}").fetchall()[0]
    assert text == 672
    db.close()


def test_roll_over_keeps_insertion_order_setting(tmp_path: Path) -> None:
    db = duckdb.connect(str(tmp_path / "catalog.duckdb"))
    create_table(db)
    fill_log(db, 10)

    assert roll_over(db, tmp_path, keep_rows=4) == 8

    (preserved,) = db.execute(
        "SELECT current_setting('preserve_insertion_order')"
    ).fetchall()[0]
    assert preserved is True
    db.close()
