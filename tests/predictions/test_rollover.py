"""The prediction log's roll-over to Parquet under a small DuckDB memory limit."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pytest

from appliance.memory import limit_duckdb
from appliance.predictions import newest_inputs
from appliance.predictions._store import create_table, parquet_dir, roll_over
from appliance.storage import Catalog

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


def log_rows(db: duckdb.DuckDBPyConnection, model: str, first: int, count: int) -> None:
    """Insert `count` rows of `model` whose input is ``{"i": N}`` from `first` on."""
    db.execute(
        "INSERT INTO predictions (request_id, row_index, model, version, "
        "predicted_at, input, output, latency_ms) "
        "SELECT md5(i::VARCHAR), 0, ?, 1, TIMESTAMPTZ '2026-01-01 00:00:00+00', "
        "'{\"i\": ' || i || '}', '{}', 1.0 FROM range(?, ?) AS t(i)",
        [model, first, first + count],
    ).fetchall()


def test_newest_inputs_reads_rolled_files(tmp_path: Path) -> None:
    with Catalog(tmp_path) as catalog:
        db = catalog.db
        create_table(db)
        log_rows(db, "demo", 0, 30)
        log_rows(db, "other", 100, 10)
        first = roll_over(db, tmp_path, keep_rows=20)
        log_rows(db, "demo", 30, 30)
        second = roll_over(db, tmp_path, keep_rows=20)
        log_rows(db, "demo", 60, 5)
        table = db.execute("SELECT count(*) FROM predictions").fetchall()[0][0]
        files = sorted(parquet_dir(tmp_path).glob("*.parquet"))

        window = newest_inputs(catalog, "demo", 50)
        everything = newest_inputs(catalog, "demo", 1000)
        recent = newest_inputs(catalog, "demo", 3)
        other = newest_inputs(catalog, "other", 1000)

    assert first > 0
    assert second > 0
    assert len(files) == 2
    assert table < 50
    assert window == [f'{{"i": {i}}}' for i in range(64, 14, -1)]
    assert everything == [f'{{"i": {i}}}' for i in range(64, -1, -1)]
    assert recent == ['{"i": 64}', '{"i": 63}', '{"i": 62}']
    assert sorted(other) == sorted(f'{{"i": {i}}}' for i in range(100, 110))
