"""Restoring saved detector states at the start of the monitoring service."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pytest

from appliance.config import MonitoringConfig
from appliance.monitoring import MonitoringService, MonitoringStore, StreamMonitor


def test_unreadable_state_skips_only_its_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = StreamMonitor("classification", ("x",), ())
    monitor.observe_predictions([{"x": 1.0}], [[0.2, 0.8]])
    with MonitoringStore(tmp_path) as store:
        store.save_state("old", 3, b"not a saved monitor")
        store.save_state("kept", 2, monitor.to_bytes())
    service = MonitoringService(tmp_path, MonitoringConfig())

    with caplog.at_level(logging.WARNING, logger="appliance.monitoring._service"):
        service.start()
        service.stop()

    assert service.status("kept")["rows"] == 1
    assert service.status("old")["rows"] == 0
    warned = [r for r in caplog.records if "not restored" in r.getMessage()]
    assert len(warned) == 1
    assert "model=old version=3" in warned[0].getMessage()
    assert warned[0].levelno == logging.WARNING
    assert warned[0].exc_info is None


def test_state_commit_conflict_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second writer that saves the same model's state first makes COMMIT
    fail, and that conflict is raised, not the ROLLBACK after it."""
    with MonitoringStore(tmp_path) as store:
        other = store.db.cursor()
        real_record = store.record_events

        def record_then_race(*args: object) -> None:
            real_record(*args)
            other.execute(
                "INSERT OR REPLACE INTO detector_state VALUES (?, ?, now(), ?)",
                ["trips", 2, b"other writer"],
            )

        monkeypatch.setattr(store, "record_events", record_then_race)
        with pytest.raises(duckdb.TransactionException) as raised:
            store.record_detections("trips", 1, b"this writer", [])
        other.close()

        assert "duplicate key" in str(raised.value)
        assert "no transaction is active" not in str(raised.value)
        assert store.load_state("trips") == (2, b"other writer")
