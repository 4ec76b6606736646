"""Retraining decisions on the event clock, over a real catalog and store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from appliance.config import ModelConfig, RetrainConfig
from appliance.monitoring import MonitoringStore, RetrainRecord
from appliance.retraining._job import decide
from appliance.storage import Catalog, LabelRow, store_labels

LAST_RUN = datetime(2013, 6, 1, tzinfo=UTC)


def test_event_clock_names_old_labels(tmp_path: Path) -> None:
    model = ModelConfig(
        name="late",
        dataset="flights",
        target="late",
        task="classification",
        event_timestamp="time_hour",
        retrain=RetrainConfig(
            trigger="drift", clock="event", cooldown_hours=0, min_new_labels=1
        ),
    )
    now = datetime.now(UTC)
    # Labels that arrive now, for events before the last run's as-of time.
    labels = [
        LabelRow("late", 1, f"r{i}", 0, True, now, LAST_RUN - timedelta(days=i + 1))
        for i in range(3)
    ]
    with Catalog(tmp_path) as catalog, MonitoringStore(tmp_path) as store:
        store_labels(catalog, labels)
        store.record_retrain(
            RetrainRecord("late", "drift", "rejected", "", now, as_of=LAST_RUN)
        )
        result = decide(catalog, store, model, "drift", LAST_RUN + timedelta(days=1))

    assert result.new_labels == 0
    assert result.decision.act is False
    assert result.decision.reason.startswith(
        "no labels for events after 2013-06-01T00:00:00+00:00"
    )
