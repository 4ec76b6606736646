"""The prediction log writer retries journal segments of batches it lost."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from appliance.config import PredictionsConfig
from appliance.predictions import LogEntry, PredictionLog
from appliance.predictions._journal import segment_files
from appliance.storage import Catalog


def entry(index: int) -> LogEntry:
    return LogEntry(
        f"{index:032x}", "demo", 1, 1_700_000_000.0 + index, 1.0, [{"x": index}], [1]
    )


def wait_for(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def logged_ids(catalog: Catalog) -> list[str]:
    rows = catalog.db.cursor().execute(
        "SELECT request_id FROM predictions ORDER BY request_id"
    )
    return [request_id for (request_id,) in rows.fetchall()]


def break_log(catalog: Catalog, spill_dir: Path) -> None:
    """Make inserts fail (no table) and spills fail (the folder is a file)."""
    catalog.db.cursor().execute("ALTER TABLE predictions RENAME TO moved").fetchall()
    shutil.rmtree(spill_dir)
    spill_dir.write_text("not a folder")


def repair_log(catalog: Catalog, spill_dir: Path) -> None:
    catalog.db.cursor().execute("ALTER TABLE moved RENAME TO predictions").fetchall()
    spill_dir.unlink()
    spill_dir.mkdir()


def test_lost_batch_inserted_while_running(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    config = PredictionsConfig(flush_seconds=0.05, journal_fsync_seconds=0.0)
    log = PredictionLog(catalog, config)
    log.retry_seconds = 0.2
    log.start()
    for index in range(5):
        log.append(entry(index))
    wait_for(lambda: log.written_rows == 5)

    break_log(catalog, log.spill_dir)
    for index in range(5, 10):
        log.append(entry(index))
    wait_for(lambda: log.lost_rows == 5)
    time.sleep(1.5)
    # The journal keeps the lost rows' segment and every later one.
    assert len(segment_files(log.journal.folder)) >= 2

    repair_log(catalog, log.spill_dir)
    for index in range(10, 15):
        log.append(entry(index))
    wait_for(lambda: log.written_rows == 15)

    assert logged_ids(catalog) == [entry(i).request_id for i in range(15)]
    # Rotation closes the current segment about once a second, and the writer
    # deletes every closed one, so the open segment and the prepared next one
    # remain at most.
    wait_for(lambda: len(segment_files(log.journal.folder)) <= 2, seconds=5.0)
    log.stop()
    assert segment_files(log.journal.folder) == []
    assert logged_ids(catalog) == [entry(i).request_id for i in range(15)]
    catalog.close()


def test_lost_batch_retried_at_stop(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    config = PredictionsConfig(flush_seconds=0.05, journal_fsync_seconds=0.0)
    log = PredictionLog(catalog, config)
    log.retry_seconds = 3600.0
    log.start()
    break_log(catalog, log.spill_dir)
    for index in range(3):
        log.append(entry(index))
    wait_for(lambda: log.lost_rows == 3)
    # A rotation, about a second after the first write, closes the segment.
    time.sleep(1.5)

    repair_log(catalog, log.spill_dir)
    log.stop()

    assert logged_ids(catalog) == [entry(i).request_id for i in range(3)]
    assert segment_files(log.journal.folder) == []
    catalog.close()
