"""The daemon fills feature view columns of a request that carries only keys."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from appliance.config import load_config
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


def write_data(tmp_path: Path) -> tuple[Path, Path]:
    flights = ["origin,time_hour,distance,late"]
    weather = ["origin,time_hour,temp"]
    for day in range(1, 29):
        for hour in range(0, 24, 3):
            stamp = f"2013-02-{day:02d}T{hour:02d}:00:00Z"
            temp = float((day * 7 + hour) % 40)
            weather.append(f"EWR,{stamp},{temp}")
            flights.append(f"EWR,{stamp},{100 + hour * 10},{str(temp > 20).lower()}")
    flights_csv, weather_csv = tmp_path / "flights.csv", tmp_path / "weather.csv"
    flights_csv.write_text("\n".join(flights) + "\n")
    weather_csv.write_text("\n".join(weather) + "\n")
    return flights_csv, weather_csv


def test_predict_fills_features_from_keys(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(CONFIG)
    config = load_config(tmp_path / "config.toml")
    flights_csv, weather_csv = write_data(tmp_path)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "flights", [flights_csv])
        ingest(catalog, "weather", [weather_csv])
    train_model(config, "late")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appliance",
            "--config",
            str(tmp_path / "config.toml"),
            "serve",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "daemon.log").open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "daemon.log").read_text()
            try:
                if httpx.get(f"{base}/health", trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
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
            return response.json()["predictions"][0]["probabilities"]["true"]

        filled, given, leaked = proba(keys_only), proba(explicit), proba(later)
        missing = httpx.post(
            f"{base}/v1/models/late/predict",
            json={"rows": [{"time_hour": "2013-02-10T09:30:00Z", "distance": 1}]},
            trust_env=False,
        )
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=30)

    assert filled == given
    assert filled != leaked
    assert missing.status_code == 422
    assert "missing entity key 'origin'" in missing.json()["error"]
