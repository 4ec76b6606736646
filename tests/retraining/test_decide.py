"""Retraining decisions on the event clock, over a real catalog and store."""

from __future__ import annotations

import dataclasses
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
        ingest_flights(catalog, tmp_path)
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


def event_model(**policy: object) -> ModelConfig:
    retrain = {
        "trigger": "both",
        "schedule": "* * * * *",
        "clock": "event",
        "cooldown_hours": 0,
        "min_new_labels": 0,
        **policy,
    }
    return ModelConfig(
        name="late",
        dataset="flights",
        target="late",
        task="classification",
        event_timestamp="time_hour",
        retrain=RetrainConfig(**retrain),  # type: ignore[arg-type]
    )


def ingest_flights(catalog: Catalog, folder: Path) -> None:
    from appliance.storage import ingest

    data = folder / "flights.csv"
    data.write_text("time_hour,late\n2013-04-01 10:00:00,1\n", encoding="utf-8")
    ingest(catalog, "flights", [data])


def store_event_labels(catalog: Catalog, last_event: datetime) -> None:
    received = datetime.now(UTC)
    labels = [
        LabelRow("late", 1, f"r{i}", 0, True, received, last_event - timedelta(hours=i))
        for i in range(3)
    ]
    store_labels(catalog, labels)


def test_event_clock_ignores_wall_clock_runs(tmp_path: Path) -> None:
    wall_start = datetime.now(UTC) - timedelta(minutes=5)
    event_now = datetime(2013, 4, 2, tzinfo=UTC)
    model = event_model()
    with Catalog(tmp_path) as catalog, MonitoringStore(tmp_path) as store:
        ingest_flights(catalog, tmp_path)
        store_event_labels(catalog, event_now)
        # A manual run without --as-of, recorded before runs stored their clock.
        store.record_retrain(
            RetrainRecord(
                "late", "manual", "rejected", "", wall_start, id="w1", as_of=wall_start
            )
        )
        result = decide(catalog, store, model, "schedule", None)

    assert result.decision.act is True, result.decision.reason
    assert result.as_of == event_now
    assert result.clock == "event"
    assert result.new_labels == 3


def test_event_clock_cooldown_names_both_times(tmp_path: Path) -> None:
    event_now = datetime(2013, 4, 2, tzinfo=UTC)
    model = event_model(cooldown_hours=24)
    with Catalog(tmp_path) as catalog, MonitoringStore(tmp_path) as store:
        ingest_flights(catalog, tmp_path)
        store_event_labels(catalog, event_now)
        store.record_retrain(
            RetrainRecord(
                "late",
                "manual",
                "promoted",
                "",
                datetime.now(UTC),
                id="e1",
                as_of=event_now - timedelta(hours=2),
                detail={"clock": "event"},
            )
        )
        result = decide(catalog, store, model, "schedule", None)

    assert result.decision.act is False
    assert result.decision.reason == (
        "the last retraining, run e1 (promoted), took as now "
        "2013-04-01T22:00:00+00:00, and cooldown_hours = 24 allows the next from "
        "2013-04-02T22:00:00+00:00 on the event clock, which reads "
        "2013-04-02T00:00:00+00:00 now"
    )


def test_failed_run_starts_no_cooldown(tmp_path: Path) -> None:
    event_now = datetime(2013, 4, 2, tzinfo=UTC)
    model = event_model(cooldown_hours=24, retry_minutes=30)
    failed_at = datetime.now(UTC) - timedelta(minutes=10)
    failed = RetrainRecord(
        "late",
        "schedule",
        "failed",
        "challenger not trained",
        failed_at,
        failed_at,
        id="f1",
        as_of=event_now - timedelta(hours=1),
        detail={"clock": "event"},
    )
    with Catalog(tmp_path) as catalog, MonitoringStore(tmp_path) as store:
        ingest_flights(catalog, tmp_path)
        store_event_labels(catalog, event_now)
        store.record_retrain(failed)
        waiting = decide(catalog, store, model, "schedule", None)
        manual = decide(catalog, store, model, "manual", None)
        past = failed_at - timedelta(minutes=40)
        store.update_retrain(
            dataclasses.replace(failed, started_at=past, finished_at=past)
        )
        retried = decide(catalog, store, model, "drift", None)

    assert waiting.decision.act is False
    assert waiting.decision.reason.startswith(
        f"the last run, f1, failed at {failed_at.isoformat()}, and retry_minutes = "
        "30 allows the next try from "
    )
    assert "A failed run starts no cool-down" in waiting.decision.reason
    assert manual.decision.act is True, manual.decision.reason
    assert retried.decision.act is True, retried.decision.reason
    assert retried.new_labels == 3


def test_missing_dataset_names_it(tmp_path: Path) -> None:
    model = dataclasses.replace(event_model(), dataset="nosuchdata")
    with Catalog(tmp_path) as catalog, MonitoringStore(tmp_path) as store:
        store_event_labels(catalog, datetime(2013, 4, 2, tzinfo=UTC))
        result = decide(catalog, store, model, "schedule", None)

    assert result.decision.act is False
    assert result.decision.reason.startswith(
        "dataset 'nosuchdata' of model 'late' has no version in this home; "
        "ingest it with 'appliance ingest nosuchdata FILE'"
    )
