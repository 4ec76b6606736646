"""A failure after the rows are written leaves neither a folder nor a catalog row."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from support import WriteFile

from appliance.errors import StorageError
from appliance.storage import Catalog, DatasetVersion, ingest, list_versions
from appliance.storage import _ingest as ingest_module


def _folders(catalog: Catalog, dataset: str) -> list[str]:
    return sorted(p.name for p in (catalog.lake / dataset).glob("version=*"))


def _quarantined(catalog: Catalog) -> int:
    return catalog.db.execute("SELECT count(*) FROM quarantine").fetchall()[0][0]


def test_read_only_catalog_leaves_no_folder(
    tmp_path: Path, write_file: WriteFile
) -> None:
    home = tmp_path / "home"
    with Catalog(home) as catalog:
        first = ingest(catalog, "trips", [write_file("a.csv", "id,km\n1,2.5\n")])
    second = write_file("b.csv", "id,km\n2,3.5\n3,4.0\n")

    with Catalog(home, read_only=True) as catalog:
        with pytest.raises(StorageError) as raised:
            ingest(catalog, "trips", [second])
        assert _folders(catalog, "trips") == [f"version={first.version.version}"]
        assert [v.version for v in list_versions(catalog, "trips")] == [
            first.version.version
        ]

    message = str(raised.value)
    assert "dataset 'trips'" in message
    assert "nothing was stored" in message
    assert "writable" in message


def test_failed_quarantine_store_rolls_back_version(
    catalog: Catalog, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ingest(catalog, "trips", [write_file("a.csv", "id,km\n1,2.5\n")])
    bad = write_file("b.csv", "id,km\n2,3.5\n3,far\n")

    def disk_full(*args: object) -> None:
        raise duckdb.IOException("No space left on device")

    monkeypatch.setattr(ingest_module, "_store_quarantine", disk_full)
    with pytest.raises(StorageError, match="No space left on device"):
        ingest(catalog, "trips", [bad], mode="append")

    # The version row was inserted before the failure and rolled back.
    assert [v.version for v in list_versions(catalog, "trips")] == [
        first.version.version
    ]
    assert _folders(catalog, "trips") == [f"version={first.version.version}"]
    assert _quarantined(catalog) == 0

    monkeypatch.undo()
    result = ingest(catalog, "trips", [bad], mode="append")
    assert result.accepted == 1
    assert result.quarantined == 1
    assert _quarantined(catalog) == 1


def test_failed_quality_step_leaves_no_folder(
    catalog: Catalog, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise duckdb.OutOfMemoryException("could not allocate block")

    monkeypatch.setattr(ingest_module, "quality_report", broken)
    with pytest.raises(duckdb.OutOfMemoryException):
        ingest(catalog, "trips", [write_file("a.csv", "id,km\n1,2.5\n")])

    assert _folders(catalog, "trips") == []
    assert list_versions(catalog, "trips") == []
    contracts = catalog.db.execute("SELECT count(*) FROM dataset_contracts")
    assert contracts.fetchall()[0][0] == 0


def test_commit_conflict_named_in_error(
    catalog: Catalog, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second ingest that records the same version first makes COMMIT fail,
    and the error names that conflict, not the ROLLBACK after it."""
    real_record = ingest_module.record_version
    other = catalog.cursor()

    def record_twice(view: Catalog, version: DatasetVersion) -> None:
        real_record(view, version)
        # The other writer commits the same dataset and version first.
        real_record(other, version)

    monkeypatch.setattr(ingest_module, "record_version", record_twice)
    with pytest.raises(StorageError) as raised:
        ingest(catalog, "trips", [write_file("a.csv", "id,km\n1,2.5\n")])
    other.close()

    message = str(raised.value)
    assert "duplicate key" in message
    assert "no transaction is active" not in message
    assert "nothing was stored" in message
    assert len(list_versions(catalog, "trips")) == 1
