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
