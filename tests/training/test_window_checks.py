"""Split checks of a time window, as retraining trains on one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pipeline_support import write_config

from appliance.config import Config, load_config
from appliance.errors import TrainingError
from appliance.storage import Catalog, ingest, list_runs
from appliance.training import TrainingWindow, train_model

MODEL = """
[models.m]
dataset = "d"
target = "y"
task = "{task}"
algorithm = "{algorithm}"
features = ["a"]
event_timestamp = "t"
params = {params}
"""

ROWS = 240
"""Rows, one per hour from 2024-03-01. The last 2 of the 10 days are the holdout."""
WINDOW = TrainingWindow(
    holdout_start=datetime(2024, 3, 9, tzinfo=UTC),
    end=datetime(2024, 3, 11, tzinfo=UTC),
)
HOLDOUT = "t from 2024-03-09T00:00:00+00:00 to 2024-03-11T00:00:00+00:00, 2 days"


def _rows(task: str) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    data = pd.DataFrame(
        {
            "a": rng.normal(size=ROWS),
            "t": pd.date_range("2024-03-01", periods=ROWS, freq="1h", tz="UTC"),
        }
    )
    if task == "classification":
        data["y"] = np.where(data["a"] > 0, "yes", "no")
    else:
        data["y"] = 2 * data["a"]
    return data


def _in_holdout(data: pd.DataFrame) -> pd.Series:
    return data["t"] >= pd.Timestamp(WINDOW.holdout_start)


def _config(
    tmp_path: Path, data: pd.DataFrame, task: str, algorithm: str, extra: str = ""
) -> Config:
    """Ingest `data` as dataset ``d`` and return the config of model ``m``."""
    params = {
        "random_forest": "{ n_estimators = 5 }",
        "lightgbm": "{ n_estimators = 5, min_child_samples = 2, verbose = -1 }",
        "logistic_regression": "{}",
    }[algorithm]
    model = MODEL.format(task=task, algorithm=algorithm, params=params) + extra
    config = load_config(write_config(tmp_path, model))
    source = tmp_path / "d.parquet"
    data.to_parquet(source, index=False)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "d", [source])
    return config


def _rejected(config: Config, window: TrainingWindow = WINDOW) -> str:
    """Train on `window`, check that nothing registered, return the error."""
    with pytest.raises(TrainingError) as caught:
        train_model(config, "m", window=window)
    with Catalog(config.storage.home, read_only=True) as catalog:
        (run,) = list_runs(catalog, "m")
    assert run.status == "failed"
    assert run.model_version is None
    return str(caught.value)


def test_window_one_holdout_row_rejected(tmp_path: Path) -> None:
    data = _rows("regression")
    data = pd.concat([data[~_in_holdout(data)], data[_in_holdout(data)].head(1)])
    message = _rejected(_config(tmp_path, data, "regression", "random_forest"))

    assert "retraining window of model 'm' has 192 training and 1 holdout rows" in (
        message
    )
    assert f"too few holdout rows ({HOLDOUT}) to measure" in message
    assert "scoring needs at least 2" in message
    assert "raise holdout_days in [models.m.retrain]" in message


def test_window_one_training_row_rejected(tmp_path: Path) -> None:
    data = _rows("regression")
    data = pd.concat([data[~_in_holdout(data)].tail(1), data[_in_holdout(data)]])
    window = TrainingWindow(
        WINDOW.holdout_start, WINDOW.end, datetime(2024, 3, 1, tzinfo=UTC)
    )
    message = _rejected(_config(tmp_path, data, "regression", "lightgbm"), window)

    assert "has 1 training and 48 holdout rows, fewer training rows" in message
    assert (
        "(t from 2024-03-01T00:00:00+00:00 up to 2024-03-09T00:00:00+00:00, 8 days)"
        in message
    )
    assert "than the minimum of 2" in message
    assert "send older labelled rows, or raise window_days in" in message


def test_window_training_class_missing_named(tmp_path: Path) -> None:
    # Without this check LightGBM fits one class, and the export fails its
    # parity check with a probability difference of 35.5, which hides the cause.
    data = _rows("classification")
    data.loc[~_in_holdout(data), "y"] = "yes"
    message = _rejected(_config(tmp_path, data, "classification", "lightgbm"))

    assert "has 192 training and 48 holdout rows" in message
    assert "training rows (every t before 2024-03-09T00:00:00+00:00)" in message
    assert "have no row of class 'no'" in message
    assert "send labelled rows of that class" in message


def test_window_holdout_class_missing_named(tmp_path: Path) -> None:
    data = _rows("classification")
    data.loc[_in_holdout(data), "y"] = "yes"
    config = _config(tmp_path, data, "classification", "logistic_regression")
    message = _rejected(config)

    assert f"holdout rows ({HOLDOUT}) have no row of class 'no'" in message
    assert "so its metric roc_auc cannot be measured" in message
    assert "raise holdout_days in [models.m.retrain]" in message


def test_window_holdout_class_policy_metric(tmp_path: Path) -> None:
    # The model's metric does not need every class, but retraining's ROC AUC
    # needs two classes in the holdout.
    data = _rows("classification")
    data.loc[_in_holdout(data), "y"] = "yes"
    extra = 'metric = "accuracy"\n'
    config = _config(tmp_path, data, "classification", "logistic_regression", extra)
    message = _rejected(config)

    assert "so its retraining metric roc_auc cannot be measured" in message


def test_window_holdout_accuracy_trains(tmp_path: Path) -> None:
    data = _rows("classification")
    data.loc[_in_holdout(data), "y"] = "yes"
    extra = 'metric = "accuracy"\n[models.m.retrain]\nmetric = "accuracy"\n'
    config = _config(tmp_path, data, "classification", "logistic_regression", extra)
    result = train_model(config, "m", window=WINDOW)

    assert result.rows_test == 48
    assert result.metrics["accuracy"] >= 0
