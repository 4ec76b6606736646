"""The batch drift check of a version trained on a time window.

Feature ``a`` is near 0 in the first five days and near 8 in the last five.
The model's ``where`` selects the first five days, and the retraining window
the last five, so only a check against the window's rows finds the logged
rows, near 8 too, undrifted.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from pipeline_support import train_on

from appliance.monitoring import run_drift_check
from appliance.predictions import create_table
from appliance.storage import Catalog
from appliance.training import TrainingWindow, train_model

MODEL = """
[monitoring]
min_samples = 20

[models.m]
dataset = "d"
target = "y"
task = "regression"
algorithm = "random_forest"
features = ["a"]
event_timestamp = "t"
where = "t < TIMESTAMPTZ '2024-03-06 00:00:00+00'"
params = { n_estimators = 5 }
"""

ROWS = 240
"""Rows, one per hour from 2024-03-01."""
WINDOW = TrainingWindow(
    start=datetime(2024, 3, 6, tzinfo=UTC),
    holdout_start=datetime(2024, 3, 9, tzinfo=UTC),
    end=datetime(2024, 3, 11, tzinfo=UTC),
)


def _data() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    shift = np.where(np.arange(ROWS) < ROWS // 2, 0.0, 8.0)
    data = pd.DataFrame(
        {
            "a": rng.normal(size=ROWS) + shift,
            "t": pd.date_range("2024-03-01", periods=ROWS, freq="1h", tz="UTC"),
        }
    )
    data["y"] = 2 * data["a"] + rng.normal(scale=0.1, size=ROWS)
    return data


def _log_inputs(home: Path, values: np.ndarray) -> None:
    with Catalog(home) as catalog:
        create_table(catalog.db)
        for i, value in enumerate(values):
            catalog.db.execute(
                "INSERT INTO predictions (request_id, row_index, model, version, "
                "predicted_at, input, output, latency_ms) "
                "VALUES (?, 0, 'm', 2, now(), ?, '{}', 1.0)",
                [f"r{i}", json.dumps({"a": float(value)})],
            ).fetchall()


def test_window_version_compared_with_window(tmp_path: Path) -> None:
    config, first = train_on(tmp_path, _data(), MODEL)
    windowed = train_model(config, "m", window=WINDOW)
    _log_inputs(config.storage.home, np.random.default_rng(1).normal(8.0, 1.0, 100))

    check = run_drift_check(config, "m")

    assert first.model_version.version == 1
    assert windowed.model_version.version == 2
    assert check.rows == 100
    assert check.report is not None
    assert check.report.tested == 1
    assert check.report.drifted == []
