"""A read of a home that has no catalog yet finds it empty and writes nothing."""

from __future__ import annotations

from pathlib import Path

from appliance.storage import Catalog, list_quarantine, list_runs, list_versions


def test_read_of_missing_home_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "nowhere" / "home"

    with Catalog(home, read_only=True) as catalog:
        versions = list_versions(catalog, "trips")
        runs = list_runs(catalog)
        quarantined = list_quarantine(catalog, "trips")

    assert versions == []
    assert runs == []
    assert quarantined == []
    assert not (tmp_path / "nowhere").exists()


def test_write_after_empty_read_creates_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Catalog(home, read_only=True):
        pass

    with Catalog(home) as catalog:
        assert list_versions(catalog, "trips") == []

    assert (home / "catalog.duckdb").is_file()
