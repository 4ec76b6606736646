"""A home that is moved or copied reads its own files, not the old home's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appliance.storage import (
    Catalog,
    ingest,
    latest_version,
    list_versions,
    scan_sql,
)

ROWS = "origin,temp\nEWR,39.0\nJFK,40.0\n"


def _ingest_home(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "weather.csv"
    source.write_text(ROWS)
    with Catalog(home) as catalog:
        ingest(catalog, "weather", [source])


def _rows(catalog: Catalog) -> list[tuple]:
    version = latest_version(catalog, "weather")
    return catalog.db.execute(
        f"SELECT origin, temp FROM ({scan_sql(version)}) ORDER BY origin"
    ).fetchall()


@pytest.mark.parametrize("read_only", [False, True])
def test_moved_home_reads_own_files(tmp_path: Path, read_only: bool) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    _ingest_home(old, tmp_path)
    old.rename(new)

    with Catalog(new, read_only=read_only) as catalog:
        version = latest_version(catalog, "weather")
        rows = _rows(catalog)

    assert str(version.path).startswith(str(new) + "/")
    assert rows == [("EWR", 39.0), ("JFK", 40.0)]


def test_copied_home_leaves_original(tmp_path: Path) -> None:
    old, copy = tmp_path / "old", tmp_path / "copy"
    _ingest_home(old, tmp_path)
    shutil.copytree(old, copy)

    with Catalog(copy) as catalog:
        copied = latest_version(catalog, "weather")
    with Catalog(old, read_only=True) as catalog:
        original = latest_version(catalog, "weather")

    assert str(copied.path).startswith(str(copy) + "/")
    assert all(str(copy) in f for f in copied.files)
    assert str(original.path).startswith(str(old) + "/")


def test_catalog_without_home_record_moves(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    _ingest_home(old, tmp_path)
    with Catalog(old) as catalog:
        catalog.db.execute("DROP TABLE catalog_home")
    old.rename(new)

    with Catalog(new) as catalog:
        rows = _rows(catalog)
        version = latest_version(catalog, "weather")

    assert rows == [("EWR", 39.0), ("JFK", 40.0)]
    assert str(version.path).startswith(str(new) + "/")


def test_moved_home_source_paths_follow(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    source = old / "source" / "weather.csv"
    source.parent.mkdir(parents=True)
    source.write_text(ROWS)
    outside = tmp_path / "outside.csv"
    outside.write_text(ROWS.replace("39.0", "41.0"))
    with Catalog(old) as catalog:
        ingest(catalog, "weather", [source])
        ingest(catalog, "weather", [outside])
    old.rename(new)

    with Catalog(new) as catalog:
        first, second = reversed(list_versions(catalog, "weather"))

    assert first.sources[0]["path"] == str(new / "source" / "weather.csv")
    assert second.sources[0]["path"] == str(outside)
