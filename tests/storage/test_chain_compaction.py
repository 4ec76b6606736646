"""Compaction of an append chain into a version that reads only its own files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
from support import run_appliance, start_daemon, stop_daemon

from appliance.config import Config, load_config
from appliance.errors import ConfigError, StorageError
from appliance.storage import (
    Catalog,
    DatasetVersion,
    IngestBuffer,
    _chain_compaction,
    compact_chain,
    latest_version,
    list_quarantine,
    list_versions,
    remove_orphan_folders,
    scan_sql,
)

CONFIG = """
[storage]
home = "home"

[ingest]
flush_rows = 1000
flush_seconds = 0.2

[datasets.events]
{settings}

[datasets.events.contract.columns.value]
type = "DOUBLE"
min = 0
"""


def _config(tmp_path: Path, settings: str = "") -> Config:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(settings=settings))
    return load_config(path)


def _flush(config: Config, first: int, count: int) -> None:
    buffer = IngestBuffer(config)
    for index in range(first, first + count):
        buffer.append("events", [{"id": index, "value": index * 0.5}])
        buffer.flush("events")


def _rows(catalog: Catalog, version: DatasetVersion) -> list[tuple]:
    return catalog.db.execute(
        f"SELECT * FROM ({scan_sql(version)}) ORDER BY id"
    ).fetchall()


def _folders(config: Config) -> list[str]:
    return sorted(
        name
        for name in os.listdir(config.storage.home / "lake" / "events")
        if name.startswith("version=")
    )


def test_compact_keeps_rows_and_lineage(tmp_path: Path) -> None:
    config = _config(tmp_path)
    _flush(config, 0, 5)

    with Catalog(config.storage.home) as catalog:
        chain = latest_version(catalog, "events")
        result = compact_chain(catalog, config.dataset("events"))
        again = compact_chain(catalog, config.dataset("events"))
        compacted = latest_version(catalog, "events")
        assert chain is not None and compacted is not None
        chain_rows = _rows(catalog, chain)
        compacted_rows = _rows(catalog, compacted)

    assert result.created
    assert result.folders == 5
    assert compacted.version == result.version.version
    assert compacted.parent == chain.version
    assert compacted.mode == "replace"
    assert compacted.files == [f"{compacted.path}/*.parquet"]
    assert compacted.report["compacted"] == {"from": chain.version, "folders": 5}
    assert compacted.schema == chain.schema
    assert compacted.row_count == chain.row_count == 5
    assert compacted_rows == chain_rows
    assert not again.created
    assert again.version.version == compacted.version


def test_retention_frees_chain_after_compaction(tmp_path: Path) -> None:
    config = _config(tmp_path, "keep_versions = 2")
    _flush(config, 0, 6)
    assert len(_folders(config)) == 6

    with Catalog(config.storage.home) as catalog:
        compact_chain(catalog, config.dataset("events"))
    _flush(config, 6, 1)

    with Catalog(config.storage.home) as catalog:
        versions = list_versions(catalog, "events")
        rows = _rows(catalog, versions[0])
    assert len(versions) == 2
    assert "compacted" in versions[1].report
    assert len(_folders(config)) == 2
    assert [row[0] for row in rows] == list(range(7))


def test_compaction_keeps_quarantine(tmp_path: Path) -> None:
    config = _config(tmp_path)
    buffer = IngestBuffer(config)
    buffer.append("events", [{"id": 1, "value": 1.0}])
    buffer.flush("events")
    buffer.append("events", [{"id": 2, "value": -1.0}, {"id": 3, "value": 2.0}])
    buffer.flush("events")

    with Catalog(config.storage.home) as catalog:
        flushed = latest_version(catalog, "events")
        compact_chain(catalog, config.dataset("events"))
        quarantined = list_quarantine(catalog, "events")

    assert flushed is not None
    assert [(row.version, row.value) for row in quarantined] == [
        (flushed.version, "-1.0")
    ]


def test_failed_record_leaves_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    _flush(config, 0, 3)
    before = _folders(config)

    def fail(catalog: Catalog, version: object) -> None:
        raise StorageError("catalog cannot be written")

    monkeypatch.setattr(_chain_compaction, "_record", fail)
    with Catalog(config.storage.home) as catalog:
        with pytest.raises(StorageError, match="cannot be written"):
            compact_chain(catalog, config.dataset("events"))
        versions = list_versions(catalog, "events")

    assert _folders(config) == before
    assert len(versions) == 3


def test_crash_before_record_cleaned_up(tmp_path: Path) -> None:
    config = _config(tmp_path)
    _flush(config, 0, 3)
    before = _folders(config)

    with Catalog(config.storage.home) as catalog:
        chain = latest_version(catalog, "events")
        assert chain is not None
        target = catalog.lake / "events" / "version=0000000000000000"
        # The folder as a crash between the write and the catalog record leaves it.
        _chain_compaction._write_rows(catalog, chain, target, None)
        assert (target / "_uncommitted").exists()
        remove_orphan_folders(catalog)

    assert _folders(config) == before


def test_flushes_compact_after_limit(tmp_path: Path) -> None:
    config = _config(tmp_path, "compact_after = 3")
    _flush(config, 0, 8)

    with Catalog(config.storage.home) as catalog:
        versions = list_versions(catalog, "events")
        rows = _rows(catalog, versions[0])

    compacted = [v for v in versions if "compacted" in v.report]
    assert len(compacted) == 2
    assert all(len(v.files) <= 3 for v in versions[:1])
    assert [row[0] for row in rows] == list(range(8))


def test_compact_after_below_two_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="compact_after must be at least 2, got 1"):
        _config(tmp_path, "compact_after = 1")


def test_cli_compacts_through_daemon(tmp_path: Path) -> None:
    config = _config(tmp_path)
    config_path = tmp_path / "config.toml"
    home = config.storage.home
    daemon = start_daemon(config_path, home, tmp_path / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            for index in range(3):
                body = {"rows": [{"id": index, "value": 1.0}]}
                response = client.post("/v1/datasets/events/rows", json=body)
                assert response.status_code in (200, 202), response.text
                _wait_for_rows(client, index + 1)
        compacted = run_appliance(
            config_path, home, "datasets", "compact", "events", "--json"
        )
        show = run_appliance(config_path, home, "datasets", "show", "events")
    finally:
        stop_daemon(daemon)

    assert compacted.returncode == 0, compacted.stderr
    result = json.loads(compacted.stdout)
    assert result["created"] is True
    assert result["folders"] == 3
    assert result["version"]["row_count"] == 3
    assert show.returncode == 0, show.stderr
    assert "compacted   from " in show.stdout


def test_cli_reports_nothing_to_compact(tmp_path: Path) -> None:
    config = _config(tmp_path)
    _flush(config, 0, 1)

    compaction = run_appliance(
        tmp_path / "config.toml", config.storage.home, "datasets", "compact", "events"
    )

    assert compaction.returncode == 0, compaction.stderr
    assert "nothing to compact" in compaction.stdout


def _wait_for_rows(client: httpx.Client, rows: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = client.get("/v1/admin/datasets").json()["datasets"]
        if listed and listed[0]["row_count"] == rows:
            return
        time.sleep(0.2)
    raise AssertionError(f"dataset 'events' did not reach {rows} rows")


def test_compact_partitioned_chain(tmp_path: Path) -> None:
    config = _config(tmp_path, 'partition_by = "tag"')
    buffer = IngestBuffer(config)
    for index in range(4):
        buffer.append("events", [{"id": index, "value": 1.0, "tag": f"t{index % 2}"}])
        buffer.flush("events")

    with Catalog(config.storage.home) as catalog:
        chain = latest_version(catalog, "events")
        result = compact_chain(catalog, config.dataset("events"))
        compacted = result.version
        assert chain is not None
        chain_rows = _rows(catalog, chain)
        compacted_rows = _rows(catalog, compacted)

    assert compacted.partition_by == "tag"
    assert compacted.files == [f"{compacted.path}/*/*.parquet"]
    assert sorted(p.name for p in compacted.path.iterdir()) == ["tag=t0", "tag=t1"]
    assert compacted_rows == chain_rows


def test_lost_compacted_folder_named(tmp_path: Path) -> None:
    config = _config(tmp_path)
    _flush(config, 0, 3)
    with Catalog(config.storage.home) as catalog:
        compacted = compact_chain(catalog, config.dataset("events")).version
    for path in compacted.path.iterdir():
        path.unlink()

    read_rows = run_appliance(
        tmp_path / "config.toml",
        config.storage.home,
        "datasets",
        "rows",
        "events",
    )

    assert read_rows.returncode != 0
    assert f"is a compaction of events@{compacted.parent}" in read_rows.stderr


TRAINED_CONFIG = """
[storage]
home = "home"

[ingest]
flush_rows = 1000
flush_seconds = 0.2

[datasets.events]
keep_versions = 2

[models.m]
dataset = "events"
target = "value"
task = "regression"
algorithm = "lightgbm"

[models.m.params]
n_estimators = 5
"""


def test_trained_version_retained_after_compaction(tmp_path: Path) -> None:
    config_path = tmp_path / "config.toml"
    config_path.write_text(TRAINED_CONFIG)
    config = load_config(config_path)
    buffer = IngestBuffer(config)
    for first in (0, 60, 70):
        buffer.append(
            "events", [{"id": i, "value": i * 0.5} for i in range(first, first + 60)]
        )
        buffer.flush("events")
    with Catalog(config.storage.home) as catalog:
        trained_on = latest_version(catalog, "events")
    assert trained_on is not None

    trained = run_appliance(config_path, config.storage.home, "train", "m")
    assert trained.returncode == 0, trained.stderr
    with Catalog(config.storage.home) as catalog:
        compact_chain(catalog, config.dataset("events"))
    for first in (200, 210):
        buffer.append("events", [{"id": first, "value": 1.0}])
        buffer.flush("events")

    with Catalog(config.storage.home) as catalog:
        versions = {v.version: v for v in list_versions(catalog, "events")}
        retained = versions.get(trained_on.version)
        rows = _rows(catalog, trained_on) if retained else []
    runs = run_appliance(config_path, config.storage.home, "runs", "list", "--json")
    (run,) = [json.loads(line) for line in runs.stdout.splitlines()]
    assert retained is not None
    assert retained.used_by == ["m v1"]
    assert len(rows) == trained_on.row_count == 180
    assert run["dataset_version"] == trained_on.version
    assert len(versions) == 3


def test_erasure_reaches_compacted_version(tmp_path: Path) -> None:
    config = _config(tmp_path)
    _flush(config, 0, 3)
    with Catalog(config.storage.home) as catalog:
        compact_chain(catalog, config.dataset("events"))

    erased = run_appliance(
        tmp_path / "config.toml",
        config.storage.home,
        "erase",
        "events",
        "--where",
        "id=1",
        "--json",
    )

    assert erased.returncode == 0, erased.stderr
    with Catalog(config.storage.home) as catalog:
        versions = list_versions(catalog, "events")
        ids = {v.version: [row[0] for row in _rows(catalog, v)] for v in versions}
    assert len(ids) == 4
    for version, found in ids.items():
        assert 1 not in found, version
    assert ids[versions[0].version] == [0, 2]
