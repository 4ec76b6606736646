"""Pending quality reports of HTTP ingest flushes, completed after the flush."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from support import WriteFile, run_appliance, start_daemon, stop_daemon

from appliance.config import DatasetConfig, load_config
from appliance.storage import (
    PENDING,
    Catalog,
    DatasetVersion,
    IngestBuffer,
    _datasets,
    _retention,
    complete_report,
    ingest,
    is_pending,
    latest_version,
    list_versions,
)
from appliance.storage._datasets import version_from_row

FILES = [
    # `late` has no value in the first file, so an append keeps no type for
    # it from the parent, and the next files' values decide its type.
    ("a.csv", "id,x,s,late\n1,1.5,a,\n2,,NA,\n3,2.5,a,\n"),
    ("b.csv", "id,x,s,late\n3,2.5,a,\n4,NaN,b,7\n5,100,,8\n"),
    ("c.csv", "id,x,s,late\n6,3.0,c,9\n6,3.0,c,9\n7,null,NA,\n"),
]


def _ingest_chain(home: Path, write_file: WriteFile, pending: bool) -> list:
    settings = DatasetConfig(name="d")
    with Catalog(home) as catalog:
        for index, (name, text) in enumerate(FILES):
            ingest(
                catalog,
                "d",
                [write_file(name, text)],
                "append" if index else "replace",
                settings,
                pending_quality=pending,
            )
        return list_versions(catalog, "d")


def test_flush_report_pending_counts_exact(
    tmp_path: Path, write_file: WriteFile
) -> None:
    full = _ingest_chain(tmp_path / "full", write_file, pending=False)
    pending = _ingest_chain(tmp_path / "pending", write_file, pending=True)

    for version in pending[:-1]:
        quality = version.report["quality"]
        assert PENDING in quality
        assert "duplicate_rows" not in quality
        assert quality["rows"] == version.row_count
    assert not is_pending(pending[-1])
    for old, new in zip(full, pending):
        assert old.schema == new.schema
        for name in old.schema:
            expected = old.report["quality"]["columns"][name]
            found = new.report["quality"]["columns"][name]
            for key in ("null_rate", "non_null", "null_sources"):
                assert found.get(key) == expected.get(key), (new.version, name, key)


def test_completed_report_equals_full_report(
    tmp_path: Path, write_file: WriteFile
) -> None:
    full = _ingest_chain(tmp_path / "full", write_file, pending=False)
    _ingest_chain(tmp_path / "pending", write_file, pending=True)

    with Catalog(tmp_path / "pending") as catalog:
        latest = latest_version(catalog, "d")
        assert latest is not None
        completed = complete_report(catalog, latest)
        stored = latest_version(catalog, "d")

    assert completed.report == full[0].report
    assert stored is not None
    assert stored.report == full[0].report


def test_erased_report_not_overwritten(tmp_path: Path, write_file: WriteFile) -> None:
    _ingest_chain(tmp_path / "home", write_file, pending=True)

    with Catalog(tmp_path / "home") as catalog:
        latest = latest_version(catalog, "d")
        assert latest is not None
        done = {**latest.report, "quality": {"removed_by_erasure": "e1"}}
        catalog.db.execute(
            "UPDATE dataset_versions SET report_json = ? WHERE version = ?",
            [json.dumps(done), latest.version],
        )
        complete_report(catalog, latest)
        stored = latest_version(catalog, "d")

    assert stored is not None
    assert stored.report["quality"] == {"removed_by_erasure": "e1"}


CONFIG = """
[storage]
home = "home"

[ingest]
flush_rows = 1000
flush_seconds = 0.2

[datasets.events.contract.columns.value]
type = "DOUBLE"
"""


def _flush_rows(tmp_path: Path) -> tuple[Path, Path]:
    config_path = tmp_path / "config.toml"
    config_path.write_text(CONFIG)
    home = tmp_path / "home"
    buffer = IngestBuffer(load_config(config_path))
    for index in range(3):
        buffer.append("events", [{"id": index, "value": index * 1.5, "tag": None}])
        buffer.flush("events")
    return config_path, home


def test_show_completes_pending_report(tmp_path: Path) -> None:
    config_path, home = _flush_rows(tmp_path)

    show = run_appliance(config_path, home, "datasets", "show", "events", "--json")

    assert show.returncode == 0, show.stderr
    quality = json.loads(show.stdout)["report"]["quality"]
    assert PENDING not in quality
    assert quality["duplicate_rows"] == 0
    assert quality["columns"]["value"]["max"] == 3.0
    assert quality["columns"]["tag"]["null_rate"] == 1
    with Catalog(home, read_only=True) as catalog:
        # Without a daemon the catalog is read-only, so the report stays pending.
        assert is_pending(list_versions(catalog, "events")[0])


def _get_version(client: httpx.Client) -> dict:
    response = client.get("/v1/admin/dataset-version", params={"reference": "events"})
    assert response.status_code == 200, response.text
    return response.json()["version"]


def _listed_quality(client: httpx.Client) -> dict:
    response = client.get("/v1/admin/datasets")
    assert response.status_code == 200, response.text
    return response.json()["datasets"][0]["report"]["quality"]


def _post(client: httpx.Client, rows: list[dict]) -> None:
    response = client.post("/v1/datasets/events/rows", json={"rows": rows})
    assert response.status_code in (200, 202), response.text


def _wait_for_rows(client: httpx.Client, rows: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        listed = client.get("/v1/admin/datasets").json()["datasets"]
        if listed and listed[0]["row_count"] == rows:
            return
        time.sleep(0.2)
    raise AssertionError(f"dataset 'events' did not reach {rows} rows in {seconds} s")


def test_daemon_completes_pending_report(tmp_path: Path) -> None:
    config_path = tmp_path / "config.toml"
    config_path.write_text(CONFIG)
    home = tmp_path / "home"
    daemon = start_daemon(config_path, home, tmp_path / "daemon.log")
    try:
        with httpx.Client(
            base_url=daemon.base_url, trust_env=False, timeout=30
        ) as client:
            _post(client, [{"id": 1, "value": 0.5}])
            _wait_for_rows(client, 1)
            _post(client, [{"id": 2, "value": 2.5}, {"id": 2, "value": 2.5}])
            _wait_for_rows(client, 3)
            listed = _listed_quality(client)
            served = _get_version(client)["report"]["quality"]
            stored = _listed_quality(client)
    finally:
        stop_daemon(daemon)

    assert PENDING in listed
    assert PENDING not in served
    assert served["duplicate_rows"] == 1
    assert served["columns"]["value"]["max"] == 2.5
    assert stored == served


def test_daemon_completes_idle_report(tmp_path: Path) -> None:
    config_path = tmp_path / "config.toml"
    config_path.write_text(CONFIG)
    home = tmp_path / "home"
    daemon = start_daemon(config_path, home, tmp_path / "daemon.log")
    try:
        with httpx.Client(
            base_url=daemon.base_url, trust_env=False, timeout=30
        ) as client:
            _post(client, [{"id": 1, "value": 0.5}])
            _wait_for_rows(client, 1)
            _post(client, [{"id": 2, "value": 2.5}])
            _wait_for_rows(client, 2)
            deadline = time.monotonic() + 40
            while PENDING in _listed_quality(client):
                assert time.monotonic() < deadline, "report still pending after 40 s"
                time.sleep(0.5)
            quality = _listed_quality(client)
    finally:
        stop_daemon(daemon)

    assert quality["columns"]["value"]["min"] == 0.5
    assert quality["duplicate_rows"] == 0


def _versions_read_by_flush(
    buffer: IngestBuffer, monkeypatch: pytest.MonkeyPatch, index: int
) -> int:
    """Return how many catalog rows of versions one flush of one row parses."""
    calls = []

    def counted(row: tuple) -> DatasetVersion:
        calls.append(row[1])
        return version_from_row(row)

    with monkeypatch.context() as patch:
        patch.setattr(_datasets, "version_from_row", counted)
        patch.setattr(_retention, "version_from_row", counted)
        buffer.append("events", [{"id": index, "value": 1.0}])
        buffer.flush("events")
    return len(calls)


def test_flush_reads_versions_independent_of_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = tmp_path / "config.toml"
    config_path.write_text(CONFIG + "\n[datasets.events]\nkeep_versions = 2\n")
    buffer = IngestBuffer(load_config(config_path))
    for index in range(3):
        buffer.append("events", [{"id": index, "value": 1.0}])
        buffer.flush("events")

    short_chain = _versions_read_by_flush(buffer, monkeypatch, 3)
    for index in range(4, 20):
        buffer.append("events", [{"id": index, "value": 1.0}])
        buffer.flush("events")
    long_chain = _versions_read_by_flush(buffer, monkeypatch, 20)

    assert long_chain == short_chain
