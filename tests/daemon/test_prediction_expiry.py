"""Day-2 upkeep of a running daemon: prediction log retention and disk use."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
from support import run_appliance, start_daemon, stop_daemon

CONFIG = """
[storage]
home = "home"

[predictions]
keep_days = 7
"""


def write_rolled(path: Path, predicted_at: str) -> None:
    """Write a rolled Parquet file of one prediction made at `predicted_at`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as db:
        db.execute(
            "COPY (SELECT 1::BIGINT AS log_id, 'r' AS request_id, 0 AS row_index, "
            "'demo' AS model, 1 AS version, "
            f"TIMESTAMPTZ '{predicted_at}' AS predicted_at, '{{}}' AS input, "
            "'{}' AS output, 1.0::DOUBLE AS latency_ms) "
            f"TO '{path}' (FORMAT parquet)"
        )


def test_daemon_expires_old_prediction_files(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    rolled = tmp_path / "home" / "predictions" / "parquet"
    old, recent = rolled / "part-1.parquet", rolled / "part-2.parquet"
    write_rolled(old, "2020-01-01 00:00:00+00")
    write_rolled(recent, "2999-01-01 00:00:00+00")
    log = tmp_path / "daemon.log"

    daemon = start_daemon(config, tmp_path / "home", log)
    assert stop_daemon(daemon) == 0

    assert not old.exists()
    assert recent.exists()
    text = log.read_text(encoding="utf-8")
    assert "jobs=predictions:expire" in text
    assert f"predictions expired file={old} rows=1" in text
    with duckdb.connect(str(tmp_path / "home" / "catalog.duckdb")) as db:
        rows = db.execute(
            "SELECT actor, details FROM audit_log WHERE action = 'predictions.expire'"
        ).fetchall()
    assert [(actor, json.loads(details)["files"]) for actor, details in rows] == [
        ("daemon", ["part-1.parquet"])
    ]


def test_disk_while_daemon_runs(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    home = tmp_path / "home"
    recent = home / "predictions" / "parquet" / "part-2.parquet"
    write_rolled(recent, "2999-01-01 00:00:00+00")

    daemon = start_daemon(config, home, tmp_path / "daemon.log")
    try:
        result = run_appliance(config, home, "disk", "--json")
    finally:
        assert stop_daemon(daemon) == 0

    assert result.returncode == 0, result.stderr
    parts = {row["part"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert parts["predictions/parquet"]["bytes"] == recent.stat().st_size
    assert parts["catalog"]["bytes"] > 0
