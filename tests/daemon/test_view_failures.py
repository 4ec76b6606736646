"""A feature view that fails on its rows: the ingest check, readiness, alerts.

The weather contract keeps ``time_hour`` as text, as the contract inferred
from a Parquet file of text times does, and the weather view casts it to
TIMESTAMPTZ. A time in another format keeps the contract but fails the view.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from support import (
    load_config_text,
    run_appliance,
    start_daemon,
    stop_daemon,
    write_flights_week,
)

from appliance.config import Config
from appliance.features import FeatureServer
from appliance.storage import Catalog, ingest, latest_version
from appliance.training import train_model

CONFIG = """
[storage]
home = "home"

[ingest]
flush_rows = 1
flush_seconds = 0.2

[datasets.weather.contract.columns.time_hour]
type = "VARCHAR"

[feature_views.weather]
sql = "SELECT origin, CAST(time_hour AS TIMESTAMPTZ) AS time_hour, temp FROM weather"
entities = ["origin"]
timestamp = "time_hour"

[feature_views.routes]
sql = "SELECT origin, count(*)::DOUBLE AS routes FROM flights GROUP BY origin"
entities = ["origin"]

[models.late]
dataset = "flights"
target = "late"
task = "classification"
algorithm = "random_forest"
features = ["distance", "temp"]
feature_views = ["weather"]
event_timestamp = "time_hour"

[models.late.params]
n_estimators = 10

[models.busy]
dataset = "flights"
target = "late"
task = "classification"
algorithm = "random_forest"
features = ["distance", "routes"]
feature_views = ["routes"]

[models.busy.params]
n_estimators = 10
"""
BAD_TIME = "05/01/2013 11:00"
ROW = {"origin": "EWR", "time_hour": "2013-02-03T09:00:00Z", "distance": 190}
WAIT_SECONDS = 30.0


def _trained(tmp_path: Path) -> Config:
    """Return the config of a home with a week of flights and weather, and
    models ``late`` (joins weather) and ``busy`` (joins routes) trained."""
    config = load_config_text(tmp_path, CONFIG)
    flights_csv, weather_csv = write_flights_week(tmp_path)
    views = list(config.feature_views.values())
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "flights", [flights_csv], views=views)
        ingest(
            catalog,
            "weather",
            [weather_csv],
            settings=config.dataset("weather"),
            views=views,
        )
    train_model(config, "late")
    train_model(config, "busy")
    return config


def _append_unchecked(config: Config, path: Path) -> str:
    """Append a weather row the view cannot read, as an ingest without the
    check stored it; return the new version id."""
    path.write_text(f"origin,time_hour,temp\nEWR,{BAD_TIME},51.0\n")
    with Catalog(config.storage.home) as catalog:
        result = ingest(catalog, "weather", [path], "append", config.dataset("weather"))
    return result.version.version


def _wait_for(check, description: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {description}")


def test_flushed_row_view_cannot_read_quarantined(tmp_path: Path) -> None:
    config = _trained(tmp_path)
    home = config.storage.home
    daemon = start_daemon(tmp_path / "config.toml", home, tmp_path / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            good = {"origin": "JFK", "time_hour": "2013-02-08T00:00:00Z", "temp": 5}
            bad = {"origin": "EWR", "time_hour": BAD_TIME, "temp": 51.0}
            sent = client.post("/v1/datasets/weather/rows", json={"rows": [good, bad]})
            _wait_for(
                lambda: client.get("/v1/datasets/weather/rows").json()["flushes"] >= 1,
                "the flush",
            )
            _wait_for(
                lambda: daemon.log.read_text().count("feature views loaded") >= 2,
                "the reload after the flush",
            )
            ready = client.get("/health/ready")
            predicted = client.post("/v1/models/late/predict", json={"rows": [ROW]})
            status = client.get("/v1/datasets/weather/rows").json()
        listed = run_appliance(
            tmp_path / "config.toml", home, "datasets", "quarantine", "weather"
        )
    finally:
        stop_daemon(daemon)

    assert sent.status_code == 202
    assert (status["flushed_rows"], status["quarantined_rows"]) == (1, 1)
    assert ready.status_code == 200, ready.text
    assert ready.json()["feature_views_failing"] == {}
    assert predicted.status_code == 200, predicted.text
    assert listed.returncode == 0, listed.stderr
    assert "feature view 'weather' cannot read this row" in listed.stdout
    assert BAD_TIME in listed.stdout
    log = daemon.log.read_text()
    assert "feature view load failed" not in log
    with Catalog(home, read_only=True) as catalog:
        assert latest_version(catalog, "weather").row_count == 7 * 8 + 1


def test_restart_serves_models_without_failing_view(tmp_path: Path) -> None:
    config = _trained(tmp_path)
    home = config.storage.home
    version = _append_unchecked(config, tmp_path / "bad.csv")
    config_path = tmp_path / "config.toml"
    started = datetime.now(UTC)
    daemon = start_daemon(config_path, home, tmp_path / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            ready = client.get("/health/ready")
            read_at = datetime.now(UTC)
            late = client.post("/v1/models/late/predict", json={"rows": [ROW]})
            busy = client.post("/v1/models/busy/predict", json={"rows": [ROW]})
            metrics = client.get("/metrics").text
            alerts = client.get("/v1/alerts", params={"status": "open"}).json()[
                "alerts"
            ]
            erased = run_appliance(
                config_path,
                home,
                "erase",
                "weather",
                "--where",
                f"time_hour={BAD_TIME}",
            )
            ready_after = client.get("/health/ready")
            late_after = client.post("/v1/models/late/predict", json={"rows": [ROW]})
            resolved = client.get("/v1/alerts", params={"status": "resolved"}).json()[
                "alerts"
            ]
            metrics_after = client.get("/metrics").text
    finally:
        stop_daemon(daemon)

    assert ready.status_code == 503
    body = ready.json()
    assert body["unserved"] == ["late"]
    failing = body["feature_views_failing"]
    assert list(failing) == ["weather"]
    assert failing["weather"]["models"] == ["late"]
    assert failing["weather"]["datasets"] == {"weather": version}
    assert failing["weather"]["serving_rows_of"] is None
    failed_at = datetime.fromisoformat(failing["weather"]["failed_at"])
    assert failed_at.utcoffset() == timedelta(0)
    assert started <= failed_at <= read_at
    error = failing["weather"]["error"]
    assert error.startswith(
        f"feature view 'weather' failed on the rows of weather@{version}: "
        "Conversion Error"
    )
    assert BAD_TIME in error
    assert "appliance erase DATASET --where COLUMN=VALUE" in error
    assert "correct [feature_views.weather] sql" not in error
    assert busy.status_code == 200, busy.text
    assert late.status_code == 503, late.text
    assert late.json()["error"].startswith(
        "model 'late' cannot be served now: feature view 'weather' failed on the rows"
    )
    assert 'appliance_feature_view_failing{view="weather"} 1.0' in metrics
    assert 'appliance_feature_view_failing{view="routes"} 0.0' in metrics
    assert 'appliance_feature_view_load_failures_total{view="weather"} 1.0' in metrics
    view_alerts = [a for a in alerts if a["kind"] == "feature_view"]
    assert [(a["model"], a["subject"], a["severity"]) for a in view_alerts] == [
        ("late", "weather", "critical")
    ]
    log = daemon.log.read_text()
    assert re.search(
        r"ERROR .* feature view load failed view=weather serving=none", log
    )
    assert "Traceback" not in log

    assert erased.returncode == 0, erased.stderr
    assert ready_after.status_code == 200, ready_after.text
    assert late_after.status_code == 200, late_after.text
    assert [a["id"] for a in resolved if a["kind"] == "feature_view"] == [
        view_alerts[0]["id"]
    ]
    assert 'appliance_feature_view_failing{view="weather"} 0.0' in metrics_after
    assert "feature view loaded again view=weather" in daemon.log.read_text()


def test_reload_failure_serves_previous_rows(tmp_path: Path) -> None:
    config = _trained(tmp_path)
    with Catalog(config.storage.home, read_only=True) as catalog:
        good = latest_version(catalog, "weather").version
    features = FeatureServer(config)
    features.load()
    before = features.fill("late", [ROW])

    version = _append_unchecked(config, tmp_path / "bad.csv")
    features.load()
    after = features.fill("late", [ROW])

    failure = features.failures["weather"]
    assert failure.served == {"weather": good}
    assert failure.versions == {"weather": version}
    assert f"It read weather@{good} before" in failure.message
    assert features.unserved() == {}
    assert after == before
    assert features.fill("busy", [ROW])[0]["routes"] == 7 * 8
    assert features.failed_loads == {"weather": 1}


def test_removed_view_dataset_fails_view(tmp_path: Path) -> None:
    config = _trained(tmp_path)
    home = config.storage.home
    config_path = tmp_path / "config.toml"
    _, weather_csv = write_flights_week(tmp_path)
    daemon = start_daemon(config_path, home, tmp_path / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            removed = run_appliance(
                config_path,
                home,
                "datasets",
                "remove",
                "weather",
                "--ignore-dependents",
            )
            ready = client.get("/health/ready")
            late = client.post("/v1/models/late/predict", json={"rows": [ROW]})
            busy = client.post("/v1/models/busy/predict", json={"rows": [ROW]})
            metrics = client.get("/metrics").text
            alerts = client.get("/v1/alerts", params={"status": "open"}).json()[
                "alerts"
            ]
            ingested = run_appliance(
                config_path, home, "ingest", "weather", str(weather_csv)
            )
            ready_after = client.get("/health/ready")
            late_after = client.post("/v1/models/late/predict", json={"rows": [ROW]})
            resolved = client.get("/v1/alerts", params={"status": "resolved"}).json()[
                "alerts"
            ]
            metrics_after = client.get("/metrics").text
    finally:
        stop_daemon(daemon)

    assert removed.returncode == 0, removed.stderr
    assert ready.status_code == 503, ready.text
    body = ready.json()
    assert body["unserved"] == ["late"]
    assert body["every_model_served"] is False
    failing = body["feature_views_failing"]
    assert list(failing) == ["weather"]
    assert failing["weather"]["models"] == ["late"]
    assert failing["weather"]["datasets"] == {}
    assert failing["weather"]["serving_rows_of"] is None
    missing = (
        "feature view 'weather' reads dataset 'weather', which has no version "
        "yet; ingest it with 'appliance ingest weather FILE'"
    )
    assert failing["weather"]["error"] == missing
    assert late.status_code == 503, late.text
    assert late.json()["error"] == f"model 'late' cannot be served now: {missing}"
    assert busy.status_code == 200, busy.text
    assert 'appliance_feature_view_failing{view="weather"} 1.0' in metrics
    assert 'appliance_feature_view_failing{view="routes"} 0.0' in metrics
    view_alerts = [a for a in alerts if a["kind"] == "feature_view"]
    assert [(a["model"], a["subject"], a["severity"]) for a in view_alerts] == [
        ("late", "weather", "critical")
    ]

    assert ingested.returncode == 0, ingested.stderr
    assert ready_after.status_code == 200, ready_after.text
    assert late_after.status_code == 200, late_after.text
    assert [a["id"] for a in resolved if a["kind"] == "feature_view"] == [
        view_alerts[0]["id"]
    ]
    assert 'appliance_feature_view_failing{view="weather"} 0.0' in metrics_after
    assert "Traceback" not in daemon.log.read_text()


def test_load_after_view_dataset_removed(tmp_path: Path) -> None:
    config = _trained(tmp_path)
    removed = run_appliance(
        tmp_path / "config.toml",
        config.storage.home,
        "datasets",
        "remove",
        "weather",
        "--ignore-dependents",
    )
    features = FeatureServer(config)

    features.load()

    assert removed.returncode == 0, removed.stderr
    assert features.unserved() == {"late": ["weather"]}
    failure = features.failures["weather"]
    assert failure.served is None
    assert failure.versions == {}
    assert "reads dataset 'weather', which has no version yet" in failure.message
    assert features.fill("busy", [ROW])[0]["routes"] == 7 * 8
