"""Arrow requests in the monitoring service: detectors and labels of large batches."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from appliance.config import MonitoringConfig
from appliance.monitoring import ModelInfo, MonitoringService
from appliance.monitoring._store import MonitoringStore
from appliance.storage import LabelRow

INFO = ModelInfo("m", 1, "classification", ("x",), ("origin",), (0, 1), "at")
START = datetime(2024, 3, 1, tzinfo=UTC)


def drifting_batch(count: int) -> tuple[list[dict[str, Any]], list[float]]:
    """Rows whose mean and category shares change halfway, with missing values."""
    rng = np.random.default_rng(3)
    rows, scores = [], []
    for i in range(count):
        late = i >= count // 2
        row: dict[str, Any] = {
            "x": float(rng.normal(4.0 if late else 0.0, 1.0)),
            "origin": str(rng.choice(["JFK", "LGA"] if late else ["JFK", "EWR"])),
            "at": START + timedelta(minutes=i),
        }
        if i % 97 == 0:
            row["x"] = None
        if i % 89 == 0:
            row["x"] = math.nan
        if i % 83 == 0:
            row["origin"] = None
        rows.append(row)
        scores.append(0.8 if late else 0.2)
    return rows, scores


def arrow_request(
    rows: list[dict[str, Any]], scores: list[float]
) -> tuple[pa.Table, pa.Table]:
    """Return the request table and the response table of an Arrow request."""
    table = pa.Table.from_pylist(rows)
    outputs = pa.table(
        {
            "prediction": [int(s > 0.5) for s in scores],
            "probability_0": [1 - s for s in scores],
            "probability_1": scores,
        }
    )
    return table, outputs


def json_outputs(scores: list[float]) -> list[dict[str, Any]]:
    return [
        {"label": int(s > 0.5), "probabilities": {"0": 1 - s, "1": s}} for s in scores
    ]


def observed_events(service: MonitoringService, rows: int) -> list[tuple]:
    """Wait until the worker fed `rows` rows; return the recorded drift events."""
    deadline = time.monotonic() + 60
    while service.observed < rows:
        assert time.monotonic() < deadline, f"observed {service.observed} of {rows}"
        time.sleep(0.02)
    service.stop()
    with MonitoringStore(service.home) as store:
        events = store.drift_events("m")
    return sorted((e["kind"], e["subject"], e["cause"], e["position"]) for e in events)


def test_arrow_batch_detections_match_json(tmp_path: Path) -> None:
    rows, scores = drifting_batch(12_000)
    # Windows of 200 rows against 3 of them, so that 12,000 rows detect.
    config = MonitoringConfig(stream_horizon=200, stream_reference_cycles=3)
    as_json = MonitoringService(tmp_path / "json", config)
    as_arrow = MonitoringService(tmp_path / "arrow", config)
    as_json.start()
    as_arrow.start()

    as_json.submit(INFO, "r1", rows, json_outputs(scores))
    as_arrow.submit(INFO, "r1", *arrow_request(rows, scores))
    json_events = observed_events(as_json, len(rows))
    arrow_events = observed_events(as_arrow, len(rows))

    assert {kind for kind, *_ in json_events} == {"feature", "prediction"}
    assert arrow_events == json_events
    assert as_arrow.status("m")["rows"] == len(rows)


def test_arrow_label_joins_row_of_large_batch(tmp_path: Path) -> None:
    # The batch has more rows than recent_rows, and is still joined from memory.
    service = MonitoringService(tmp_path, MonitoringConfig(), recent_rows=100)
    rows, scores = drifting_batch(50_000)
    service.submit(INFO, "big", *arrow_request(rows, scores))
    stored: list[LabelRow] = []

    def persist(labels: list[LabelRow]) -> dict:
        stored.extend(labels)
        return {}

    label = {"request_id": "big", "row": 40_000, "label": 1}
    result = service.apply_labels(INFO, [label], None, persist)

    assert result["stored"] == 1
    assert stored[0].row_index == 40_000
    assert stored[0].event_time == START + timedelta(minutes=40_000)
    live = service.status("m")["live"]
    assert live["labels"] == 1
    assert live["log_loss"] == pytest.approx(-math.log(0.8))


def test_later_request_evicts_large_batch(tmp_path: Path) -> None:
    service = MonitoringService(tmp_path, MonitoringConfig(), recent_rows=100)
    rows, scores = drifting_batch(1000)
    service.submit(INFO, "big", *arrow_request(rows, scores))
    service.submit(INFO, "small", rows[:1], json_outputs(scores[:1]))
    asked: list[list[str]] = []

    def lookup(model: str, request_ids: list[str]) -> dict:
        asked.append(request_ids)
        return {("big", 5): (1, [0.8, 0.2], None)}

    labels = [
        {"request_id": "big", "row": 5, "label": 0},
        {"request_id": "small", "row": 0, "label": 0},
    ]
    result = service.apply_labels(INFO, labels, lookup)

    assert asked == [["big"]]
    assert result["stored"] == 2


def test_queue_rows_bound_drops_request(tmp_path: Path) -> None:
    # A queued Arrow request keeps its whole request body, so the queue is
    # bounded in rows as well as in requests. The worker is not started, so
    # every request stays queued.
    service = MonitoringService(tmp_path, MonitoringConfig(), queue_max_rows=1000)
    rows, scores = drifting_batch(1500)

    service.submit(INFO, "alone", *arrow_request(rows, scores))
    service.submit(INFO, "over", *arrow_request(rows[:10], scores[:10]))

    # A request larger than the bound is queued when the queue is empty.
    assert service.queued == 1
    assert service.dropped == 1


def test_queue_rows_bound_frees_taken_rows(tmp_path: Path) -> None:
    service = MonitoringService(tmp_path, MonitoringConfig(), queue_max_rows=1000)
    rows, scores = drifting_batch(600)
    service.submit(INFO, "first", *arrow_request(rows, scores))
    service.submit(INFO, "second", rows[:400], json_outputs(scores[:400]))
    service.submit(INFO, "third", *arrow_request(rows[:1], scores[:1]))
    assert (service.queued, service.dropped) == (2, 1)

    # The worker feeds the 1,000 queued rows; stop leaves the queue empty.
    service.start()
    observed_events(service, 1000)
    service.submit(INFO, "after", *arrow_request(rows, scores))
    service.submit(INFO, "again", rows[:400], json_outputs(scores[:400]))

    assert service.queued == 2
    assert service.dropped == 1
