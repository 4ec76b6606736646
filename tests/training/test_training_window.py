"""Training on a time window, as retraining does, with and without a refit."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from pipeline_support import train_on

from appliance.registry import card_html
from appliance.signing import trusted_keys
from appliance.storage import Catalog
from appliance.training import TrainingWindow, train_model
from appliance.training._frame import load_frame

MODEL = """
[models.m]
dataset = "d"
target = "y"
task = "regression"
algorithm = "random_forest"
features = ["a"]
event_timestamp = "t"
params = { n_estimators = 5 }
"""

ROWS = 240
"""Rows, one per hour from 2024-03-01. The last 2 of the 10 days are the holdout."""
WINDOW = TrainingWindow(
    holdout_start=datetime(2024, 3, 9, tzinfo=UTC),
    end=datetime(2024, 3, 11, tzinfo=UTC),
)


def _data() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    data = pd.DataFrame(
        {
            "a": rng.normal(size=ROWS),
            "t": pd.date_range("2024-03-01", periods=ROWS, freq="1h", tz="UTC"),
        }
    )
    data["y"] = 2 * data["a"] + rng.normal(scale=0.1, size=ROWS)
    return data


def _card_text(config, reference: str) -> str:
    with Catalog(config.storage.home, read_only=True) as catalog:
        page = card_html(catalog, "m", reference, trusted_keys(config))
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_refit_frame_keeps_each_row_once(tmp_path):
    config, _ = train_on(tmp_path, _data(), MODEL)
    refit = dataclasses.replace(WINDOW, refit=True)
    with Catalog(config.storage.home, read_only=True) as catalog:
        split = load_frame(catalog, config.model("m"), window=WINDOW)
        frame = load_frame(catalog, config.model("m"), window=refit)

    assert len(split.y_train) == 192
    assert len(split.y_test) == 48
    assert len(frame.y_train) == ROWS
    assert len(frame.y_test) == 48
    assert frame.x_train["a"].is_unique
    assert set(frame.x_test["a"]) <= set(frame.x_train["a"])


def test_refit_version_records_reference(tmp_path):
    config, _ = train_on(tmp_path, _data(), MODEL)
    challenger = train_model(config, "m", window=WINDOW)
    refit_window = dataclasses.replace(
        WINDOW, refit=True, reference_metrics=challenger.metrics
    )
    refit = train_model(config, "m", window=refit_window)

    refit_card = _card_text(config, str(refit.model_version.version))
    challenger_card = _card_text(config, str(challenger.model_version.version))
    assert refit.rows_train == ROWS
    assert refit.rows_test == 48
    assert "holdout split" not in refit_card
    assert "row filter" not in refit_card
    assert "training window event times from the first row to 2024-03-09" in (
        refit_card
    )
    assert "holdout window event times from 2024-03-09" in refit_card
    expected = f"out-of-sample rmse was {challenger.metrics['rmse']:.4g}"
    assert "in-sample: this refit trained on the holdout rows too" in refit_card
    assert expected in refit_card
    assert "in-sample" not in challenger_card
    assert "holdout window" in challenger_card
