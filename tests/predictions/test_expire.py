"""Retention of the prediction log: ``[predictions] keep_days``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.access._audit import ensure_table
from appliance.config import PredictionsConfig
from appliance.predictions import LogEntry, PredictionLog, parquet_dir
from appliance.storage import Catalog

OLD = 1_700_000_000.0
"""A prediction time in November 2023, years before any test runs."""


def entry(index: int, at: float) -> LogEntry:
    return LogEntry(f"{index:032x}", "demo", 1, at, 1.0, [{"x": index}], [1])


def wait_for(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def rolled_ids(home: Path) -> list[str]:
    import duckdb

    pattern = str(parquet_dir(home) / "*.parquet")
    with duckdb.connect() as db:
        rows = db.execute(
            f"SELECT request_id FROM read_parquet('{pattern}') ORDER BY request_id"
        ).fetchall()
    return [request_id for (request_id,) in rows]


def expiry_entries(catalog: Catalog) -> list[dict]:
    ensure_table(catalog.db)
    rows = catalog.db.cursor().execute(
        "SELECT actor, target, details FROM audit_log "
        "WHERE action = 'predictions.expire' ORDER BY seq"
    )
    return [
        {"actor": actor, "target": target, **json.loads(details)}
        for actor, target, details in rows.fetchall()
    ]


def fill(log: PredictionLog, indexes: range, at: float) -> None:
    for index in indexes:
        log.append(entry(index, at + index))
    wait_for(lambda: log.written_rows >= indexes.stop)


def test_roll_over_deletes_old_files(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    config = PredictionsConfig(
        flush_seconds=0.05, journal_fsync_seconds=0.0, roll_rows=4, keep_days=30
    )
    log = PredictionLog(catalog, config)
    log.start()
    fill(log, range(0, 6), OLD)
    # The roll-over wrote the old rows to a file, and retention deleted it.
    wait_for(lambda: not list(parquet_dir(tmp_path).glob("*.parquet")))
    fill(log, range(6, 12), time.time())
    wait_for(lambda: bool(list(parquet_dir(tmp_path).glob("*.parquet"))))
    log.stop()

    recent = rolled_ids(tmp_path)
    assert any(int(request_id, 16) >= 6 for request_id in recent)
    (table_rows,) = (
        catalog.db.cursor().execute("SELECT count(*) FROM predictions").fetchall()[0]
    )
    (entry_found,) = expiry_entries(catalog)
    assert entry_found["actor"] == "daemon"
    assert entry_found["target"] == "predictions"
    assert entry_found["keep_days"] == 30
    assert entry_found["rows"] == 12 - table_rows - len(recent)
    assert len(entry_found["files"]) == 1
    catalog.close()


def test_keep_days_zero_keeps_every_file(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    config = PredictionsConfig(
        flush_seconds=0.05, journal_fsync_seconds=0.0, roll_rows=4
    )
    log = PredictionLog(catalog, config)
    log.start()
    fill(log, range(0, 6), OLD)
    wait_for(lambda: bool(list(parquet_dir(tmp_path).glob("*.parquet"))))
    rolled = rolled_ids(tmp_path)
    assert log.expire() == 0
    log.stop()

    assert rolled_ids(tmp_path) == rolled
    assert expiry_entries(catalog) == []
    catalog.close()


def test_expire_keeps_mixed_age_file(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    keep_all = PredictionsConfig(
        flush_seconds=0.05, journal_fsync_seconds=0.0, roll_rows=4
    )
    log = PredictionLog(catalog, keep_all)
    log.start()
    fill(log, range(0, 6), OLD)
    wait_for(lambda: len(list(parquet_dir(tmp_path).glob("*.parquet"))) == 1)
    old_ids = rolled_ids(tmp_path)
    # The next file mixes the old rows left in the table with recent ones, so
    # it stays.
    fill(log, range(6, 12), time.time())
    wait_for(lambda: len(list(parquet_dir(tmp_path).glob("*.parquet"))) == 2)
    log.stop()
    mixed_ids = sorted(set(rolled_ids(tmp_path)) - set(old_ids))
    assert min(mixed_ids) < f"{6:032x}" <= max(mixed_ids)

    log = PredictionLog(catalog, PredictionsConfig(keep_days=1, roll_rows=4))
    # The start applies a changed keep_days at once.
    log.start()
    assert log.expire() == 0
    log.stop()

    assert rolled_ids(tmp_path) == mixed_ids
    assert [e["rows"] for e in expiry_entries(catalog)] == [len(old_ids)]
    catalog.close()


def test_keep_days_below_zero_rejected() -> None:
    with pytest.raises(ValueError, match="keep_days must be 0 .* got -1"):
        PredictionsConfig(keep_days=-1)
