"""Start and CLI errors for damaged files and a home this user may not write."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from daemon_support import free_port, run_cli, write_config

from appliance.predictions._store import create_table, parquet_dir, query, roll_over
from appliance.storage import Catalog


def truncated_duckdb(path: Path, size: int) -> None:
    """Write a DuckDB file of a 100,000-row table and cut it to `size` bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as db:
        db.execute("CREATE TABLE t AS SELECT range AS a FROM range(100000)")
    os.truncate(path, size)


def start_error(config: Path) -> str:
    """Run ``serve``, expect it to fail, and return its stderr."""
    started = run_cli(config, "serve", "--port", str(free_port()))
    assert started.returncode == 1, started.stderr
    assert "Traceback" not in started.stderr
    return started.stderr


@pytest.fixture
def read_only_home(tmp_path: Path) -> Iterator[Path]:
    """Return a home with a catalog that this user may not change."""
    home = tmp_path / "home"
    with Catalog(home):
        pass
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("root ignores file modes and chattr is not installed")
        flag = subprocess.run(["chattr", "-R", "+i", str(home)], check=False)
        if flag.returncode != 0:
            pytest.skip("the file system of tmp_path has no immutable flag")
        yield home
        subprocess.run(["chattr", "-R", "-i", str(home)], check=True)
    else:
        for path in (home / "catalog.duckdb", home):
            path.chmod(0o555)
        yield home
        home.chmod(0o755)


def test_read_only_home_start_fails_in_one_line(
    tmp_path: Path, read_only_home: Path
) -> None:
    config = write_config(tmp_path / "config.toml", read_only_home)

    error = start_error(config)

    last = error.strip().splitlines()[-1]
    assert f"cannot open the daemon lock {read_only_home / 'daemon.lock'}" in last
    assert "may not write the file or its folder" in last
    assert "the file is not damaged" in last


def test_read_only_catalog_not_called_damaged(read_only_home: Path) -> None:
    with pytest.raises(Exception) as raised:
        # A writing open, as a command that changes the catalog makes.
        Catalog(read_only_home)

    message = str(raised.value)
    assert f"cannot open the catalog {read_only_home / 'catalog.duckdb'}" in message
    assert "the file is not damaged" in message
    assert "damaged or not a DuckDB" not in message
    assert "move it away" not in message


def test_truncated_monitoring_store_named(tmp_path: Path) -> None:
    home = tmp_path / "home"
    truncated_duckdb(home / "monitoring.duckdb", 5000)
    config = write_config(tmp_path / "config.toml", home)

    error = start_error(config)

    assert f"cannot open the monitoring store {home / 'monitoring.duckdb'}" in error
    assert "The file is damaged or not a DuckDB database" in error
    assert "which loses the alerts" in error
    assert "Another appliance process" not in error


def test_truncated_job_store_named(tmp_path: Path) -> None:
    home = tmp_path / "home"
    truncated_duckdb(home / "jobs.duckdb", 3000)
    config = write_config(tmp_path / "config.toml", home)

    error = start_error(config)

    last = error.strip().splitlines()[-1]
    assert last.startswith("error: the daemon failed to start: cannot open the job")
    assert str(home / "jobs.duckdb") in last
    assert "which loses the next run times of the scheduled jobs" in last
    assert len(error.splitlines()) < 20


def test_unreadable_prediction_file_skipped(tmp_path: Path, caplog) -> None:
    home = tmp_path / "home"
    with Catalog(home) as catalog:
        create_table(catalog.db)
        catalog.db.execute(
            "INSERT INTO predictions (request_id, row_index, model, version, "
            "predicted_at, input, output, latency_ms) VALUES "
            "('r1', 0, 'demo', 1, now(), '{}', '{}', 1.0), "
            "('r2', 0, 'demo', 1, now(), '{}', '{}', 1.0)"
        )
        rolled = roll_over(catalog.db, home, keep_rows=1)
    bad = parquet_dir(home) / "part-1.parquet"
    bad.write_text("garbage\n")

    with Catalog(home) as catalog:
        rows = query(catalog)

    assert rolled == 2
    assert sorted(row["request_id"] for row in rows) == ["r1", "r2"]
    assert f"prediction log file unreadable, skipped file={bad}" in caplog.text
    assert "skipped=1" in caplog.text
