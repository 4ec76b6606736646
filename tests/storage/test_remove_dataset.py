"""``appliance datasets remove`` on a real home, without a daemon.

The home has a model trained on flights, a feature view over planes, a
second planes dataset whose name differs only in case (as homes written
before ingest rejected such names have), quarantined rows, and buffer files.
Every check reads the catalog file, the lake and the buffer folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import httpx
import pytest
from support import (
    load_config_text,
    run_appliance,
    start_daemon,
    stop_daemon,
)

from appliance.storage import Catalog, ingest

CONFIG = """
[storage]
home = "home"

[ingest]
flush_rows = 100000
flush_seconds = 3600

[feature_views.planes]
sql = "SELECT tailnum, seats FROM planes"
entities = ["tailnum"]

[models.late]
dataset = "flights"
target = "late"
task = "classification"
algorithm = "logistic_regression"
features = ["distance", "seats"]
feature_views = ["planes"]
"""
TABLES = (
    "dataset_versions",
    "removed_versions",
    "dataset_redactions",
    "dataset_contracts",
    "quarantine",
)


def write_home(root: Path, train: bool = True) -> Path:
    """Ingest flights (one row quarantined) and planes, and train ``late``."""
    config = load_config_text(root, CONFIG)
    lines = ["tailnum,distance,late"]
    lines += [f"N{i % 4},{100 + i * 7},{str(i % 2 == 0).lower()}" for i in range(40)]
    (root / "flights.csv").write_text("\n".join(lines) + "\n")
    (root / "more.csv").write_text("tailnum,distance,late\nN1,not-a-number,true\n")
    (root / "planes.csv").write_text("tailnum,seats\nN0,100\nN1,120\nN2,90\nN3,60\n")
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "flights", [root / "flights.csv"])
        ingest(catalog, "flights", [root / "more.csv"], "append")
        ingest(catalog, "planes", [root / "planes.csv"])
    if train:
        result = run_appliance(root / "config.toml", root / "home", "train", "late")
        assert result.returncode == 0, result.stderr
    return root / "config.toml"


def add_case_twin(root: Path) -> None:
    """Store a second planes dataset named ``Planes``, as a home written
    before ingest rejected names that differ only in case has."""
    home = root / "home"
    (root / "twin.csv").write_text("tailnum,seats\nN0,999\n")
    with Catalog(home) as catalog:
        ingest(catalog, "twin", [root / "twin.csv"])
        for table in ("dataset_versions", "dataset_contracts", "quarantine"):
            catalog.db.execute(
                f"UPDATE {table} SET dataset = 'Planes' WHERE dataset = 'twin'"
            )
        catalog.db.execute(
            "UPDATE dataset_versions SET path = replace(path, '/twin/', '/Planes/'), "
            "files_json = replace(files_json, '/twin/', '/Planes/') "
            "WHERE dataset = 'Planes'"
        )
    (home / "lake" / "twin").rename(home / "lake" / "Planes")


def remove(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_appliance(config, config.parent / "home", "datasets", "remove", *args)


def catalog_rows(home: Path, dataset: str) -> dict[str, int]:
    """Return the rows of `dataset` in each catalog table that records one."""
    with duckdb.connect(str(home / "catalog.duckdb"), read_only=True) as db:
        return {
            table: db.execute(
                f"SELECT count(*) FROM {table} WHERE dataset = ?", [dataset]
            ).fetchall()[0][0]
            for table in TABLES
        }


def audit_entries(home: Path, action: str) -> list[tuple[str, str, dict]]:
    with duckdb.connect(str(home / "catalog.duckdb"), read_only=True) as db:
        rows = db.execute(
            "SELECT target, outcome, details FROM audit_log WHERE action = ? "
            "ORDER BY seq",
            [action],
        ).fetchall()
    return [(target, outcome, json.loads(details)) for target, outcome, details in rows]


def test_remove_rejects_dependents(tmp_path: Path) -> None:
    config = write_home(tmp_path)
    home = tmp_path / "home"
    before = catalog_rows(home, "flights")

    flights = remove(config, "flights")
    planes = remove(config, "planes")

    assert flights.returncode == 1
    assert "dataset 'flights' was not removed, because" in flights.stderr
    assert "model late is declared on it ([models.late] dataset)" in flights.stderr
    assert "model version late v1 was trained on flights@" in flights.stderr
    assert "no reference rows" in flights.stderr
    assert "--ignore-dependents" in flights.stderr
    assert planes.returncode == 1
    assert "feature view planes reads it" in planes.stderr
    assert "models that join it (late)" in planes.stderr
    assert "model version late v1 recorded planes@" in planes.stderr
    assert catalog_rows(home, "flights") == before
    assert (home / "lake" / "flights").is_dir()
    entries = audit_entries(home, "dataset.remove")
    assert [(target, outcome) for target, outcome, _ in entries] == [
        ("flights", "refused"),
        ("planes", "refused"),
    ]


def test_remove_deletes_every_part(tmp_path: Path) -> None:
    config = write_home(tmp_path)
    home = tmp_path / "home"
    quarantined = home / "buffer" / "flights" / "quarantined"
    quarantined.mkdir(parents=True)
    (quarantined / "segment-1.jsonl").write_text('{"distance": "bad"}\n')
    moved_aside = home / "orphans" / "flights" / "version=0123456789abcdef"
    moved_aside.mkdir(parents=True)
    before = catalog_rows(home, "flights")
    planes_before = catalog_rows(home, "planes")

    result = remove(config, "flights", "--ignore-dependents", "--json")

    assert result.returncode == 0, result.stderr
    removal = json.loads(result.stdout)
    assert before["dataset_versions"] == 2
    assert before["quarantine"] == 1
    assert before["dataset_contracts"] == 1
    assert catalog_rows(home, "flights") == dict.fromkeys(TABLES, 0)
    assert catalog_rows(home, "planes") == planes_before
    assert not (home / "lake" / "flights").exists()
    assert not (home / "buffer" / "flights").exists()
    assert (home / "lake" / "planes").is_dir()
    assert len(removal["versions"]) == 2
    assert removal["quarantined_rows"] == 1
    ignored = {(d["kind"], d["name"]) for d in removal["dependents"]}
    assert ignored == {("model", "late"), ("model version", "late v1")}
    ((target, outcome, details),) = audit_entries(home, "dataset.remove")
    assert (target, outcome) == ("flights", "ok")
    assert details["removal_id"] == removal["removal_id"]
    assert details["ignored_dependents"] == ["model late", "model version late v1"]
    assert moved_aside.is_dir()
    assert any("'appliance orphans remove flights'" in n for n in removal["notes"])


def test_remove_rejects_unflushed_rows(tmp_path: Path) -> None:
    config = write_home(tmp_path, train=False)
    home = tmp_path / "home"
    buffer = home / "buffer" / "planes"
    (buffer / "rejected").mkdir(parents=True)
    (buffer / "wal.jsonl").write_text('{"tailnum": "N8"}\n{"tailnum": "N9"}\n')
    (buffer / "rejected" / "segment-3.jsonl").write_text('{"tailnum": "N7"}\n')

    removal = remove(config, "planes", "--ignore-dependents")
    wal_text = (buffer / "wal.jsonl").read_text()
    dropped = remove(config, "planes", "--ignore-dependents", "--drop-buffered-rows")

    assert removal.returncode == 1
    assert "holds 3 acknowledged rows that no version stores" in removal.stderr
    assert "wal.jsonl (2), rejected/segment-3.jsonl (1)" in removal.stderr
    assert "--drop-buffered-rows" in removal.stderr
    assert wal_text.count("\n") == 2
    assert dropped.returncode == 0, dropped.stderr
    assert "dropped 3 buffered rows that no version stored" in dropped.stdout
    assert not buffer.exists()
    assert catalog_rows(home, "planes") == dict.fromkeys(TABLES, 0)


def test_remove_reports_every_reason(tmp_path: Path) -> None:
    config = write_home(tmp_path)
    home = tmp_path / "home"
    buffer = home / "buffer" / "flights"
    buffer.mkdir(parents=True)
    (buffer / "wal.jsonl").write_text('{"distance": 300}\n')
    trained = run_appliance(config, home, "train", "late")
    assert trained.returncode == 0, trained.stderr
    promoted = run_appliance(config, home, "models", "promote", "late", "1")
    assert promoted.returncode == 0, promoted.stderr
    with duckdb.connect(str(home / "catalog.duckdb")) as db:
        db.execute("DELETE FROM model_aliases WHERE model = 'late' AND version = 2")
        db.execute("INSERT INTO model_aliases VALUES ('late', 'challenger', 2)")
    blocked = remove(config, "flights")
    with duckdb.connect(str(home / "catalog.duckdb")) as db:
        db.execute("DELETE FROM model_aliases WHERE model = 'late' AND version = 2")
    unaliased = remove(config, "flights")

    assert blocked.returncode == 1
    assert "because these depend on it" in blocked.stderr
    assert "holds 1 acknowledged rows that no version stores" in blocked.stderr
    assert "--ignore-dependents" in blocked.stderr
    assert "--drop-buffered-rows" in blocked.stderr
    assert "still serves" not in blocked.stderr
    v1, v2 = (
        next(line for line in blocked.stderr.splitlines() if f"late v{n} " in line)
        for n in (1, 2)
    )
    assert v1.endswith("the version keeps serving as the champion")
    assert v2.endswith("the version keeps its alias challenger")
    v2 = next(line for line in unaliased.stderr.splitlines() if "late v2 " in line)
    assert "holds no alias, so it serves only requests pinned to it" in v2
    assert (buffer / "wal.jsonl").read_text() == '{"distance": 300}\n'
    assert catalog_rows(home, "flights")["dataset_versions"] == 2


def test_remove_unknown_dataset(tmp_path: Path) -> None:
    config = write_home(tmp_path, train=False)

    result = remove(config, "plane")

    assert result.returncode == 1
    assert "dataset 'plane' has no version and nothing stored" in result.stderr
    assert "Datasets with versions: flights, planes" in result.stderr


def test_remove_rejects_path_names(tmp_path: Path) -> None:
    config = write_home(tmp_path, train=False)
    home = tmp_path / "home"
    (home / "buffer" / "flights").mkdir(parents=True)

    result = remove(config, "../buffer")

    assert result.returncode == 1
    assert "invalid dataset name '../buffer'" in result.stderr
    assert (home / "buffer" / "flights").is_dir()
    assert (home / "lake" / "flights").is_dir()


def test_case_twin_removal_lets_views_load(tmp_path: Path) -> None:
    config = write_home(tmp_path)
    add_case_twin(tmp_path)
    home = tmp_path / "home"

    blocked = run_appliance(config, home, "train", "late")
    removed = remove(config, "Planes")
    trained = run_appliance(config, home, "train", "late")

    assert blocked.returncode == 1
    assert "differ only in case" in blocked.stderr
    # The versions are listed newest first, so either name may come first.
    assert (
        "'appliance datasets remove Planes' (or planes)" in blocked.stderr
        or "'appliance datasets remove planes' (or Planes)" in blocked.stderr
    )
    assert removed.returncode == 0, removed.stderr
    assert "removed dataset Planes" in removed.stdout
    assert not (home / "lake" / "Planes").exists()
    assert (home / "lake" / "planes").is_dir()
    assert catalog_rows(home, "planes")["dataset_versions"] == 1
    assert trained.returncode == 0, trained.stderr


CRASH = """
import os, sys
from pathlib import Path
from appliance.config import load_config
from appliance.storage import Catalog, _removal

def crash(*args, **kwargs):
    os._exit(9)

setattr(_removal, sys.argv[2], crash)
config = load_config(Path(sys.argv[1]))
with Catalog(config.storage.home) as catalog:
    _removal.remove_dataset(catalog, config, "planes", True, True)
"""


@pytest.mark.parametrize("step", ["_commit", "_delete_files"])
def test_remove_crash_leaves_dataset_or_finishes(tmp_path: Path, step: str) -> None:
    config = write_home(tmp_path, train=False)
    home = tmp_path / "home"
    buffer = home / "buffer" / "planes"
    buffer.mkdir(parents=True)
    (buffer / "wal.jsonl").write_text('{"tailnum": "N8", "seats": 5}\n')
    before = catalog_rows(home, "planes")

    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, str(config), step],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    after_crash = catalog_rows(home, "planes")
    # A command-line ingest starts with the cleanup that a daemon start runs.
    (tmp_path / "other.csv").write_text("a\n1\n")
    ingested = run_appliance(config, home, "ingest", "other", "other.csv")

    assert crashed.returncode == 9, crashed.stderr
    assert ingested.returncode == 0, ingested.stderr
    if step == "_commit":
        assert after_crash == before
        assert (home / "lake" / "planes").is_dir()
        assert buffer.is_dir()
        return
    assert after_crash == dict.fromkeys(TABLES, 0)
    assert not (home / "lake" / "planes").exists()
    assert not buffer.exists()
    assert not (home / "orphans").exists()
    with duckdb.connect(str(home / "catalog.duckdb"), read_only=True) as db:
        unfinished = db.execute(
            "SELECT count(*) FROM dataset_removals WHERE finished_at IS NULL"
        ).fetchall()[0][0]
    assert unfinished == 0
    outcomes = [
        (t, o, d.get("finished")) for t, o, d in audit_entries(home, "dataset.remove")
    ]
    assert outcomes == [("planes", "ok", None), ("planes", "ok", True)]


def test_remove_crash_finished_at_daemon_start(tmp_path: Path) -> None:
    config = write_home(tmp_path, train=False)
    home = tmp_path / "home"
    buffer = home / "buffer" / "planes"
    buffer.mkdir(parents=True)
    (buffer / "wal.jsonl").write_text('{"tailnum": "N8", "seats": 5}\n')

    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, str(config), "_delete_files"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    daemon = start_daemon(config, home, tmp_path / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as http:
            listed = http.get("/v1/admin/datasets").json()["datasets"]
    finally:
        assert stop_daemon(daemon) == 0

    assert crashed.returncode == 9, crashed.stderr
    # The buffer's recovery at start would flush the dropped row into a new
    # planes version if the removal were not finished first.
    assert sorted({v["dataset"] for v in listed}) == ["flights"]
    assert not (home / "lake" / "planes").exists()
    assert not buffer.exists()
    assert not (home / "orphans").exists()
    assert "dataset removal finished after an interruption" in (
        (tmp_path / "daemon.log").read_text()
    )


def test_remove_through_daemon(tmp_path: Path) -> None:
    config = write_home(tmp_path)
    add_case_twin(tmp_path)
    home = tmp_path / "home"
    daemon = start_daemon(config, home, tmp_path / "daemon.log")
    row = {"tailnum": "N1", "distance": 5, "late": True}
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as http:
            before = http.get("/health/ready").json()
            sent = http.post("/v1/datasets/flights/rows", json={"rows": [row]})
            twin = remove(config, "Planes")
            after = http.get("/health/ready").json()
            blocked = remove(config, "flights", "--ignore-dependents")
            dropped = remove(
                config, "flights", "--ignore-dependents", "--drop-buffered-rows"
            )
            rows_after = http.post("/v1/datasets/flights/rows", json={"rows": [row]})
            planes = remove(config, "planes", "--ignore-dependents")
            predicted = http.post("/v1/models/late/predict", json={"rows": [row]})
    finally:
        assert stop_daemon(daemon) == 0

    assert before["feature_views_loaded"] is False
    assert sent.status_code == 202, sent.text
    assert twin.returncode == 0, twin.stderr
    assert after["feature_views_loaded"] is True
    assert blocked.returncode == 1
    assert "error: dataset 'flights' was not removed" in blocked.stderr
    assert "holds 1 acknowledged rows that no version stores" in blocked.stderr
    assert dropped.returncode == 0, dropped.stderr
    assert "dropped 1 buffered rows" in dropped.stdout
    assert "the daemon does at its next start" in dropped.stdout
    assert rows_after.status_code == 404
    assert not (home / "lake" / "flights").exists()
    assert not (home / "buffer" / "flights").exists()
    assert catalog_rows(home, "flights") == dict.fromkeys(TABLES, 0)
    assert catalog_rows(home, "Planes") == dict.fromkeys(TABLES, 0)
    # The views read before contained the removed planes rows, so none are served.
    # The model that joins the view is not served until planes is ingested.
    assert planes.returncode == 0, planes.stderr
    assert predicted.status_code == 503
    assert "model 'late' cannot be served now" in predicted.text
    assert "reads dataset 'planes', which has no version" in predicted.text
    outcomes = [(t, o) for t, o, _ in audit_entries(home, "dataset.remove")]
    assert outcomes == [
        ("Planes", "ok"),
        ("flights", "refused"),
        ("flights", "ok"),
        ("planes", "ok"),
    ]
