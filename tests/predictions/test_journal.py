"""The prediction journal: records, cut files, segment release and recovery."""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from appliance.jsonnumbers import OverflowedNumber
from appliance.predictions._journal import (
    Journal,
    decode_entry,
    encode_entry,
    journal_dir,
    read_segment,
    segment_files,
)
from appliance.predictions._recover import recover_journal
from appliance.predictions._rows import LogEntry, entries_to_table
from appliance.predictions._store import (
    create_table,
    insert_rows,
    parquet_dir,
    roll_over,
)


def json_entry(request_id: str, rows: int = 1) -> LogEntry:
    inputs = [{"x1": 0.5 * i, "x2": None, "color": "red"} for i in range(rows)]
    outputs = [{"prediction": 1, "probability_1": 0.75} for _ in range(rows)]
    return LogEntry(request_id, "demo", 2, 1_700_000_000.25, 1.5, inputs, outputs)


def test_record_json_rows_round_trip() -> None:
    entry = json_entry("a" * 32, rows=3)
    assert decode_entry(encode_entry(entry)[8:]) == entry


def test_record_large_integer_round_trip() -> None:
    entry = LogEntry("b" * 32, "demo", 1, 1.0, 2.0, [{"x1": 2**70}], [0])
    decoded = decode_entry(encode_entry(entry)[8:])
    assert decoded.inputs == [{"x1": 2**70}]
    assert decoded.outputs == [0]


def test_record_overflowed_number_as_text() -> None:
    inputs = [{"x1": 0.5, "note": OverflowedNumber("1e999")}]
    entry = LogEntry("d" * 32, "demo", 1, 1.0, 2.0, inputs, [0])

    decoded = decode_entry(encode_entry(entry)[8:])

    assert decoded.inputs == [{"x1": 0.5, "note": "1e999"}]
    assert decoded.outputs == [0]


def test_record_arrow_tables_round_trip() -> None:
    inputs = pa.table({"x1": [1.0, None], "color": ["red", "blue"]})
    outputs = pa.table({"prediction": [0, 1], "probability_1": [0.1, 0.9]})
    entry = LogEntry("c" * 32, "demo", 1, 1.0, 2.0, inputs, outputs)
    decoded = decode_entry(encode_entry(entry)[8:])
    assert decoded.inputs.equals(inputs)
    assert decoded.outputs.equals(outputs)


def test_record_garbage_rejected() -> None:
    with pytest.raises(ValueError, match="invalid journal record"):
        decode_entry(b"\x00\x00\x00\x00")


def write_entries(folder: Path, count: int) -> Path:
    journal = Journal(folder, fsync_seconds=0.0)
    for index in range(count):
        journal.write(json_entry(f"{index:032x}"))
    journal.close(remove=False)
    (path,) = segment_files(folder)
    return path


def test_segment_cut_record_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_entries(tmp_path, 4)
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    entries = read_segment(path)
    assert [e.request_id for e in entries] == [f"{i:032x}" for i in range(3)]
    assert "journal ends in a cut record" in caplog.text


def test_segment_cut_header_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_entries(tmp_path, 2)
    path.write_bytes(path.read_bytes() + b"\x10\x00")
    assert len(read_segment(path)) == 2
    assert "journal ends in a cut record" in caplog.text


def test_segment_zero_tail_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_entries(tmp_path, 2)
    path.write_bytes(path.read_bytes() + bytes(64))
    assert len(read_segment(path)) == 2
    assert "journal record invalid" in caplog.text


def test_segment_bad_checksum_stops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_entries(tmp_path, 3)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert len(read_segment(path)) == 2
    assert "reason=crc" in caplog.text


def test_journal_release_keeps_open_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("appliance.predictions._journal.ROTATE_SECONDS", 0.0)
    journal = Journal(tmp_path, fsync_seconds=0.5)
    first = journal.write(json_entry("1" * 32))
    journal.rotate_if_due()
    second = journal.write(json_entry("2" * 32))
    assert second > first
    assert len(segment_files(tmp_path)) == 2

    journal.release_before(second)
    (left,) = segment_files(tmp_path)
    assert [e.request_id for e in read_segment(left)] == ["2" * 32]

    journal.release_before(journal.sequence)
    assert len(segment_files(tmp_path)) == 1
    journal.rotate_if_due()
    journal.release_before(journal.sequence)
    assert segment_files(tmp_path) == []
    journal.close(remove=True)


def test_journal_write_failure_counted(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "missing", fsync_seconds=0.0)
    journal.write(json_entry("1" * 32))
    assert journal.failed_writes == 1
    (tmp_path / "missing").mkdir()
    journal.write(json_entry("2" * 32))
    assert journal.failed_writes == 1
    journal.close(remove=False)
    (path,) = segment_files(tmp_path / "missing")
    assert [e.request_id for e in read_segment(path)] == ["2" * 32]


def test_journal_fsync_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []

    def record_fsync(fd: int) -> None:
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")

    monkeypatch.setattr("os.fsync", record_fsync)
    journal = Journal(tmp_path, fsync_seconds=0.05)
    journal.write(json_entry("1" * 32))
    journal.sync_if_due()
    assert synced == ["folder"]
    time.sleep(0.06)
    journal.sync_if_due()
    assert synced == ["folder", "file"]
    journal.sync_if_due()
    assert synced == ["folder", "file"]
    journal.close(remove=True)


def test_recover_inserts_missing_once(tmp_path: Path) -> None:
    folder = journal_dir(tmp_path)
    folder.mkdir(parents=True)
    journal = Journal(folder, fsync_seconds=0.0)
    entries = [json_entry(f"{i:032x}", rows=2) for i in range(5)]
    for entry in entries:
        journal.write(entry)
    journal.write(entries[0])
    journal.close(remove=False)
    db = duckdb.connect(str(tmp_path / "catalog.duckdb"))
    create_table(db)
    insert_rows(db, entries_to_table(entries[:3], db))
    # The first two requests' rows move to Parquet, as at a roll-over.
    assert roll_over(db, tmp_path, keep_rows=4) == 4

    assert recover_journal(db, tmp_path) == 4
    rolled = f"read_parquet('{parquet_dir(tmp_path)}/*.parquet')"
    logged = db.execute(
        "SELECT request_id, row_index, count(*) FROM (SELECT * FROM predictions "
        f"UNION ALL SELECT * FROM {rolled}) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    expected = [(f"{i:032x}", r, 1) for i in range(5) for r in range(2)]
    assert logged == expected
    assert segment_files(folder) == []
    db.close()


def open_files_under(folder: Path) -> int:
    """Return how many of this process's file descriptors point into `folder`."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        count += target.startswith(str(folder))
    return count


@pytest.mark.parametrize("fsync_seconds", [0.0, 0.01])
def test_journal_kept_segments_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync_seconds: float
) -> None:
    monkeypatch.setattr("appliance.predictions._journal.ROTATE_SECONDS", 0.0)
    journal = Journal(tmp_path, fsync_seconds=fsync_seconds)
    for index in range(5):
        journal.write(json_entry(f"{index:032x}"))
        journal.rotate_if_due()
        journal.sync_if_due()
    assert len(segment_files(tmp_path)) == 5
    assert open_files_under(tmp_path) == 0
    journal.close(remove=False)
    assert len(segment_files(tmp_path)) == 5


def test_journal_write_uses_prepared_file(tmp_path: Path) -> None:
    journal = Journal(tmp_path, fsync_seconds=0.0)
    journal.prepare()
    (prepared,) = segment_files(tmp_path)
    journal.write(json_entry("1" * 32))
    journal.prepare()
    assert len(segment_files(tmp_path)) == 2
    assert [e.request_id for e in read_segment(prepared)] == ["1" * 32]
    journal.close(remove=False)
    assert segment_files(tmp_path) == [prepared]


def test_journal_create_failure_rate_limited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance.predictions import _journal

    folder = tmp_path / "missing"
    journal = Journal(folder, fsync_seconds=0.0)
    caplog.set_level(logging.INFO, logger="appliance.predictions._journal")

    for _ in range(50):
        journal.prepare()
    assert journal.failing
    (first,) = caplog.records
    assert first.levelno == logging.ERROR
    assert first.exc_info is not None
    assert first.getMessage().startswith(
        f"journal segment create failed folder={folder} error="
    )

    monkeypatch.setattr(_journal, "FAILURE_SUMMARY_SECONDS", 0.0)
    journal.prepare()
    summary = caplog.records[-1]
    assert summary.exc_info is None
    assert "still failing" in summary.getMessage()
    assert "failures=51 new_failures=50 " in summary.getMessage()

    folder.mkdir()
    journal.prepare()
    assert not journal.failing
    assert "journal segment create recovered" in caplog.records[-1].getMessage()
    assert len(caplog.records) == 3
    journal.close(remove=True)
