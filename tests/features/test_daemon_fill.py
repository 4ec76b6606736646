"""The daemon fills feature view columns of a request that carries only keys."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import (
    load_config_text,
    run_appliance,
    start_daemon,
    stop_daemon,
    write_flights_week,
)

from appliance.config import Config
from appliance.errors import ViewDataError
from appliance.features import FeatureServer
from appliance.storage import Catalog, ingest
from appliance.training import train_model

CONFIG = """
[storage]
home = "home"

[feature_views.weather]
sql = "SELECT origin, time_hour, temp FROM weather"
entities = ["origin"]
timestamp = "time_hour"

[models.late]
dataset = "flights"
target = "late"
task = "classification"
algorithm = "random_forest"
features = ["distance", "temp"]
feature_views = ["weather"]
event_timestamp = "time_hour"

[models.late.params]
n_estimators = 20
"""


def _trained(tmp_path: Path) -> Config:
    """Return the config of a home with four weeks of flights and weather,
    and model ``late`` trained on them."""
    config = load_config_text(tmp_path, CONFIG)
    flights_csv, weather_csv = write_flights_week(tmp_path, days=28)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "flights", [flights_csv])
        ingest(catalog, "weather", [weather_csv])
    train_model(config, "late")
    return config


def test_predict_fills_features_from_keys(tmp_path: Path) -> None:
    config = _trained(tmp_path)

    config_path, home = tmp_path / "config.toml", config.storage.home
    daemon = start_daemon(config_path, home, tmp_path / "daemon.log")
    base = daemon.base_url
    try:
        keys_only = {
            "origin": "EWR",
            "time_hour": "2013-02-10T09:30:00Z",
            "distance": 190,
        }
        # The 09:00 reading of 2013-02-10 is (10 * 7 + 9) % 40 = 39.0.
        explicit = {**keys_only, "temp": 39.0}
        later = {**keys_only, "temp": float((10 * 7 + 12) % 40)}

        def proba(row: dict) -> float:
            response = httpx.post(
                f"{base}/v1/models/late/predict", json={"rows": [row]}, trust_env=False
            )
            assert response.status_code == 200, response.text
            # The entity keys and event time are used, so none is warned about.
            assert "warnings" not in response.json()
            return response.json()["predictions"][0]["probabilities"]["true"]

        filled, given, leaked = proba(keys_only), proba(explicit), proba(later)
        missing = httpx.post(
            f"{base}/v1/models/late/predict",
            json={"rows": [{"time_hour": "2013-02-10T09:30:00Z", "distance": 1}]},
            trust_env=False,
        )
        arrow = arrow_proba(base, keys_only)

        # A weather version ingested through the running daemon is joined from
        # then on: 2013-03-01 01:30 sees the new 01:00 reading, not the last
        # February one.
        march = {**keys_only, "time_hour": "2013-03-01T01:30:00Z"}
        before = proba(march)
        new_weather = tmp_path / "weather-march.csv"
        new_weather.write_text("origin,time_hour,temp\nEWR,2013-03-01T01:00:00Z,35.0\n")
        ingested = run_appliance(
            config_path, home, "ingest", "weather", str(new_weather), "--mode", "append"
        )
        after, given_new = proba(march), proba({**march, "temp": 35.0})
        shown = run_appliance(
            config_path, home, "datasets", "show", "weather", "--json"
        )
        quarantined = run_appliance(
            config_path, home, "datasets", "quarantine", "weather", "--json"
        )

        rows_csv = tmp_path / "rows.csv"
        rows_csv.write_text("origin,time_hour,distance\nEWR,2013-02-10T09:30:00Z,190\n")
        scored = tmp_path / "scored.parquet"
        batch = run_appliance(
            config_path, home, "predict", "late", str(rows_csv), str(scored)
        )
    finally:
        stop_daemon(daemon)

    assert filled == given
    assert filled != leaked
    assert missing.status_code == 422
    assert "missing entity key 'origin'" in missing.json()["error"]
    assert arrow == filled
    assert ingested.returncode == 0, ingested.stderr
    assert "mode=append" in ingested.stdout
    assert after == given_new
    assert after != before
    assert shown.returncode == 0, shown.stderr
    version = json.loads(shown.stdout)
    assert (version["mode"], version["rows"]) == ("append", 28 * 8 + 1)
    assert quarantined.returncode == 0, quarantined.stderr
    assert quarantined.stdout == ""
    assert batch.returncode == 0, batch.stderr
    assert pq.read_table(scored).column("probability_true").to_pylist() == [filled]


def arrow_proba(base: str, row: dict) -> float:
    """Return the ``true`` probability of one row sent as an Arrow IPC stream."""
    table = pa.table({name: [value] for name, value in row.items()})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    response = httpx.post(
        f"{base}/v1/models/late/predict",
        content=sink.getvalue().to_pybytes(),
        headers={"Content-Type": "application/vnd.apache.arrow.stream"},
        trust_env=False,
    )
    assert response.status_code == 200, response.text
    # As in JSON, the entity keys and event time are used, so none is warned about.
    assert "x-appliance-warnings" not in response.headers
    output = pa.ipc.open_stream(response.content).read_all()
    return output.column("probability_true").to_pylist()[0]


def test_lost_view_data_not_ready(tmp_path: Path) -> None:
    import shutil

    config = _trained(tmp_path)
    shutil.rmtree(config.storage.home / "lake" / "weather")
    config_path, home = tmp_path / "config.toml", config.storage.home
    daemon = start_daemon(config_path, home, tmp_path / "daemon.log")
    try:
        ready = httpx.get(daemon.base_url + "/health/ready")
        row = {"origin": "EWR", "time_hour": "2013-02-10T09:30:00Z", "distance": 190}
        predicted = httpx.post(
            daemon.base_url + "/v1/models/late/predict", json={"rows": [row]}
        )
    finally:
        stop_daemon(daemon)

    assert ready.status_code == 503
    assert ready.json()["feature_views_loaded"] is False
    assert predicted.status_code >= 500
    assert "restore that folder from a backup" in predicted.json()["error"]
    assert "IO Error" not in predicted.json()["error"]


def test_lost_view_data_rebuilt_ready(tmp_path: Path) -> None:
    import shutil

    config = _trained(tmp_path)
    shutil.rmtree(config.storage.home / "lake" / "weather")
    config_path, home = tmp_path / "config.toml", config.storage.home
    row = {"origin": "EWR", "time_hour": "2013-02-10T09:30:00Z", "distance": 190}
    daemon = start_daemon(config_path, home, tmp_path / "daemon.log")
    try:
        lost = httpx.get(daemon.base_url + "/health/ready")
        ingested = run_appliance(
            config_path, home, "ingest", "weather", str(tmp_path / "weather.csv")
        )
        ready = httpx.get(daemon.base_url + "/health/ready")
        predicted = httpx.post(
            daemon.base_url + "/v1/models/late/predict", json={"rows": [row]}
        )
    finally:
        stop_daemon(daemon)

    log = (tmp_path / "daemon.log").read_text()
    assert lost.status_code == 503
    assert ingested.returncode == 0, ingested.stderr
    assert ingested.stdout.startswith("lake files rebuilt from these files: weather@")
    assert len(ingested.stdout.splitlines()) == 1
    assert "lake files rebuilt dataset=weather" in log
    assert ready.status_code == 200, ready.text
    assert ready.json()["feature_views_loaded"] is True
    assert predicted.status_code == 200, predicted.text


BAD_SQL = CONFIG.replace("time_hour, temp FROM", "time_hour, tempp FROM")
KEYS_ROW = {"origin": "EWR", "time_hour": "2013-02-10T09:30:00Z", "distance": 190}


def _wait_for(log: Path, text: str) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return False


def test_reload_bad_view_sql_rejected(tmp_path: Path) -> None:
    config = _trained(tmp_path)
    config_path, home = tmp_path / "config.toml", config.storage.home
    log = tmp_path / "daemon.log"
    predict = "/v1/models/late/predict"
    daemon = start_daemon(config_path, home, log)
    try:
        before = httpx.post(daemon.base_url + predict, json={"rows": [KEYS_ROW]})
        config_path.write_text(BAD_SQL)
        os.kill(daemon.process.pid, signal.SIGHUP)
        rejected = _wait_for(log, "config reload rejected")
        after = httpx.post(daemon.base_url + predict, json={"rows": [KEYS_ROW]})
        ready = httpx.get(daemon.base_url + "/health/ready")
    finally:
        stop_daemon(daemon)

    audit = run_appliance(config_path, home, "audit", "list", "--json")
    text = log.read_text()
    (line,) = [line for line in text.splitlines() if "reload rejected" in line]
    reloads = [json.loads(entry) for entry in audit.stdout.splitlines()]
    reloads = [entry for entry in reloads if entry["action"] == "config.reload"]
    assert before.status_code == 200, before.text
    assert rejected, text
    assert "invalid SQL of feature view 'weather'" in line
    assert "tempp" in line
    assert "config reloaded" not in text
    assert after.status_code == 200, after.text
    assert after.json()["predictions"] == before.json()["predictions"]
    assert ready.status_code == 200, ready.text
    assert audit.returncode == 0, audit.stderr
    assert [entry["outcome"] for entry in reloads] == ["failed"]
    assert "invalid SQL of feature view 'weather'" in reloads[0]["details"]["error"]


def test_reload_view_second_statement_not_run(tmp_path: Path) -> None:
    config = _trained(tmp_path)
    config_path, home = tmp_path / "config.toml", config.storage.home
    written = tmp_path / "copied.csv"
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config_path, home, log)
    try:
        config_path.write_text(
            CONFIG.replace(
                "temp FROM weather",
                f"temp FROM weather; COPY (SELECT 42 AS x) TO '{written}'",
            )
        )
        os.kill(daemon.process.pid, signal.SIGHUP)
        rejected = _wait_for(log, "config reload rejected")
        predicted = httpx.post(
            daemon.base_url + "/v1/models/late/predict", json={"rows": [KEYS_ROW]}
        )
    finally:
        stop_daemon(daemon)

    text = log.read_text()
    (line,) = [line for line in text.splitlines() if "reload rejected" in line]
    assert rejected, text
    assert "'feature_views.weather'" in line
    assert "2 statements (SELECT, COPY)" in line
    assert not written.exists()
    assert predicted.status_code == 200, predicted.text


def test_bad_view_sql_predict_503(tmp_path: Path) -> None:
    config = _trained(tmp_path)
    config_path, home = tmp_path / "config.toml", config.storage.home
    config_path.write_text(BAD_SQL)
    daemon = start_daemon(config_path, home, tmp_path / "daemon.log")
    try:
        predicted = httpx.post(
            daemon.base_url + "/v1/models/late/predict", json={"rows": [KEYS_ROW]}
        )
    finally:
        stop_daemon(daemon)

    body = predicted.json()
    assert predicted.status_code == 503, predicted.text
    assert body["type"] == "ServingConfigError"
    assert "model 'late' cannot be served now" in body["error"]
    assert "invalid SQL of feature view 'weather'" in body["error"]
    assert "reload it (SIGHUP)" in body["error"]


def test_bad_view_sql_start_logs_one_line(tmp_path: Path) -> None:
    config = _trained(tmp_path)
    config_path, home = tmp_path / "config.toml", config.storage.home
    config_path.write_text(BAD_SQL)
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config_path, home, log)
    stop_daemon(daemon)

    text = log.read_text()
    failed = [line for line in text.splitlines() if "views load failed" in line]
    assert "Traceback" not in text
    assert len(failed) == 1, text
    assert "invalid SQL of feature view 'weather'" in failed[0]
    assert "tempp" in failed[0]
    assert "datasets with a version: flights, weather" in failed[0]


def test_bad_view_sql_train_error_once(tmp_path: Path) -> None:
    config = load_config_text(tmp_path, BAD_SQL)
    flights_csv, weather_csv = write_flights_week(tmp_path, days=2)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "flights", [flights_csv])
        ingest(catalog, "weather", [weather_csv])

    result = run_appliance(
        tmp_path / "config.toml", config.storage.home, "train", "late"
    )

    lines = result.stderr.splitlines()
    shown = [line for line in lines if "invalid SQL of feature view" in line]
    assert result.returncode != 0
    assert len(shown) == 1, result.stderr
    assert shown[0].startswith("error: ")
    assert "tempp" in shown[0]
    assert "datasets with a version: flights, weather" in shown[0]
    assert any("run closed" in line and "status=failed" in line for line in lines)


def test_view_failing_on_data_not_served(tmp_path: Path) -> None:
    # The SQL binds, so only running it finds the text that is not a number.
    failing = CONFIG.replace("temp FROM", "CAST(origin AS INTEGER) AS temp FROM")
    config = load_config_text(tmp_path, failing)
    flights_csv, weather_csv = write_flights_week(tmp_path, days=2)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "flights", [flights_csv])
        ingest(catalog, "weather", [weather_csv])
    features = FeatureServer(config)

    features.load()

    assert features.unserved() == {"late": ["weather"]}
    assert "Conversion Error" in features.failures["weather"].message
    with pytest.raises(ViewDataError, match="feature view 'weather' failed on the"):
        features.fill("late", [{"origin": "EWR", "time_hour": None}])
