"""Retention of versions made by the HTTP ingest buffer's flushes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from appliance.config import Config, load_config
from appliance.storage import (
    Catalog,
    IngestBuffer,
    ingest,
    list_quarantine,
    list_versions,
    scan_sql,
)

CONFIG = """
[storage]
home = "home"

[ingest]
flush_rows = 1000
flush_seconds = 3600

[datasets.events]
keep_versions = 2

[datasets.events.contract.columns.value]
type = "DOUBLE"
min = 0
"""


def write_config(tmp_path: Path) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    return load_config(path)


def versions_read(config: Config) -> list[Path]:
    """Return the folders the latest version reads, oldest first."""
    with Catalog(config.storage.home) as catalog:
        latest = list_versions(catalog, "events")[0]
    return [Path(glob).parent for glob in latest.files]


def flush_batches(config: Config, batches: int) -> None:
    """Flush `batches` appends of one good and one quarantined row each."""
    buffer = IngestBuffer(config)
    for index in range(batches):
        good = {"id": 2 * index, "value": float(index)}
        bad = {"id": 2 * index + 1, "value": -1.0}
        buffer.append("events", [good, bad])
        buffer.flush("events")


def test_removed_version_quarantine_deleted(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    flush_batches(config, 5)

    with Catalog(config.storage.home) as catalog:
        kept_versions = list_versions(catalog, "events")
        kept_ids = {v.version for v in kept_versions}
        quarantined = list_quarantine(catalog, "events")
        ids = [
            catalog.db.execute(f"SELECT id FROM ({scan_sql(v)})").fetchall()
            for v in kept_versions
        ]
    assert len(kept_ids) == 2
    # Each kept version still reads every good row up to its flush.
    assert [sorted(i for (i,) in rows) for rows in ids] == [
        [0, 2, 4, 6, 8],
        [0, 2, 4, 6],
    ]
    assert {q.version for q in quarantined} == kept_ids
    segments = config.storage.home / "buffer" / "events" / "quarantined"
    assert sorted(str(p.resolve()) for p in segments.iterdir()) == sorted(
        q.source for q in quarantined
    )


def test_disk_lists_home_parts(tmp_path: Path, cli) -> None:
    config = write_config(tmp_path)
    flush_batches(config, 3)
    home = config.storage.home
    rolled = home / "predictions" / "parquet" / "part-1.parquet"
    rolled.parent.mkdir(parents=True)
    rolled.write_bytes(b"x" * 1000)
    (home / "keys").mkdir()
    (home / "keys" / "column.key").write_bytes(b"k" * 32)

    result = cli(tmp_path / "config.toml", home, "disk", "--json")
    table = cli(tmp_path / "config.toml", home, "disk")

    assert result.returncode == 0, result.stderr
    parts = {row["part"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert parts["predictions/parquet"]["bytes"] == 1000
    assert parts["predictions/parquet"]["files"] == 1
    assert parts["other"]["bytes"] == 32
    assert parts["catalog"]["bytes"] == (home / "catalog.duckdb").stat().st_size
    lake = home / "lake" / "events"
    assert parts["lake/events"]["files"] == len(list(lake.rglob("*.parquet")))
    segments = list((home / "buffer" / "events" / "quarantined").iterdir())
    assert parts["buffer/events/quarantined"]["files"] == len(segments) == 2
    assert parts["total"]["bytes"] == sum(
        p.stat().st_size for p in home.rglob("*") if p.is_file()
    )
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["part", "size", "files", "path"]
    assert re.search(r"^predictions/parquet +1000 B +1 ", table.stdout, re.M)


def test_replace_frees_append_chain(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    buffer = IngestBuffer(config)
    for index in range(4):
        buffer.append("events", [{"id": index, "value": float(index)}])
        buffer.flush("events")
    lake = config.storage.home / "lake" / "events"
    # The two kept appends read every older folder, so none is freed.
    assert len(list(lake.iterdir())) == 4
    # An erasure leaves a removed version's rewritten rows in such a sibling.
    oldest = versions_read(config)[0]
    redacted = lake / f"{oldest.name}.redacted-0123456789abcdef"
    redacted.mkdir()
    (redacted / "data_0.parquet").write_bytes(b"rows")

    kept_rows = tmp_path / "kept.csv"
    kept_rows.write_text("id,value\n2,2.0\n3,3.0\n")
    settings = config.datasets["events"]
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "events", [kept_rows], settings=settings, mode="replace")
    buffer.append("events", [{"id": 4, "value": 4.0}])
    buffer.flush("events")

    with Catalog(config.storage.home) as catalog:
        latest = list_versions(catalog, "events")[0]
        rows = catalog.db.execute(scan_sql(latest) + " ORDER BY id").fetchall()
    assert rows == [(2, 2.0), (3, 3.0), (4, 4.0)]
    assert len(list(lake.iterdir())) == 2
    assert not redacted.exists()
