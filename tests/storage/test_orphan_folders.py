"""Version folders without a catalog row, left by an ingest that was killed."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
from support import free_port, start_daemon, stop_daemon

from appliance.config import DatasetConfig
from appliance.storage import (
    Catalog,
    ingest,
    list_versions,
    remove_orphan_folders,
    scan_sql,
)

# Replaces the catalog insert with a SIGKILL of the process, so the rows are
# in the lake and the catalog has no version of them: a crash at that moment.
KILLED_INGEST = """
import os, signal, sys
from pathlib import Path

import appliance.storage._ingest as ingest_module
from appliance.storage import Catalog, ingest


def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


ingest_module._record_new = killed
with Catalog(Path(sys.argv[1])) as catalog:
    ingest(catalog, "events", [Path(sys.argv[2])])
"""


def write_csv(path: Path, rows: range) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("id,value\n" + "".join(f"{i},{i * 0.5}\n" for i in rows))
    return path


def kill_during_ingest(home: Path, source: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", KILLED_INGEST, str(home), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


def left_folders(home: Path, kept: Path | None = None) -> tuple[Path, Path]:
    """Return the version folder and the staging folder of the killed ingest."""
    folders = sorted(p for p in (home / "lake" / "events").iterdir() if p != kept)
    assert len(folders) == 2
    orphan, staging = folders
    assert staging.name == orphan.name + ".tmp"
    assert list(orphan.glob("*.parquet"))
    return orphan, staging


def test_killed_ingest_leaves_orphan_removed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Catalog(home) as catalog:
        kept = ingest(catalog, "events", [write_csv(tmp_path / "a.csv", range(3))])
    kill_during_ingest(home, write_csv(tmp_path / "b.csv", range(3, 6)))
    orphan, staging = left_folders(home, kept.version.path)

    with Catalog(home) as catalog:
        removed = remove_orphan_folders(catalog)
        rows = catalog.db.execute(scan_sql(kept.version)).fetchall()

    assert removed == [orphan, staging]
    assert not orphan.exists()
    assert not staging.exists()
    assert kept.version.path.is_dir()
    assert rows == [(0, 0.0), (1, 0.5), (2, 1.0)]


def test_staging_folder_removed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Catalog(home) as catalog:
        kept = ingest(catalog, "events", [write_csv(tmp_path / "a.csv", range(3))])
        staging = home / "lake" / "events" / "version=0123456789abcdef.tmp"
        staging.mkdir()
        (staging / "raw_0.parquet").write_bytes(b"partial")

        removed = remove_orphan_folders(catalog)

    assert removed == [staging]
    assert kept.version.path.is_dir()


def test_folder_read_by_append_child_kept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = DatasetConfig(name="events", keep_versions=1)
    with Catalog(home) as catalog:
        first = ingest(
            catalog, "events", [write_csv(tmp_path / "a.csv", range(2))], "replace"
        )
        child = ingest(
            catalog,
            "events",
            [write_csv(tmp_path / "b.csv", range(2, 4))],
            "append",
            settings,
        )
        assert child.removed == [first.version.version]

        removed = remove_orphan_folders(catalog)
        rows = catalog.db.execute(scan_sql(child.version) + " ORDER BY id").fetchall()
        listed = list_versions(catalog, "events")

    assert removed == []
    assert first.version.path.is_dir()
    assert [v.version for v in listed] == [child.version.version]
    assert [row[0] for row in rows] == [0, 1, 2, 3]


def test_daemon_start_removes_orphan(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\nhome = "{home}"\n')
    kill_during_ingest(home, write_csv(tmp_path / "a.csv", range(3)))
    orphan, staging = left_folders(home)

    daemon = start_daemon(config, home, tmp_path / "daemon.log")
    status = stop_daemon(daemon)

    log = daemon.log.read_text()
    assert status == 0
    assert not orphan.exists()
    assert not staging.exists()
    assert (
        f"orphan version folder removed dataset=events "
        f'version={orphan.name.removeprefix("version=")} folder="{orphan}"' in log
    )


def test_cli_ingest_removes_orphan(tmp_path: Path, cli) -> None:
    home = tmp_path / "home"
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\nhome = "{home}"\n')
    kill_during_ingest(home, write_csv(tmp_path / "a.csv", range(3)))
    orphan, staging = left_folders(home)
    shutil.copy(tmp_path / "a.csv", tmp_path / "c.csv")
    with (tmp_path / "c.csv").open("a") as handle:
        handle.write("9,4.5\n")

    done = cli(config, home, "ingest", "events", str(tmp_path / "c.csv"))

    assert done.returncode == 0, done.stderr
    assert not orphan.exists()
    assert not staging.exists()
    version = orphan.name.removeprefix("version=")
    assert (
        f"orphan version folder removed dataset=events version={version} "
        f'folder="{orphan}"' in done.stderr
    )


def lake_files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "lake").rglob("*") if p.is_file())


def test_missing_catalog_with_lake_refuses_start(tmp_path: Path, cli) -> None:
    home = tmp_path / "home"
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\nhome = "{home}"\n')
    with Catalog(home) as catalog:
        ingest(catalog, "events", [write_csv(tmp_path / "a.csv", range(3))])
    (home / "catalog.duckdb").unlink()
    before = lake_files(home)

    served = cli(config, home, "serve", "--port", str(free_port()))
    ingested = cli(config, home, "ingest", "events", str(tmp_path / "a.csv"))

    assert served.returncode != 0
    assert f"the catalog {home / 'catalog.duckdb'} is missing" in served.stderr
    assert "restore catalog.duckdb from a backup" in served.stderr
    assert "Traceback" not in served.stderr
    assert ingested.returncode != 0
    assert "is missing" in ingested.stderr
    assert lake_files(home) == before
    assert not (home / "catalog.duckdb").exists()
    assert not (home / "orphans").exists()


def test_older_catalog_keeps_newer_folders(tmp_path: Path, caplog) -> None:
    home = tmp_path / "home"
    backup = tmp_path / "catalog-backup.duckdb"
    with Catalog(home) as catalog:
        ingest(catalog, "events", [write_csv(tmp_path / "a.csv", range(3))])
    shutil.copy(home / "catalog.duckdb", backup)
    with Catalog(home) as catalog:
        newer = ingest(
            catalog, "events", [write_csv(tmp_path / "b.csv", range(3, 6))], "append"
        )
    shutil.copy(backup, home / "catalog.duckdb")

    with Catalog(home) as catalog:
        removed = remove_orphan_folders(catalog)
    moved = home / "orphans" / "events" / newer.version.path.name

    assert removed == []
    assert not newer.version.path.exists()
    assert sorted(p.name for p in moved.iterdir()) == ["data_0.parquet"]
    assert f"moved_to={moved}" in caplog.text
    rows = duckdb.sql(
        f"SELECT * EXCLUDE (version) FROM read_parquet('{moved}/**/*.parquet', "
        "hive_partitioning = true) ORDER BY id"
    ).fetchall()
    assert rows == [(3, 1.5), (4, 2.0), (5, 2.5)]


def test_removed_version_folder_removed(tmp_path: Path, caplog) -> None:
    home = tmp_path / "home"
    settings = DatasetConfig(name="events", keep_versions=1)
    with Catalog(home) as catalog:
        first = ingest(
            catalog, "events", [write_csv(tmp_path / "a.csv", range(2))], "replace"
        )
        # A copy stands for the folder of a retention killed after its commit.
        kept_copy = tmp_path / "copy"
        shutil.copytree(first.version.path, kept_copy)
        second = ingest(
            catalog,
            "events",
            [write_csv(tmp_path / "b.csv", range(2, 4))],
            "replace",
            settings,
        )
        assert second.removed == [first.version.version]
        shutil.copytree(kept_copy, first.version.path)

        removed = remove_orphan_folders(catalog)

    assert removed == [first.version.path]
    assert "reason=removed" in caplog.text
    assert not (home / "orphans").exists()
