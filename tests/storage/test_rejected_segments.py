"""Rejected buffer segments: reason files beside them, listing and retries.

A contract whose ``unique_key`` names a column that the sent rows lack fails
every flush of those rows the same way, so their segment is rejected. The
fix is a new contract, or rows with the column.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance.cli import main
from appliance.config import Config, load_config
from appliance.errors import IngestError, NotFoundError
from appliance.serving._metrics import ServingMetrics
from appliance.storage import (
    Catalog,
    IngestBuffer,
    RejectedSegment,
    ingest,
    list_quarantine,
    list_rejected,
    list_versions,
    scan_sql,
)
from appliance.storage._quarantine import move_source

CONFIG = """
[storage]
home = "home"

[datasets.events.contract]
unique_key = {unique_key}

[datasets.events.contract.columns.value]
type = "DOUBLE"
min = 0
"""
KEY_ERROR = (
    "unique_key column 'id' of [datasets.events.contract] is not a column of "
    "the ingested rows; columns: value. Fix unique_key or add the column to the "
    "files"
)


def write_config(tmp_path: Path, unique_key: str = '["id"]') -> Config:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(unique_key=unique_key))
    return load_config(path)


def reject_rows(config: Config) -> Path:
    """Flush two rows without the unique key column; return their segment."""
    buffer = IngestBuffer(config)
    buffer.append("events", [{"value": 1.5}, {"value": -2.0}])
    buffer.flush("events")
    folder = config.storage.home / "buffer" / "events" / "rejected"
    (segment,) = folder.glob("segment-*.jsonl")
    return segment


def stored_rows(config: Config) -> list[tuple]:
    with Catalog(config.storage.home) as catalog:
        version = list_versions(catalog, "events")[0]
        return catalog.db.execute(scan_sql(version)).fetchall()


def test_reason_written_beside_segment(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    before = datetime.now(UTC).replace(microsecond=0)

    segment = reject_rows(config)

    reason = segment.with_name(segment.stem + ".reason.json")
    stored = json.loads(reason.read_text())
    rejected_at = datetime.fromisoformat(stored.pop("rejected_at"))
    assert stored == {
        "segment": segment.name,
        "path": str(segment.resolve()),
        "rows": 2,
        "error": "IngestError",
        "message": KEY_ERROR,
        "retries": 0,
    }
    assert before <= rejected_at <= datetime.now(UTC) + timedelta(seconds=1)


def test_reason_survives_restart(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    segment = reject_rows(config)

    restarted = IngestBuffer(config)
    restarted.recover()

    assert restarted.rejections("events") == (0, None)
    (listed,) = list_rejected(config.storage.home / "buffer" / "events")
    assert listed.segment == segment.name
    assert listed.path == str(segment.resolve())
    assert listed.rows == 2
    assert listed.error == "IngestError"
    assert listed.message == KEY_ERROR
    assert listed.retries == 0


def test_segment_without_reason_listed(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    folder = config.storage.home / "buffer" / "events" / "rejected"
    folder.mkdir(parents=True)
    (folder / "segment-00000000000000000001.jsonl").write_text('{"value": 1}\n')

    listed = list_rejected(config.storage.home / "buffer" / "events")

    assert listed == [
        RejectedSegment(
            segment="segment-00000000000000000001.jsonl",
            path=str((folder / "segment-00000000000000000001.jsonl").resolve()),
            rows=1,
            error=None,
            message=None,
            rejected_at=None,
        )
    ]


def test_retry_after_fix_appends_rows(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    segment = reject_rows(config)
    fixed = write_config(tmp_path, unique_key="[]")
    buffer = IngestBuffer(fixed)

    result = buffer.retry_rejected("events", segment.name)

    assert result.created
    assert result.accepted == 1
    assert result.quarantined == 1
    assert stored_rows(fixed) == [(1.5,)]
    assert list(segment.parent.iterdir()) == []
    kept = fixed.storage.home / "buffer" / "events" / "quarantined" / segment.name
    assert kept.read_text() == '{"value":1.5}\n{"value":-2.0}\n'
    with Catalog(fixed.storage.home) as catalog:
        quarantined = list_quarantine(catalog, "events")
    assert [(q.source, q.line, q.value) for q in quarantined] == [
        (str(kept.resolve()), 2, "-2.0")
    ]
    assert buffer.flushed_rows("events")[:2] == (1, 1)


def test_retry_without_suffix_finds_segment(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    segment = reject_rows(config)
    buffer = IngestBuffer(write_config(tmp_path, unique_key="[]"))

    result = buffer.retry_rejected("events", segment.stem)

    assert result.accepted == 1
    assert not segment.exists()


def test_retry_failing_again_keeps_segment(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    segment = reject_rows(config)
    reason = segment.with_name(segment.stem + ".reason.json")
    first = json.loads(reason.read_text())
    buffer = IngestBuffer(config)

    with pytest.raises(IngestError) as raised:
        buffer.retry_rejected("events", segment.name)

    assert str(raised.value) == (
        f"retry of rejected segment {segment.name} of dataset 'events' failed "
        f"again, so it stays in {segment.parent}: {KEY_ERROR}"
    )
    assert segment.read_text() == '{"value":1.5}\n{"value":-2.0}\n'
    again = json.loads(reason.read_text())
    assert again["retries"] == 1
    assert again["message"] == KEY_ERROR
    assert again["rejected_at"] >= first["rejected_at"]
    assert buffer.rejections("events") == (0, KEY_ERROR)
    with Catalog(config.storage.home) as catalog:
        assert list_versions(catalog, "events") == []


def test_retry_of_unknown_segment_rejected(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    segment = reject_rows(config)
    buffer = IngestBuffer(config)

    for name in ("segment-1.jsonl", "../wal.jsonl", segment.stem + ".reason.json"):
        with pytest.raises(NotFoundError) as raised:
            buffer.retry_rejected("events", name)
        assert str(raised.value) == (
            f"dataset 'events' has no rejected buffer segment {name!r} "
            f"(rejected segments: {segment.name}); list them with 'appliance "
            "datasets rejected events'"
        )


def test_cli_lists_and_retries_without_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    segment = reject_rows(config)
    command = ["--config", str(config.path), "datasets", "rejected", "events"]
    (listed,) = list_rejected(config.storage.home / "buffer" / "events")

    assert main([*command, "--json"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [
        asdict(listed)
    ]
    assert main([*command, "--retry", segment.name]) == 1
    assert "failed again, so it stays in" in capsys.readouterr().err
    write_config(tmp_path, unique_key="[]")
    assert main([*command, "--retry", segment.name]) == 0
    printed = capsys.readouterr().out
    assert "rows=1 mode=replace accepted=1 quarantined=1 (created)" in printed
    assert main(command) == 0
    assert capsys.readouterr().out == "(none)\n"
    assert list(segment.parent.iterdir()) == []


def record_without_move(config: Config, segment: Path) -> None:
    """Leave `segment` as a flush cut short after its catalog writes does.

    The flush has committed the segment's version and named the segment's
    place in ``quarantined/`` in the catalog, but not yet moved the file.
    """
    kept = config.storage.home / "buffer" / "events" / "quarantined" / segment.name
    with Catalog(config.storage.home) as catalog:
        result = ingest(
            catalog,
            "events",
            [segment],
            "append",
            config.dataset("events"),
            same_paths=True,
        )
        assert result.quarantined == 1
        move_source(catalog, "events", result.version.version, segment, kept)


def test_flush_after_crash_before_move_not_repeated(tmp_path: Path) -> None:
    config = write_config(tmp_path, unique_key="[]")
    folder = config.storage.home / "buffer" / "events"
    folder.mkdir(parents=True)
    segment = folder / "segment-00000000000000000001.jsonl"
    segment.write_text('{"value":1.5}\n{"value":-2.0}\n')
    record_without_move(config, segment)

    IngestBuffer(config).recover()

    with Catalog(config.storage.home) as catalog:
        assert len(list_versions(catalog, "events")) == 1
    assert stored_rows(config) == [(1.5,)]
    assert not segment.exists()
    assert (folder / "quarantined" / segment.name).exists()


def test_retry_after_crash_before_move_not_repeated(tmp_path: Path) -> None:
    segment = reject_rows(write_config(tmp_path))
    fixed = write_config(tmp_path, unique_key="[]")
    record_without_move(fixed, segment)

    result = IngestBuffer(fixed).retry_rejected("events", segment.name)

    assert not result.created
    with Catalog(fixed.storage.home) as catalog:
        assert len(list_versions(catalog, "events")) == 1
    assert stored_rows(fixed) == [(1.5,)]
    assert list(segment.parent.iterdir()) == []


def test_retry_removes_reason_when_listener_fails(tmp_path: Path) -> None:
    segment = reject_rows(write_config(tmp_path))
    buffer = IngestBuffer(write_config(tmp_path, unique_key="[]"))

    def fail(dataset: str, result: object) -> None:
        raise RuntimeError("feature views failed to load")

    buffer.on_flush = fail

    with pytest.raises(RuntimeError, match="feature views failed to load"):
        buffer.retry_rejected("events", segment.name)

    assert list(segment.parent.iterdir()) == []
    assert stored_rows(buffer.config) == [(1.5,)]


def test_waiting_gauge_drops_after_retry(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    segment = reject_rows(config)
    buffer = IngestBuffer(write_config(tmp_path, unique_key="[]"))
    metrics = ServingMetrics()
    metrics.watch_ingest(buffer.counts, buffer.waiting_rejected)

    before = waiting_samples(metrics)
    buffer.retry_rejected("events", segment.name)
    after = waiting_samples(metrics)

    assert before == {"events": 1.0}
    assert after == {"events": 0.0}


def waiting_samples(metrics: ServingMetrics) -> dict[str, float]:
    families = text_string_to_metric_families(metrics.render().decode())
    return {
        sample.labels["dataset"]: sample.value
        for family in families
        if family.name == "appliance_ingest_rejected_segments_waiting"
        for sample in family.samples
    }
