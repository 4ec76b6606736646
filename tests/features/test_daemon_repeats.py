"""A planes row posted for a known tail number, through the running daemon."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
from support import (
    TAIL_FLIGHT_ROWS,
    load_config_text,
    run_appliance,
    start_daemon,
    stop_daemon,
    write_tail_flights,
)

from appliance.storage import Catalog, ingest
from appliance.training import train_model

CONFIG = """
[storage]
home = "home"

[ingest]
flush_rows = 1

[feature_views.planes]
sql = "SELECT tailnum, year AS year_built, seats FROM planes"
entities = ["tailnum"]

[models.late]
dataset = "flights"
target = "late"
task = "classification"
algorithm = "random_forest"
features = ["distance", "seats"]
feature_views = ["planes"]

[models.late.params]
n_estimators = 20
"""
FLUSH_TIMEOUT_SECONDS = 30.0


def test_posted_repeat_serves_and_trains(tmp_path: Path) -> None:
    config = load_config_text(tmp_path, CONFIG)
    flights_csv, planes_csv = write_tail_flights(tmp_path)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "flights", [flights_csv])
        ingest(catalog, "planes", [planes_csv])
    train_model(config, "late")
    rows_csv = tmp_path / "rows.csv"
    rows_csv.write_text("tailnum,distance\nN1,500\nN2,500\n")

    config_path, home = tmp_path / "config.toml", config.storage.home
    daemon = start_daemon(config_path, home, tmp_path / "daemon.log")
    base = daemon.base_url
    try:
        before = predict(base, {"tailnum": "N1", "distance": 500})
        posted = httpx.post(
            f"{base}/v1/datasets/planes/rows",
            json={"rows": [{"tailnum": "N1", "year": 2005, "seats": 999}]},
            trust_env=False,
        )
        flushed = wait_flushed(base)
        keys_only = wait_prediction(base, {"tailnum": "N1", "distance": 500}, 999)
        given = predict(base, {"tailnum": "N1", "distance": 500, "seats": 999})
        scored = tmp_path / "scored.parquet"
        batch = run_appliance(
            config_path, home, "predict", "late", str(rows_csv), str(scored)
        )
        trained = run_appliance(config_path, home, "train", "late")
    finally:
        stop_daemon(daemon)
    log = daemon.log.read_text(errors="replace")
    run_id = trained.stdout.split()[1].rstrip(":")
    shown = run_appliance(config_path, home, "runs", "show", run_id)

    assert posted.status_code == 202, posted.text
    assert flushed
    assert keys_only.status_code == 200, keys_only.text
    assert keys_only.json()["predictions"] == given.json()["predictions"]
    assert keys_only.json()["predictions"] != before.json()["predictions"]
    assert batch.returncode == 0, batch.stderr
    assert pq.read_table(scored).num_rows == 2
    assert trained.returncode == 0, trained.stderr
    split = (
        f"train_rows={TAIL_FLIGHT_ROWS * 4 // 5} holdout_rows={TAIL_FLIGHT_ROWS // 5}"
    )
    assert split in trained.stdout
    assert (
        "warning: feature view 'planes' has 1 repeated tailnum values (for example "
        "'N1')" in trained.stdout
    )
    assert shown.returncode == 0, shown.stderr
    (warning,) = json.loads(shown.stdout)["evaluation"]["warnings"]
    assert warning.startswith("feature view 'planes' has 1 repeated tailnum values")
    assert "feature view repeats entity keys view=planes keys=tailnum" in log
    assert "ArrowInvalid" not in log


def wait_flushed(base: str) -> bool:
    """Wait until the planes buffer was flushed once; return whether it was."""
    deadline = time.monotonic() + FLUSH_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        status = httpx.get(f"{base}/v1/datasets/planes/rows", trust_env=False)
        if status.json()["flushes"] >= 1:
            return True
        time.sleep(0.1)
    return False


def predict(base: str, row: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/models/late/predict", json={"rows": [row]}, trust_env=False
    )


def wait_prediction(base: str, row: dict[str, Any], seats: int) -> httpx.Response:
    """Predict `row` until it scores as with `seats`, once the views reload."""
    expected = predict(base, {**row, "seats": seats}).json()["predictions"]
    deadline = time.monotonic() + FLUSH_TIMEOUT_SECONDS
    response = predict(base, row)
    while time.monotonic() < deadline and (
        response.status_code != 200 or response.json()["predictions"] != expected
    ):
        time.sleep(0.1)
        response = predict(base, row)
    return response
