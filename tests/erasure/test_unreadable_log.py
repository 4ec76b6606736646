"""Erasure with a rolled prediction log file that DuckDB cannot read.

The home has a flights dataset and a prediction log with two rolled Parquet
files, each with rows of the subject. One file is then truncated, as a disk
error or a copy cut short would leave it. The erasure removes every row it
can read, names the unreadable file and what to do, and stores no receipt.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from support import load_config_text, run_appliance, start_daemon, stop_daemon

from appliance.predictions import create_table, parquet_dir
from appliance.predictions._store import roll_over
from appliance.storage import Catalog, ingest

SUBJECT = "N7EX42Q"
OTHER = "N200AA"
CONFIG = """
[storage]
home = "home"
"""


def _log(db: duckdb.DuckDBPyConnection, first: int, count: int) -> None:
    """Log `count` predictions, every other one of the subject's tail number."""
    for i in range(first, first + count):
        tail = SUBJECT if i % 2 == 0 else OTHER
        db.execute(
            "INSERT INTO predictions (request_id, row_index, model, version, "
            "predicted_at, input, output, latency_ms) "
            "VALUES (?, 0, 'late', 1, now(), ?, '{}', 1.0)",
            [f"r{i}", json.dumps({"tailnum": tail, "distance": i})],
        ).fetchall()


def _write_home(root: Path) -> tuple[Path, Path, Path]:
    """Return the config path, the readable rolled file and the truncated one."""
    config = load_config_text(root, CONFIG)
    flights = root / "flights.csv"
    flights.write_text(f"tailnum,distance\n{SUBJECT},100\n{OTHER},200\n")
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "flights", [flights])
        create_table(catalog.db)
        _log(catalog.db, 0, 8)
        roll_over(catalog.db, config.storage.home, keep_rows=4)
        _log(catalog.db, 8, 8)
        roll_over(catalog.db, config.storage.home, keep_rows=4)
    readable, damaged = sorted(parquet_dir(config.storage.home).glob("*.parquet"))
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    return root / "config.toml", readable, damaged


def _subject_rows(path: Path) -> int:
    sql = (
        f"SELECT count(*) FROM read_parquet('{path}') "
        f"WHERE json_extract_string(input, '$.tailnum') = '{SUBJECT}'"
    )
    return duckdb.sql(sql).fetchall()[0][0]


def _erase(config: Path, *args: str) -> tuple[int, str, str]:
    result = run_appliance(config, config.parent / "home", "erase", *args)
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize("through_daemon", [False, True])
def test_unreadable_log_file_named(tmp_path: Path, through_daemon: bool) -> None:
    config, readable, damaged = _write_home(tmp_path)
    damaged_bytes = damaged.read_bytes()
    subject = ("flights", "--where", f"tailnum={SUBJECT}")
    daemon = None
    if through_daemon:
        daemon = start_daemon(config, tmp_path / "home", tmp_path / "daemon.log")
    try:
        dry_status, dry_out, dry_err = _erase(config, *subject, "--dry-run", "--json")
        status, out, err = _erase(config, *subject)
        listed = _erase(config, "--list", "--json")
    finally:
        if daemon is not None:
            assert stop_daemon(daemon) == 0
    with Catalog(tmp_path / "home", read_only=True) as catalog:
        lake = catalog.db.execute(
            "SELECT count(*) FROM read_parquet(?) WHERE tailnum = ?",
            [str(tmp_path / "home" / "lake" / "flights" / "**" / "*.parquet"), SUBJECT],
        ).fetchall()[0][0]
        table = catalog.db.execute(
            "SELECT count(*) FROM predictions "
            "WHERE json_extract_string(input, '$.tailnum') = ?",
            [SUBJECT],
        ).fetchall()[0][0]
        audit = catalog.db.execute(
            "SELECT outcome, details FROM audit_log WHERE action = 'dataset.erase'"
        ).fetchall()

    assert dry_status == 0, dry_err
    receipt = json.loads(dry_out)
    # r0, r2 and r4 in the readable file; r6 to r12 in the damaged one.
    assert receipt["removed"]["predictions_parquet"] == 3
    assert receipt["removed"]["predictions_table"] == 1
    assert list(receipt["unreadable"]) == [str(damaged)]
    assert "No magic bytes" in receipt["unreadable"][str(damaged)]
    assert any(str(damaged) in note for note in receipt["notes"])

    assert status == 1
    assert f"could not read the prediction log files {damaged}" in err
    assert "Restore each file from a backup" in err
    assert "run the same erasure again to finish" in err
    assert SUBJECT not in err
    assert out == ""
    assert _subject_rows(readable) == 0
    assert damaged.read_bytes() == damaged_bytes
    assert lake == 0
    assert table == 0
    assert listed[0] == 0, listed[2]
    assert listed[1] == ""
    ((outcome, details),) = audit
    assert outcome == "failed"
    assert str(damaged) in json.loads(details)["error"]
