"""Rows sent over HTTP to a partitioned dataset must have its partition column.

A row without it would be stored in the partition of missing values, so the
request is rejected with 422 before any of its rows is buffered.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

ROWS = "/v1/datasets/flights/rows"
SECTIONS: dict[str, dict[str, Any]] = {
    "ingest": {"flush_rows": 2, "flush_seconds": 3600},
    "datasets.flights": {"partition_by": "month"},
}


def test_row_without_partition_rejected(start_daemon: Any) -> None:
    daemon = start_daemon(**SECTIONS)
    rows = [{"month": 1, "delay": 5}, {"delay": 7}]

    sent = httpx.post(daemon.base + ROWS, json={"rows": rows})

    assert sent.status_code == 422, sent.text
    error = sent.json()
    assert error["error"].startswith(
        "row 1 sent to dataset 'flights' lacks column 'month', which "
        "[datasets.flights] partition_by stores the rows by"
    )
    assert error["row"] == 1
    assert error["columns"] == ["month"]
    status = httpx.get(daemon.base + ROWS).json()
    assert status["buffered"] == 0


def test_rows_with_partition_flushed(start_daemon: Any) -> None:
    daemon = start_daemon(**SECTIONS)
    rows = [{"month": 1, "delay": 5}, {"month": None, "delay": 7}]

    sent = httpx.post(daemon.base + ROWS, json={"rows": rows})

    assert sent.status_code == 202, sent.text
    deadline = time.monotonic() + 30
    status = httpx.get(daemon.base + ROWS).json()
    while status["flushes"] < 1:
        assert time.monotonic() < deadline, (status, daemon.log())
        time.sleep(0.1)
        status = httpx.get(daemon.base + ROWS).json()
    assert status["flushed_rows"] == 2
    assert status["rejected_segments"] == 0
