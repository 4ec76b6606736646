"""The prediction log writer inserts a large Arrow request in slices."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa

from appliance.config import PredictionsConfig
from appliance.predictions import LogEntry, PredictionLog
from appliance.storage import Catalog


def test_large_arrow_entry_logged_whole(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    config = PredictionsConfig(
        batch_rows=100, flush_seconds=0.05, journal_fsync_seconds=0.0
    )
    log = PredictionLog(catalog, config)
    log.start()
    inputs = pa.table({"x": [float(i) for i in range(250)]})
    outputs = pa.table({"prediction": [i * 0.5 for i in range(250)]})

    log.append(LogEntry("a" * 32, "demo", 1, 1_700_000_000.0, 1.0, inputs, outputs))
    deadline = time.monotonic() + 20
    while log.written_rows < 250:
        assert time.monotonic() < deadline, f"written {log.written_rows} of 250"
        time.sleep(0.05)
    log.stop()

    rows = (
        catalog.db.cursor()
        .execute("SELECT row_index, input, output FROM predictions ORDER BY row_index")
        .fetchall()
    )
    assert [row[0] for row in rows] == list(range(250))
    assert json.loads(rows[249][1]) == {"x": 249.0}
    assert json.loads(rows[249][2]) == {"value": 124.5}
    assert log.written_rows == 250
    assert log.failed_writes == 0
    catalog.close()
