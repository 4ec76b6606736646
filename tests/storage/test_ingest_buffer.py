"""The HTTP ingest buffer: durable appends, flushes, recovery after a crash."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance.config import (
    ColumnRule,
    Config,
    ContractConfig,
    DatasetConfig,
    load_config,
)
from appliance.errors import RequestError
from appliance.jsonnumbers import OverflowedNumber
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
flush_rows = {flush_rows}
flush_seconds = {flush_seconds}

[datasets.events.contract.columns.value]
type = "DOUBLE"
min = 0
"""


def write_config(
    tmp_path: Path, flush_rows: int = 1000, flush_seconds: float = 3600
) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(flush_rows=flush_rows, flush_seconds=flush_seconds))
    return load_config(path)


def versions(config: Config, dataset: str = "events") -> list:
    with Catalog(config.storage.home) as catalog:
        return list_versions(catalog, dataset)


def rows_of(config: Config, dataset: str = "events") -> list[tuple]:
    with Catalog(config.storage.home) as catalog:
        version = list_versions(catalog, dataset)[0]
        return catalog.db.execute(scan_sql(version) + " ORDER BY id").fetchall()


def test_append_is_on_disk_before_return(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    buffer = IngestBuffer(config)

    count = buffer.append("events", [{"id": 1, "value": 0.5}, {"id": 2, "value": 1.5}])

    wal = config.storage.home / "buffer" / "events" / "wal.jsonl"
    lines = wal.read_text().splitlines()
    assert count == 2
    assert [json.loads(line) for line in lines] == [
        {"id": 1, "value": 0.5},
        {"id": 2, "value": 1.5},
    ]
    assert versions(config) == []


def test_overflowed_number_written_as_sent(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    buffer = IngestBuffer(config)
    nested = {"low": OverflowedNumber("-1E400"), "all": [1, OverflowedNumber("2e500")]}
    rows = [
        {"id": 1, "value": math.inf, "note": "Infinity"},
        {"id": 2, "value": OverflowedNumber("1e999"), "extra": nested},
    ]

    buffer.append("events", rows)

    wal = config.storage.home / "buffer" / "events" / "wal.jsonl"
    assert wal.read_text().splitlines() == [
        '{"id":1,"value":Infinity,"note":"Infinity"}',
        '{"id":2,"value":1e999,"extra":{"low":-1E400,"all":[1,2e500]}}',
    ]


def test_overflowed_number_quarantined_as_sent(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    buffer = IngestBuffer(config)
    rows = [
        {"id": 1, "value": 0.5},
        {"id": 2, "value": OverflowedNumber("1e999")},
        {"id": 3, "value": OverflowedNumber("1" + "0" * 400)},
    ]

    buffer.append("events", rows)
    buffer.flush("events")

    with Catalog(config.storage.home) as catalog:
        quarantined = list_quarantine(catalog, "events")
    assert rows_of(config) == [(1, 0.5)]
    assert [(q.line, q.value) for q in quarantined] == [
        (2, "1e999"),
        (3, "1" + "0" * 400),
    ]


def test_non_object_row_rejected(tmp_path: Path) -> None:
    buffer = IngestBuffer(write_config(tmp_path))

    with pytest.raises(
        RequestError, match="row 1 sent to dataset 'events' is not a JSON object"
    ):
        buffer.append("events", [{"id": 1}, [1, 2]])


@pytest.mark.parametrize(
    ("key", "problem"),
    [("", "'' is empty"), ("a\0b", "'a\\0b' contains a NUL byte (0x00)")],
)
def test_bad_column_name_rejected(tmp_path: Path, key: str, problem: str) -> None:
    buffer = IngestBuffer(write_config(tmp_path))

    with pytest.raises(RequestError) as raised:
        buffer.append("events", [{"id": 1}, {"id": 2, key: 3}])

    assert str(raised.value) == (
        f"row 1 sent to dataset 'events': the column name {problem}; "
        "name every column of each row"
    )
    assert raised.value.detail["row"] == 1
    assert buffer.buffered("events") == (0, 0)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("version", " by the lake layout (lake/DATASET/version=ID), in any case"),
        ("Version", " by the lake layout (lake/DATASET/version=ID), in any case"),
        (
            "_File",
            ", in any case, because the ingest adds columns '_file' and '_record' "
            "to the rows it reads",
        ),
    ],
)
def test_reserved_column_name_rejected(tmp_path: Path, key: str, reason: str) -> None:
    buffer = IngestBuffer(write_config(tmp_path))

    with pytest.raises(RequestError) as raised:
        buffer.append("events", [{"id": 1}, {"id": 2, key: "x"}])

    assert str(raised.value) == (
        f"row 1 sent to dataset 'events': the column name {key!r} is reserved"
        f"{reason}; rename that column"
    )
    assert raised.value.detail["row"] == 1
    assert buffer.buffered("events") == (0, 0)


def test_flush_appends_versions(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    buffer = IngestBuffer(config)

    buffer.append("events", [{"id": 1, "value": 0.5}])
    buffer.flush("events")
    buffer.append("events", [{"id": 2, "value": 2.0}, {"id": 3, "value": -1.0}])
    buffer.flush("events")

    found = versions(config)
    assert [v.mode for v in found] == ["append", "replace"]
    assert found[0].parent == found[1].version
    assert rows_of(config) == [(1, 0.5), (2, 2.0)]
    with Catalog(config.storage.home) as catalog:
        quarantined = list_quarantine(catalog, "events")
    assert [(q.line, q.column, q.value) for q in quarantined] == [(2, "value", "-1.0")]
    folder = config.storage.home / "buffer" / "events"
    assert not (folder / "wal.jsonl").exists()
    assert len(list((folder / "quarantined").iterdir())) == 1


def test_rejected_segment_counted(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    buffer = IngestBuffer(config)
    folder = config.storage.home / "buffer" / "events"
    folder.mkdir(parents=True)
    # A segment the reader rejects, as a file written by another tool would be.
    (folder / "segment-00000000000000000001.jsonl").write_text('{"id": 1}\n{"": 2}\n')

    buffer.flush("events")

    rejected, rejection = buffer.rejections("events")
    kept = folder / "rejected" / "segment-00000000000000000001.jsonl"
    assert rejected == 1
    assert rejection == (
        f'{kept}, line 2: the key "" is an empty column name; name the column, '
        "or remove the key from that object"
    )
    assert kept.read_text() == '{"id": 1}\n{"": 2}\n'
    assert buffer.buffered("events") == (0, 0)


def test_counts_by_dataset(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    buffer = IngestBuffer(config)
    buffer.append("events", [{"id": 1, "value": 0.5}])
    buffer.flush("events")
    buffer.append("events", [{"id": 2, "value": 2.0}, {"id": 3, "value": -1.0}])
    buffer.append("events", [{"id": 4, "value": 1.0}])
    before_flush = buffer.counts()
    buffer.flush("events")
    folder = config.storage.home / "buffer" / "events"
    (folder / "segment-00000000000000000001.jsonl").write_text('{"": 2}\n')
    buffer.flush("events")

    # accepted, flushed and quarantined rows, rejected segments, failed
    # flushes, failures in a row
    assert before_flush == {"events": (4, 1, 0, 0, 0, 0)}
    assert buffer.counts() == {"events": (4, 3, 1, 1, 0, 0)}


def test_segment_failing_in_duckdb_set_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path)
    ingest_file(config, "flip", '{"id": 1, "v": 1.5}\n')
    typo = ContractConfig(columns={"v": ColumnRule(type="DUBBLE")})
    buffer = IngestBuffer(config)
    # A contract type that DuckDB does not know, as a reload may bring.
    buffer.config = replace(
        config, datasets={"flip": DatasetConfig(name="flip", contract=typo)}
    )
    caplog.set_level(logging.INFO, logger="appliance.storage._buffer")
    buffer.append("flip", [{"id": 2, "v": 2.5}])

    buffer.flush("flip")
    buffer.config = config
    buffer.append("flip", [{"id": 3, "v": 3.5}])
    buffer.flush("flip")

    folder = config.storage.home / "buffer" / "flip"
    kept = list((folder / "rejected").glob("segment-*.jsonl"))
    assert len(kept) == 1
    assert kept[0].read_text() == '{"id":2,"v":2.5}\n'
    assert list(folder.glob("segment-*")) == []
    rejected, rejection = buffer.rejections("flip")
    assert rejected == 1
    assert rejection is not None
    assert rejection.startswith(f"the flush of {kept[0]} failed on its rows ")
    assert "Type with name DUBBLE does not exist" in rejection
    assert buffer.failures("flip") == (0, 0, None)
    assert rows_of(config, "flip") == [(1, 1.5), (3, 3.5)]
    assert any(
        r.getMessage().startswith("buffer segment rejected dataset=flip")
        for r in caplog.records
    )
    assert _retries(caplog) == []
    caplog.clear()
    IngestBuffer(config).recover()
    assert [r.getMessage() for r in caplog.records] == [
        "rejected buffer segments kept for review dataset=flip segments=1 "
        f"folder={folder / 'rejected'}"
    ]


def ingest_file(config: Config, dataset: str, text: str) -> None:
    path = config.storage.home.parent / f"{dataset}.jsonl"
    path.write_text(text)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, dataset, [path])


def test_recovery_drops_torn_last_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    IngestBuffer(config).append("events", [{"id": 1, "value": 0.5}])
    wal = config.storage.home / "buffer" / "events" / "wal.jsonl"
    with wal.open("ab") as handle:
        handle.write(b'{"id": 2, "val')  # a write cut short, never acknowledged

    IngestBuffer(config).recover()

    assert rows_of(config) == [(1, 0.5)]


def _block_lake(config: Config) -> Path:
    """Put a file where the dataset's lake folder goes, so every flush fails."""
    blocker = config.storage.home / "lake" / "events"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the folder goes")
    return blocker


def _retries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("buffer flush failed, retry scheduled")
    ]


def _wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_failed_flush_retried_with_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path, flush_rows=2)
    blocker = _block_lake(config)
    buffer = IngestBuffer(config)
    buffer.retry_first_seconds, buffer.retry_max_seconds = 0.05, 0.2
    caplog.set_level(logging.INFO, logger="appliance.storage._buffer")
    buffer.start()
    try:
        buffer.append("events", [{"id": 1, "value": 0.5}, {"id": 2, "value": 1.5}])
        _wait_for(lambda: len(_retries(caplog)) >= 4)
        # No new row arrives: the flush thread retries on its own.
        segments = list((config.storage.home / "buffer" / "events").glob("segment-*"))
        assert len(segments) == 1
        failed, in_a_row, error = buffer.failures("events")
        assert failed >= 4
        assert in_a_row >= 4
        assert error is not None and error.startswith("StorageError: ")
        assert buffer.failing() == {"events": in_a_row}
        assert buffer.rejections("events") == (0, None)
        blocker.unlink()
        _wait_for(lambda: buffer.buffered("events")[1] == 1)
    finally:
        buffer.stop()

    assert buffer.failures("events")[1:] == (0, None)
    assert buffer.failing() == {}

    assert rows_of(config) == [(1, 0.5), (2, 1.5)]
    retries = _retries(caplog)
    waits = [float(m.split("retry_in_s=")[1].split()[0]) for m in retries[:4]]
    assert waits == [0.05, 0.1, 0.2, 0.2]
    assert retries[0].startswith(
        "buffer flush failed, retry scheduled dataset=events attempt=1 "
    )
    assert f" error={error.removeprefix('StorageError: ')}" in retries[0]
    assert "dataset=events attempt=2 " in retries[1]
    assert any(
        "succeeded after retries dataset=events" in r.getMessage()
        for r in caplog.records
    )


def test_failed_recovery_does_not_stop_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path)
    IngestBuffer(config).append("events", [{"id": 7, "value": 3.0}])
    blocker = _block_lake(config)
    buffer = IngestBuffer(config)
    buffer.retry_first_seconds = 0.05
    caplog.set_level(logging.WARNING, logger="appliance.storage._buffer")

    buffer.start()
    try:
        _wait_for(lambda: len(_retries(caplog)) >= 2)
        blocker.unlink()
        _wait_for(lambda: buffer.buffered("events")[1] == 1)
    finally:
        buffer.stop()

    assert rows_of(config) == [(7, 3.0)]


def test_segment_ingested_before_crash_not_duplicated(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    buffer = IngestBuffer(config)
    buffer.append("events", [{"id": 1, "value": 0.5}])
    buffer._rotate("events")
    segment = next((config.storage.home / "buffer" / "events").glob("segment-*"))
    # The crash happened after the ingest but before the segment was deleted.
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "events", [segment], "append", config.dataset("events"))

    IngestBuffer(config).recover()

    assert len(versions(config)) == 1
    assert not segment.exists()


def test_equal_batches_both_appended(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    buffer = IngestBuffer(config)

    buffer.append("events", [{"id": 1, "value": 0.5}])
    buffer.flush("events")
    buffer.append("events", [{"id": 1, "value": 0.5}])
    buffer.flush("events")

    assert len(versions(config)) == 2
    assert rows_of(config) == [(1, 0.5), (1, 0.5)]


def test_quarantine_names_moved_segment(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    buffer = IngestBuffer(config)

    buffer.append("events", [{"id": 1, "value": 0.5}, {"id": 2, "value": -1.0}])
    buffer.flush("events")

    segment = next((config.storage.home / "buffer" / "events").glob("*/segment-*"))
    assert segment.parent.name == "quarantined"
    with Catalog(config.storage.home) as catalog:
        quarantined = list_quarantine(catalog, "events")
        version = list_versions(catalog, "events")[0]
    assert [q.source for q in quarantined] == [str(segment.resolve())]
    assert version.sources[0]["path"] == str(segment.resolve())


def test_quarantined_segment_moved_after_crash(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    buffer = IngestBuffer(config)
    buffer.append("events", [{"id": 1, "value": 0.5}, {"id": 2, "value": -1.0}])
    buffer._rotate("events")
    folder = config.storage.home / "buffer" / "events"
    segment = next(folder.glob("segment-*"))
    # The crash happened after the ingest but before the segment was moved.
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "events", [segment], "append", config.dataset("events"))

    IngestBuffer(config).recover()

    kept = folder / "quarantined" / segment.name
    assert not segment.exists()
    assert kept.exists()
    assert len(versions(config)) == 1
    with Catalog(config.storage.home) as catalog:
        sources = [q.source for q in list_quarantine(catalog, "events")]
    assert sources == [str(kept.resolve())]


# --- the daemon, killed between acknowledgement and flush -------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_daemon(tmp_path: Path, log_name: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    with (tmp_path / log_name).open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appliance",
                "--config",
                str(tmp_path / "config.toml"),
                "serve",
                "--port",
                str(port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, (tmp_path / log_name).read_text()
        try:
            if (
                httpx.get(f"{base}/health", timeout=2, trust_env=False).status_code
                == 200
            ):
                return process, base
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("daemon did not answer /health within 60 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_acknowledged_rows_survive_kill(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    process, base = start_daemon(tmp_path, "first.log")
    try:
        sent = [{"id": i, "value": float(i)} for i in range(5)]
        response = httpx.post(
            f"{base}/v1/datasets/events/rows", json={"rows": sent}, trust_env=False
        )
        assert response.status_code == 202
        assert response.json() == {"dataset": "events", "accepted": 5, "buffered": 5}
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert versions(config) == []

    process, base = start_daemon(tmp_path, "second.log")
    stop(process)

    assert rows_of(config) == [(i, float(i)) for i in range(5)]


def test_arrow_rows_rejected_as_media_type(tmp_path: Path) -> None:
    write_config(tmp_path)
    process, base = start_daemon(tmp_path, "daemon.log")
    try:
        response = httpx.post(
            f"{base}/v1/datasets/events/rows",
            content=b"\xff\xff\xff\xff",
            headers={"Content-Type": "application/vnd.apache.arrow.stream"},
            trust_env=False,
        )
    finally:
        stop(process)

    assert response.status_code == 415
    assert response.json()["error"] == (
        "rows for dataset 'events' are sent as JSON ({\"rows\": [...]}); Arrow "
        "IPC streams are accepted by the predict route only, so write Arrow "
        "data to a Parquet file and run 'appliance ingest events FILE --mode "
        "append'"
    )


def test_daemon_flushes_by_age(tmp_path: Path) -> None:
    config = write_config(tmp_path, flush_seconds=0.5)
    process, base = start_daemon(tmp_path, "daemon.log")
    try:
        response = httpx.post(
            f"{base}/v1/datasets/events/rows",
            json={"rows": [{"id": 1, "value": 2.5}, {"id": 2, "value": -3}]},
            trust_env=False,
        )
        assert response.status_code == 202
        deadline = time.monotonic() + 30
        status = {}
        while time.monotonic() < deadline:
            status = httpx.get(
                f"{base}/v1/datasets/events/rows", trust_env=False
            ).json()
            if status["flushes"] >= 1:
                break
            time.sleep(0.2)
        last_flush = status.pop("last_flush")
        assert status == {
            "dataset": "events",
            "buffered": 0,
            "flushes": 1,
            "rejected_segments": 0,
            "last_rejection": None,
            "rejected": [],
            "failed_flushes": 0,
            "failures_in_a_row": 0,
            "flush_error": None,
            "flushed_rows": 1,
            "quarantined_rows": 1,
        }
        first_version = last_flush.pop("version")
        assert last_flush == {"accepted": 1, "quarantined": 1}
        metrics = httpx.get(f"{base}/metrics", trust_env=False).text
        counted = {
            sample.name: sample.value
            for family in text_string_to_metric_families(metrics)
            for sample in family.samples
            if sample.labels.get("dataset") == "events"
        }
        assert counted["appliance_ingest_accepted_rows_total"] == 2
        assert counted["appliance_ingest_flushed_rows_total"] == 1
        assert counted["appliance_ingest_quarantined_rows_total"] == 1
        assert counted["appliance_ingest_rejected_segments_total"] == 0
        assert counted["appliance_ingest_rejected_segments_waiting"] == 0
        listed = httpx.get(
            f"{base}/v1/admin/quarantine", params={"dataset": "events"}, trust_env=False
        ).json()["rows"]
        kept = config.storage.home / "buffer" / "events" / "quarantined"
        segment = next(kept.glob("segment-*.jsonl")).resolve()
        assert [(r["source"], r["line"], r["value"]) for r in listed] == [
            (str(segment), 2, "-3")
        ]
        assert segment.read_text().splitlines()[1] == '{"id":2,"value":-3}'
        literals = httpx.post(
            f"{base}/v1/datasets/events/rows",
            content=b'{"rows": [{"id": 5, "value": NaN}, '
            b'{"id": 6, "value": Infinity}]}',
            headers={"Content-Type": "application/json"},
            trust_env=False,
        )
        assert literals.status_code == 202, literals.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = httpx.get(
                f"{base}/v1/datasets/events/rows", trust_env=False
            ).json()
            if status["flushes"] >= 2:
                break
            time.sleep(0.2)
        assert status["flushes"] == 2
        # NaN is a missing value and accepted; Infinity is quarantined.
        assert (status["flushed_rows"], status["quarantined_rows"]) == (2, 2)
        assert status["last_flush"]["accepted"] == 1
        assert status["last_flush"]["quarantined"] == 1
        second_version = status["last_flush"]["version"]
        listed = httpx.get(
            f"{base}/v1/admin/quarantine", params={"dataset": "events"}, trust_env=False
        ).json()["rows"]
        # The segment stores the value as sent, and the quarantine shows that text.
        assert [(r["line"], r["value"]) for r in listed] == [
            (2, "-3"),
            (2, "Infinity"),
        ]
        assert "is not a finite number" in listed[1]["reason"]
        repeated = httpx.post(
            f"{base}/v1/datasets/events/rows",
            content=b'{"rows": [{"id": 7, "value": 1.0, "value" : 2.50}, '
            b'{"id": 8, "value": 4.0}]}',
            headers={"Content-Type": "application/json"},
            trust_env=False,
        )
        assert repeated.status_code == 202, repeated.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = httpx.get(
                f"{base}/v1/datasets/events/rows", trust_env=False
            ).json()
            if status["flushes"] >= 3:
                break
            time.sleep(0.2)
        assert status["last_flush"]["accepted"] == 1
        assert status["last_flush"]["quarantined"] == 1
        listed = httpx.get(
            f"{base}/v1/admin/quarantine", params={"dataset": "events"}, trust_env=False
        ).json()["rows"]
        # The buffer writes each number as Python prints the parsed float.
        assert (listed[-1]["line"], listed[-1]["value"]) == (1, "1.0, 2.5")
        assert listed[-1]["reason"] == (
            "key 'value' appears 2 times in the object, with the values 1.0, 2.5; "
            "send each key once"
        )
        bad = httpx.post(
            f"{base}/v1/datasets/events/rows", content=b"{", trust_env=False
        )
        assert bad.status_code == 400
        misspelt = httpx.post(
            f"{base}/v1/datasets/evnets/rows",
            json={"rows": [{"id": 3, "value": 1.0}]},
            trust_env=False,
        )
        assert misspelt.status_code == 404
        assert "dataset 'evnets' is not declared" in misspelt.json()["error"]
        invalid = httpx.post(
            f"{base}/v1/datasets/-events/rows",
            json={"rows": [{"id": 3, "value": 1.0}]},
            trust_env=False,
        )
        assert invalid.status_code == 422
        assert invalid.json()["error"].startswith(
            "invalid dataset name '-events'; start with a letter or digit"
        )
        unknown = httpx.get(f"{base}/v1/datasets/evnets/rows", trust_env=False)
        assert unknown.status_code == 404
        assert "dataset 'evnets' is not declared" in unknown.json()["error"]
    finally:
        stop(process)

    assert rows_of(config) == [(1, 2.5), (5, None), (8, 4.0)]
    first, second, third = sorted(versions(config), key=lambda v: v.created_at)
    assert first.version == first_version
    assert second.version == second_version
    assert third.version == status["last_flush"]["version"]


def _flushed(base: str, dataset: str, flushes: int) -> dict:
    deadline = time.monotonic() + 30
    status: dict = {}
    while time.monotonic() < deadline:
        url = f"{base}/v1/datasets/{dataset}/rows"
        status = httpx.get(url, trust_env=False).json()
        if status["flushes"] >= flushes:
            break
        time.sleep(0.2)
    return status


def test_bad_batch_does_not_block_next(tmp_path: Path) -> None:
    config = write_config(tmp_path, flush_seconds=0.5)
    ingest_file(config, "flip", '{"id": 1, "v": 1.5}\n')
    process, base = start_daemon(tmp_path, "daemon.log")
    try:
        url = f"{base}/v1/datasets/flip/rows"
        bad = httpx.post(
            url,
            content=b'{"rows": [{"id": 2, "newc": 5, "v": {"x": 1}}, '
            b'{"id": 3, "v": 1e999}]}',
            headers={"Content-Type": "application/json"},
            trust_env=False,
        )
        assert bad.status_code == 202, bad.text
        status = _flushed(base, "flip", 1)
        good = httpx.post(url, json={"rows": [{"id": 9, "v": 9.5}]}, trust_env=False)
        assert good.status_code == 202, good.text
        status = _flushed(base, "flip", 2)
        metrics = httpx.get(f"{base}/metrics", trust_env=False).text
        ready = httpx.get(f"{base}/health/ready", trust_env=False).json()
    finally:
        stop(process)

    assert status["flushes"] == 2
    assert (status["flushed_rows"], status["quarantined_rows"]) == (1, 2)
    assert status["rejected_segments"] == 0
    assert (status["failed_flushes"], status["failures_in_a_row"]) == (0, 0)
    counted = {
        sample.name: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.labels.get("dataset") == "flip"
    }
    assert counted["appliance_ingest_quarantined_rows_total"] == 2
    assert counted["appliance_ingest_failed_flushes_total"] == 0
    assert counted["appliance_ingest_flush_failures_in_a_row"] == 0
    assert ready["ingest_flushes_failing"] == {}
    assert rows_of(config, "flip") == [(1, 1.5), (9, 9.5)]
    with Catalog(config.storage.home) as catalog:
        quarantined = list_quarantine(catalog, "flip")
        first_append = list_versions(catalog, "flip")[1]
    assert sorted(str(row.column) for row in quarantined) == ["v", "v"]
    assert "new column 'newc' of type BIGINT" in first_append.report["warnings"]
    assert first_append.schema == {"id": "BIGINT", "v": "DOUBLE"}


def test_failing_flush_shown_over_http(tmp_path: Path) -> None:
    config = write_config(tmp_path, flush_seconds=0.5)
    blocker = _block_lake(config)
    process, base = start_daemon(tmp_path, "daemon.log")
    try:
        url = f"{base}/v1/datasets/events/rows"
        sent = httpx.post(
            url, json={"rows": [{"id": 1, "value": 0.5}]}, trust_env=False
        )
        assert sent.status_code == 202, sent.text
        deadline = time.monotonic() + 30
        status: dict = {}
        while time.monotonic() < deadline:
            status = httpx.get(url, trust_env=False).json()
            if status["failures_in_a_row"] >= 2:
                break
            time.sleep(0.2)
        metrics = httpx.get(f"{base}/metrics", trust_env=False).text
        ready = httpx.get(f"{base}/health/ready", trust_env=False)
        blocker.unlink()
        recovered = _flushed(base, "events", 1)
    finally:
        stop(process)

    assert status["failures_in_a_row"] >= 2
    assert status["failed_flushes"] >= 2
    assert status["flush_error"].startswith("StorageError: ")
    assert status["rejected_segments"] == 0
    counted = {
        sample.name: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.labels.get("dataset") == "events"
    }
    assert counted["appliance_ingest_failed_flushes_total"] >= 2
    assert counted["appliance_ingest_flush_failures_in_a_row"] >= 2
    assert ready.status_code == 200
    assert ready.json()["ingest_flushes_failing"]["events"] >= 2
    assert recovered["flushes"] == 1
    assert (recovered["failures_in_a_row"], recovered["flush_error"]) == (0, None)
    assert recovered["failed_flushes"] >= 2
    assert rows_of(config) == [(1, 0.5)]
