"""The ``[monitoring] streaming`` switch of the monitoring service."""

from __future__ import annotations

from pathlib import Path

from appliance.config import MonitoringConfig
from appliance.monitoring import ModelInfo, MonitoringService

INFO = ModelInfo("m", 1, "classification", ("x",), ("c",), (0, 1))
OUTPUTS = [{"label": 1, "probabilities": {"0": 0.3, "1": 0.7}}]


def test_streaming_on_queues_rows(tmp_path: Path) -> None:
    service = MonitoringService(tmp_path, MonitoringConfig())

    service.submit(INFO, "r1", [{"x": 1.0, "c": "a"}], OUTPUTS)

    assert service.queued == 1
    assert service.dropped == 0


def test_streaming_off_skips_detectors(tmp_path: Path) -> None:
    service = MonitoringService(tmp_path, MonitoringConfig(streaming=False))

    service.submit(INFO, "r1", [{"x": 1.0, "c": "a"}], OUTPUTS)
    result = service.apply_labels(
        INFO, [{"request_id": "r1", "row": 0, "label": 1}], None
    )

    assert service.queued == 0
    assert service.observed == 0
    assert result["stored"] == 1
    assert service.status("m")["labels"] == 1
    assert service.status("m")["rows"] == 0


def test_cpu_seconds_zero_before_start(tmp_path: Path) -> None:
    service = MonitoringService(tmp_path, MonitoringConfig())

    assert service.cpu_seconds() == 0.0


def test_arrow_batch_converted_off_request(tmp_path: Path) -> None:
    import time

    import pyarrow as pa

    service = MonitoringService(tmp_path, MonitoringConfig())
    rows = pa.table({"x": [1.0, 2.0], "c": ["a", "b"]})
    outputs = pa.table(
        {"label": [1, 0], "probability_0": [0.3, 0.8], "probability_1": [0.7, 0.2]}
    )
    service.start()
    try:
        service.submit(INFO, "r1", rows, outputs)
        deadline = time.monotonic() + 10
        while service.observed < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        labels = [{"request_id": "r1", "row": i, "label": i} for i in (0, 1)]
        result = service.apply_labels(INFO, labels, None)
    finally:
        service.stop()

    assert service.observed == 2
    assert result["stored"] == 2
