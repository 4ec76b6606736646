"""Compaction of the catalog file after rows were deleted."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from appliance.errors import StorageError
from appliance.storage import (
    Catalog,
    compact_catalog,
    compaction_requested,
    request_compaction,
)

MARKER_TEXT = "MARKER-7EX42Q"


def test_compaction_drops_deleted_bytes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Catalog(home) as catalog:
        catalog.db.execute("CREATE SEQUENCE ids")
        catalog.db.execute(
            "CREATE TABLE notes (id BIGINT DEFAULT nextval('ids'), text VARCHAR)"
        )
        catalog.db.execute(
            "INSERT INTO notes (text) VALUES ('kept'), (?)", [MARKER_TEXT]
        )
        catalog.db.execute("CHECKPOINT")
        catalog.db.execute("DELETE FROM notes WHERE text = ?", [MARKER_TEXT])
    path = home / "catalog.duckdb"
    assert MARKER_TEXT.encode() in path.read_bytes()
    request_compaction(home)

    compact_catalog(home)

    assert MARKER_TEXT.encode() not in path.read_bytes()
    assert not compaction_requested(home)
    with Catalog(home) as catalog:
        catalog.db.execute("INSERT INTO notes (text) VALUES ('new')")
        rows = catalog.db.execute("SELECT id, text FROM notes ORDER BY id").fetchall()
    assert rows == [(1, "kept"), (3, "new")]


def test_compaction_of_open_catalog_fails(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Catalog(home) as catalog:
        catalog.db.execute("CREATE TABLE notes (text VARCHAR)")
        with pytest.raises(StorageError, match="the catalog is unchanged"):
            compact_catalog(home)
        assert catalog.db.execute("SELECT count(*) FROM notes").fetchall() == [(0,)]
    assert not (home / "catalog.duckdb.compact.tmp").exists()
    with duckdb.connect(str(home / "catalog.duckdb"), read_only=True) as db:
        assert db.execute("SELECT count(*) FROM notes").fetchall() == [(0,)]
