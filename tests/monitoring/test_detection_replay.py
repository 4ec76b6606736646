"""Detections survive a kill of the monitoring service without being
recorded twice."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from appliance.config import MonitoringConfig
from appliance.monitoring import ModelInfo, MonitoringService, MonitoringStore

INFO = ModelInfo("m", 1, "classification", ("x",), (), (0, 1))
CONFIG = MonitoringConfig(stream_horizon=50, stream_reference_cycles=3)
ROWS = 600


def stepped_request() -> tuple[pa.Table, pa.Table]:
    """Return rows whose ``x`` steps up by 5 standard deviations halfway."""
    values = np.random.default_rng(7).normal(size=ROWS)
    values[ROWS // 2 :] += 5.0
    outputs = pa.table(
        {
            "label": [1] * ROWS,
            "probability_0": [0.4] * ROWS,
            "probability_1": [0.6] * ROWS,
        }
    )
    return pa.table({"x": values.tolist()}), outputs


def feed_and_kill(home: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Feed the stepped rows once, then stop without the save at stop, as a
    SIGKILL would; return the rows the restored state had seen."""
    service = MonitoringService(home, CONFIG, save_seconds=3600.0)
    service.start()
    restored = service.status(INFO.name)["rows"]
    service.submit(INFO, "r", *stepped_request())
    deadline = time.monotonic() + 30
    while service.observed < ROWS and time.monotonic() < deadline:
        time.sleep(0.05)
    monkeypatch.setattr(service, "save", lambda: None)
    service.stop()
    return restored


def test_replay_after_kill_not_recorded_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed_and_kill(tmp_path, monkeypatch)
    with MonitoringStore(tmp_path) as store:
        first = store.drift_events(INFO.name, limit=100_000)
    assert first, "the step up raised no detection"

    restored = feed_and_kill(tmp_path, monkeypatch)
    with MonitoringStore(tmp_path) as store:
        events = store.drift_events(INFO.name, limit=100_000)

    last = max(e["position"] for e in first)
    assert restored > last
    keys = [(e["kind"], e["subject"], e["cause"], e["position"]) for e in events]
    assert len(keys) == len(set(keys))
