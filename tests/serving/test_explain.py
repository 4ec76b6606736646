"""Explanations over HTTP: occlusion contributions from a running daemon."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from support import load_config_text, run_appliance, start_daemon, stop_daemon

from appliance.config import Config
from appliance.storage import Catalog, ingest
from appliance.training import train_model

# y depends on x (slope 5), on color red (+10) and on the sensor's gain (slope
# 4), which a feature view fills from the entity key. noise adds nothing, and
# high is x > 0.8.
CONFIG = """
log_level = "WARNING"

[storage]
home = "home"

[feature_views.sensors]
sql = "SELECT sensor, gain FROM sensors"
entities = ["sensor"]

[models.level]
dataset = "points"
target = "y"
task = "regression"
algorithm = "linear_regression"
features = ["x", "color", "noise", "gain"]
categorical = ["color"]
feature_views = ["sensors"]

[models.high]
dataset = "points"
target = "high"
task = "classification"
algorithm = "lightgbm"
features = ["x", "color", "noise"]
categorical = ["color"]

[models.high.params]
n_estimators = 30
min_child_samples = 5
"""

GAINS = {"s1": 2.0, "s2": -2.0, "s3": 0.0}


def _points(rows: int = 600, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sensor = rng.choice(list(GAINS), size=rows)
    x = rng.normal(0.0, 1.0, size=rows).round(3)
    color = rng.choice(["blue", "blue", "green", "red"], size=rows)
    noise = rng.normal(0.0, 1.0, size=rows).round(3)
    gain = np.array([GAINS[s] for s in sensor])
    y = 5 * x + 10 * (color == "red") + 4 * gain + rng.normal(0, 0.1, size=rows)
    return pd.DataFrame(
        {
            "sensor": sensor,
            "x": x,
            "color": color,
            "noise": noise,
            "y": y.round(4),
            "high": x > 0.8,
        }
    )


@pytest.fixture(scope="module")
def explained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, str]]:
    """Train both models and run a daemon over them; yield the config and URL."""
    folder = tmp_path_factory.mktemp("explain")
    config = load_config_text(folder, CONFIG)
    points, sensors = folder / "points.csv", folder / "sensors.csv"
    _points().to_csv(points, index=False)
    pd.DataFrame({"sensor": list(GAINS), "gain": list(GAINS.values())}).to_csv(
        sensors, index=False
    )
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "points", [points])
        ingest(catalog, "sensors", [sensors])
    train_model(config, "level")
    train_model(config, "high")
    daemon = start_daemon(config.path, config.storage.home, folder / "daemon.log")
    try:
        yield config, daemon.base_url
    finally:
        stop_daemon(daemon)


def _post(base: str, model: str, rows: list[dict]) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/models/{model}/explain",
        json={"rows": rows},
        trust_env=False,
        timeout=30,
    )


def test_explain_regression_signs(explained: tuple[Config, str]) -> None:
    _, base = explained
    rows = [
        {"sensor": "s1", "x": 2.0, "color": "red", "noise": 0.0},
        {"sensor": "s2", "x": -2.0, "color": "blue", "noise": 0.0},
    ]

    response = _post(base, "level", rows)
    predicted = httpx.post(
        f"{base}/v1/models/level/predict", json={"rows": rows}, trust_env=False
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["method"] == "occlusion"
    assert "reference value" in body["method_description"]
    assert body["reference"]["color"] == "blue"
    assert abs(body["reference"]["x"]) < 0.2
    first, second = body["explanations"]
    assert first["explained"] == "value"
    assert first["value"] == predicted.json()["predictions"][0]["value"]
    assert first["prediction"] == pytest.approx(first["value"])
    # A linear model: occluding x moves the value by 5 * (x - median).
    slope = 5 * (2.0 - body["reference"]["x"])
    assert first["contributions"]["x"] == pytest.approx(slope, rel=0.05)
    assert second["contributions"]["x"] < -9
    assert first["contributions"]["color"] == pytest.approx(10, rel=0.05)
    assert second["contributions"]["color"] == 0
    # The gain comes from the feature view through the entity key alone.
    gain_reference = body["reference"]["gain"]
    assert first["contributions"]["gain"] == pytest.approx(
        4 * (2.0 - gain_reference), abs=0.3
    )
    assert second["contributions"]["gain"] < 0
    assert abs(first["contributions"]["noise"]) < 0.2
    assert set(first["contributions"]) == {"x", "color", "noise", "gain"}


def test_explain_classifier_signs(explained: tuple[Config, str]) -> None:
    _, base = explained
    rows = [
        {"x": 2.5, "color": "green", "noise": 0.0},
        {"x": -2.5, "color": "green", "noise": 0.0},
    ]

    response = _post(base, "high", rows)

    assert response.status_code == 200, response.text
    high, low = response.json()["explanations"]
    assert high["label"] is True
    assert high["explained"] == "probability of true"
    assert high["prediction"] == pytest.approx(high["probabilities"]["true"])
    # The reference x (median near 0) is below the 0.8 boundary, so setting
    # x to it turns the high row's prediction but not the low row's.
    assert high["contributions"]["x"] > 0.5
    assert abs(high["contributions"]["noise"]) < 0.2
    assert low["label"] is False
    assert low["explained"] == "probability of false"
    assert abs(low["contributions"]["x"]) < 0.2


def test_explain_limits_and_errors(explained: tuple[Config, str]) -> None:
    _, base = explained
    row = {"x": 0.5, "color": "red", "noise": 0.0}

    too_many = _post(base, "high", [row] * 101)
    unknown = _post(base, "nope", [row])
    empty = _post(base, "high", [])
    missing = _post(base, "high", [{"x": 0.5}])

    assert too_many.status_code == 413, too_many.text
    assert "limit of 100 rows of one explain request" in too_many.json()["error"]
    assert unknown.status_code == 404, unknown.text
    assert "model 'nope' is not served" in unknown.json()["error"]
    assert empty.status_code == 422, empty.text
    assert missing.status_code == 422, missing.text
    assert "color" in missing.json()["error"]


def test_explain_pinned_version(explained: tuple[Config, str]) -> None:
    _, base = explained
    row = {"x": 0.5, "color": "red", "noise": 0.0}
    url = f"{base}/v1/models/high/explain"

    body = {"rows": [row]}
    first = httpx.post(url, params={"version": 1}, json=body, trust_env=False)
    absent = httpx.post(url, params={"version": 7}, json=body, trust_env=False)

    assert first.status_code == 200, first.text
    assert first.json()["version"] == 1
    assert absent.status_code == 404, absent.text
    assert "version 7" in absent.json()["error"]


def test_explain_cli_prints_contributions(
    explained: tuple[Config, str], tmp_path: Path
) -> None:
    config, _ = explained
    source = tmp_path / "rows.csv"
    source.write_text("sensor,x,color,noise\ns1,2.0,red,0.0\n", encoding="utf-8")

    result = run_appliance(
        config.path, config.storage.home, "explain", "level", str(source), "--json"
    )

    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    explanation = json.loads(line)
    assert explanation["row"] == 0
    assert explanation["contributions"]["x"] > 9
    assert explanation["contributions"]["color"] > 9


def test_explain_cli_name_at_version(
    explained: tuple[Config, str], tmp_path: Path
) -> None:
    config, _ = explained
    source = tmp_path / "rows.csv"
    source.write_text("sensor,x,color,noise\ns1,2.0,red,0.0\n", encoding="utf-8")

    def explain(reference: str) -> subprocess.CompletedProcess[str]:
        home = config.storage.home
        return run_appliance(config.path, home, "explain", reference, str(source))

    pinned = explain("level@1")
    absent = explain("level@7")
    empty = explain("level@")

    assert pinned.returncode == 0, pinned.stderr
    assert pinned.stdout.startswith("level version 1, method occlusion")
    assert absent.returncode == 1
    assert "version 7" in absent.stderr
    assert empty.returncode == 2
    assert "nothing follows the '@'" in empty.stderr


def test_explain_cli_without_daemon(tmp_path: Path) -> None:
    config = load_config_text(tmp_path, CONFIG)
    points = tmp_path / "points.csv"
    _points().to_csv(points, index=False)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "points", [points])
    train_model(config, "high")
    source = tmp_path / "rows.csv"
    source.write_text("x,color,noise\n2.5,green,\n", encoding="utf-8")
    too_many = tmp_path / "many.csv"
    too_many.write_text("x,color,noise\n" + "1,red,0\n" * 101, encoding="utf-8")

    shown = run_appliance(
        config.path, config.storage.home, "explain", "high", str(source)
    )
    rejected = run_appliance(
        config.path, config.storage.home, "explain", "high", str(too_many)
    )
    pinned = run_appliance(
        config.path, config.storage.home, "explain", "high@1", str(source)
    )

    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("high version 1, method occlusion: contribution =")
    assert lines[1].startswith("row 0: True (probability of true ")
    # Contributions are listed by size, so x, which decides the label, is first.
    assert lines[2].split()[0] == "x"
    assert float(lines[2].split()[1]) > 0.5
    assert rejected.returncode == 1
    assert "above the limit of 100 rows of one explain request" in rejected.stderr
    assert pinned.returncode == 0, pinned.stderr
    assert pinned.stdout == shown.stdout
