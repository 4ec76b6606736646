"""``appliance orphans`` and ``appliance disk`` on the folders under HOME/orphans.

Each home here had its catalog restored from a backup taken before its
newest version, so that version's folder is moved to ``HOME/orphans``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support import start_daemon, stop_daemon
from test_orphan_folders import write_csv

from appliance.storage import Catalog, ingest, remove_orphan_folders


def restored_home(tmp_path: Path, datasets: tuple[str, ...] = ("events",)) -> Path:
    """Return a config whose home's catalog lacks each dataset's newest version."""
    home = tmp_path / "home"
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\nhome = "{home}"\n')
    backup = tmp_path / "catalog-backup.duckdb"
    with Catalog(home) as catalog:
        for dataset in datasets:
            ingest(catalog, dataset, [write_csv(tmp_path / "a.csv", range(3))])
    shutil.copy(home / "catalog.duckdb", backup)
    with Catalog(home) as catalog:
        for dataset in datasets:
            source = write_csv(tmp_path / f"{dataset}.csv", range(3, 9))
            ingest(catalog, dataset, [source], "append")
    shutil.copy(backup, home / "catalog.duckdb")
    return config


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def audit_entries(home: Path) -> list[tuple[str, str, dict]]:
    with Catalog(home, read_only=True) as catalog:
        rows = catalog.db.execute(
            "SELECT actor, target, details FROM audit_log "
            "WHERE action = 'orphans.remove' ORDER BY seq"
        ).fetchall()
    return [(actor, target, json.loads(details)) for actor, target, details in rows]


def test_orphans_listed_and_removed(tmp_path: Path, cli) -> None:
    config = restored_home(tmp_path, ("events", "sensors"))
    home = tmp_path / "home"
    with Catalog(home) as catalog:
        remove_orphan_folders(catalog)
    (moved,) = (home / "orphans" / "events").iterdir()
    size = sum(p.stat().st_size for p in moved.rglob("*") if p.is_file())

    listed = cli(config, home, "orphans", "list", "--json")
    table = cli(config, home, "orphans", "list", "events")
    disk = cli(config, home, "disk", "--json")
    neither = cli(config, home, "orphans", "remove")
    unknown = cli(config, home, "orphans", "remove", "nosuch")
    wrong = cli(config, home, "orphans", "remove", "events", "version=nosuch")
    removed = cli(config, home, "orphans", "remove", "events", moved.name)
    after = cli(config, home, "orphans", "list", "--json")
    rest = cli(config, home, "orphans", "remove", "--all", "--json")

    assert listed.returncode == 0, listed.stderr
    folders = json_lines(listed.stdout)
    assert [(f["dataset"], f["folder"]) for f in folders] == [
        ("events", moved.name),
        ("sensors", folders[1]["folder"]),
    ]
    assert folders[0]["bytes"] == size
    assert folders[0]["files"] == 1
    assert folders[0]["path"] == str(moved)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == [
        "dataset",
        "folder",
        "size",
        "files",
        "modified_at",
    ]
    assert table.stdout.splitlines()[1].startswith(f"events   {moved.name}  {size} B")
    assert table.stdout.splitlines()[-1] == f"total {size} B in 1 folders"
    parts = {row["part"]: row for row in json_lines(disk.stdout)}
    assert parts["orphans/events"]["bytes"] == size
    assert parts["orphans/sensors"]["files"] == 1
    assert parts["other"]["bytes"] == 0

    assert neither.returncode == 1
    assert "name a dataset" in neither.stderr
    assert "or pass --all" in neither.stderr
    assert unknown.returncode == 1
    assert "dataset 'nosuch' has no folder under" in unknown.stderr
    assert "datasets with orphan folders: events, sensors" in unknown.stderr
    assert wrong.returncode == 1
    assert "has no orphan folder 'version=nosuch'" in wrong.stderr
    assert f"its folders: {moved.name}" in wrong.stderr

    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.splitlines() == [
        f"removed {moved} ({size} B, 1 files)",
        f"removed 1 folders, {size} B",
    ]
    assert not moved.exists()
    assert not (home / "orphans" / "events").exists()
    assert [f["dataset"] for f in json_lines(after.stdout)] == ["sensors"]
    assert rest.returncode == 0, rest.stderr
    assert [f["dataset"] for f in json_lines(rest.stdout)] == ["sensors"]
    assert not (home / "orphans").exists()
    entries = audit_entries(home)
    assert [(target, details["folders"]) for _, target, details in entries] == [
        ("events", [moved.name]),
        ("sensors", [folders[1]["folder"]]),
    ]
    assert entries[0][2]["bytes"] == size
    assert entries[0][0].startswith("local")


def test_orphans_removed_through_daemon(tmp_path: Path, cli) -> None:
    config = restored_home(tmp_path)
    home = tmp_path / "home"

    daemon = start_daemon(config, home, tmp_path / "daemon.log")
    try:
        listed = cli(config, home, "orphans", "list", "--json")
        removed = cli(config, home, "orphans", "remove", "events", "--json")
    finally:
        assert stop_daemon(daemon) == 0

    log = daemon.log.read_text()
    assert "orphan folders kept folders=1 " in log
    assert "datasets=events" in log
    assert "'appliance orphans remove'" in log
    assert listed.returncode == 0, listed.stderr
    (folder,) = json_lines(listed.stdout)
    assert removed.returncode == 0, removed.stderr
    assert json_lines(removed.stdout) == [folder]
    assert not (home / "orphans").exists()
    ((actor, target, details),) = audit_entries(home)
    assert target == "events"
    assert details["folders"] == [folder["folder"]]


@pytest.mark.parametrize("dataset", ["..", "../lake", "."])
def test_orphans_remove_stays_inside(tmp_path: Path, cli, dataset: str) -> None:
    config = restored_home(tmp_path)
    home = tmp_path / "home"
    with Catalog(home) as catalog:
        remove_orphan_folders(catalog)
    lake = sorted(p for p in (home / "lake").rglob("*") if p.is_file())

    result = cli(config, home, "orphans", "remove", dataset)

    assert result.returncode == 1
    assert f"dataset {dataset!r} has no folder under" in result.stderr
    assert sorted(p for p in (home / "lake").rglob("*") if p.is_file()) == lake
