"""Retention of versions made by the HTTP ingest buffer's flushes."""

from __future__ import annotations

from pathlib import Path

from appliance.config import Config, load_config
from appliance.storage import Catalog, IngestBuffer, list_quarantine, list_versions

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
        kept = {v.version for v in list_versions(catalog, "events")}
        quarantined = list_quarantine(catalog, "events")
    assert len(kept) == 2
    assert {q.version for q in quarantined} == kept
    segments = config.storage.home / "buffer" / "events" / "quarantined"
    assert sorted(str(p.resolve()) for p in segments.iterdir()) == sorted(
        q.source for q in quarantined
    )
