"""Stopping the monitoring service with a large request still queued."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from appliance.config import MonitoringConfig
from appliance.monitoring import (
    DriftEvent,
    ModelInfo,
    MonitoringService,
    MonitoringStore,
    _service,
    drift_event_alerts,
)

INFO = ModelInfo("m", 1, "classification", ("x",), ("c",), (0, 1))
OUTPUTS = [{"label": 1, "probabilities": {"0": 0.3, "1": 0.7}}]


def arrow_request(rows: int) -> tuple[pa.Table, pa.Table]:
    inputs = pa.table({"x": [float(i % 97) for i in range(rows)], "c": ["a"] * rows})
    outputs = pa.table(
        {
            "label": [i % 2 for i in range(rows)],
            "probability_0": [0.4] * rows,
            "probability_1": [0.6] * rows,
        }
    )
    return inputs, outputs


def test_stop_timeout_counts_skipped_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_service, "STOP_SECONDS", 0.0)
    service = MonitoringService(tmp_path, MonitoringConfig())
    service.start()
    service.submit(INFO, "big", *arrow_request(20_000))
    service.submit(INFO, "small", [{"x": 1.0, "c": "a"}], OUTPUTS)

    service.stop()

    assert service.thread_id is None
    assert service.skipped_at_stop > 0
    assert service.observed + service.skipped_at_stop == 20_001
    assert service.queued == 0


def test_detections_folded_per_alert(tmp_path: Path) -> None:
    events = [DriftEvent("feature", "x", "mean", i) for i in range(5_000)]
    events.append(DriftEvent("prediction", "prediction", "mean", 7))

    with MonitoringStore(tmp_path) as store:
        store.record_events("m", events)
        folded = _service._by_key(drift_event_alerts("m", events))
        alerts = [store.record_alert(c, occurrences=n)[0] for c, n in folded]
        stored = store.drift_events("m", limit=10_000)

    assert len(stored) == 5_001
    assert {e["position"] for e in stored} == set(range(5_000))
    assert sorted((a.subject, a.count) for a in alerts) == [
        ("feature:x", 5_000),
        ("prediction:prediction", 1),
    ]
    assert "at row 4999 " in next(a for a in alerts if a.count == 5_000).message
