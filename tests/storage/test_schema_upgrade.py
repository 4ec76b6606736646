"""A catalog written by an older version reads after an upgrade of the code."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import duckdb
import pytest

from appliance.errors import StorageError
from appliance.storage import Catalog, ingest, list_versions

ROWS = "origin,temp\nEWR,39.0\nJFK,40.0\n"


def _old_home(tmp_path: Path) -> Path:
    """Return a home whose catalog predates `gate_rejections` and the record."""
    home = tmp_path / "home"
    source = tmp_path / "weather.csv"
    source.write_text(ROWS)
    with Catalog(home) as catalog:
        ingest(catalog, "weather", [source])
    with duckdb.connect(str(home / "catalog.duckdb")) as db:
        db.execute("DROP TABLE gate_rejections; DROP TABLE catalog_schema")
    return home


def test_read_only_open_upgrades_old_catalog(tmp_path: Path) -> None:
    home = _old_home(tmp_path)

    with Catalog(home, read_only=True) as catalog:
        versions = list_versions(catalog)

    assert [(v.dataset, v.row_count) for v in versions] == [("weather", 2)]
    with duckdb.connect(str(home / "catalog.duckdb"), read_only=True) as db:
        tables = {row[0] for row in db.execute("SHOW TABLES").fetchall()}
    assert {"gate_rejections", "catalog_schema"} <= tables


def test_current_catalog_opens_without_upgrade(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = _old_home(tmp_path)
    with Catalog(home):
        pass

    with caplog.at_level(logging.INFO, logger="appliance.storage._catalog"):
        with Catalog(home, read_only=True) as catalog:
            assert len(list_versions(catalog)) == 1

    assert "upgrading catalog" not in caplog.text


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_unwritable_old_catalog_names_remedy(
    tmp_path: Path,
) -> None:
    home = _old_home(tmp_path)
    path = home / "catalog.duckdb"
    path.chmod(0o444)
    try:
        with pytest.raises(StorageError, match="older version.*start the daemon"):
            Catalog(home, read_only=True)
    finally:
        path.chmod(0o644)
