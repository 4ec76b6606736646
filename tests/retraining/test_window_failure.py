"""A retraining whose window cannot measure the challenger is a failed run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from pipeline_support import train_on

from appliance.monitoring import MonitoringStore
from appliance.retraining._job import run_offline
from appliance.storage import Catalog, list_runs

MODEL = """
[models.m]
dataset = "d"
target = "y"
task = "classification"
algorithm = "logistic_regression"
features = ["a"]
event_timestamp = "t"
where = "t < TIMESTAMP '2024-03-09'"
[models.m.retrain]
trigger = "drift"
holdout_days = 2
"""


def _rows() -> pd.DataFrame:
    """Return hourly rows from 2024-03-01 whose last 2 days have one class."""
    rng = np.random.default_rng(0)
    data = pd.DataFrame(
        {
            "a": rng.normal(size=240),
            "t": pd.date_range("2024-03-01", periods=240, freq="1h", tz="UTC"),
        }
    )
    data["y"] = np.where(data["a"] > 0, "yes", "no")
    data.loc[data["t"] >= pd.Timestamp("2024-03-09", tz="UTC"), "y"] = "yes"
    return data


def test_one_class_holdout_run_failed(tmp_path: Path) -> None:
    config, champion = train_on(tmp_path, _rows(), MODEL)
    as_of = datetime(2024, 3, 11, tzinfo=UTC)
    record = run_offline(config, "m", as_of=as_of, force=True)

    home = config.storage.home
    with MonitoringStore(home) as store:
        (stored,) = store.retrain_history("m")
    with Catalog(home, read_only=True) as catalog:
        runs = list_runs(catalog, "m")
    assert record["outcome"] == "failed"
    assert record["challenger_version"] is None
    assert record["reason"].startswith(
        "challenger not trained: retraining window of model 'm' has "
    )
    assert (
        "holdout rows (t from 2024-03-09T00:00:00+00:00 to "
        "2024-03-11T00:00:00+00:00, 2 days) have no row of class 'no'"
    ) in record["reason"]
    assert "raise holdout_days in [models.m.retrain]" in record["reason"]
    assert stored["outcome"] == "failed"
    assert stored["reason"] == record["reason"]
    assert [run.status for run in runs] == ["failed", "finished"]
    assert runs[1].model_version == champion.model_version.version


def test_one_day_holdout_singular(tmp_path: Path) -> None:
    config, _ = train_on(
        tmp_path, _rows(), MODEL.replace("holdout_days = 2", "holdout_days = 1")
    )
    record = run_offline(config, "m", as_of=datetime(2024, 3, 11), force=True)

    assert record["outcome"] == "failed"
    assert "2024-03-11T00:00:00+00:00, 1 day)" in record["reason"]
    assert "1 days" not in record["reason"]


def test_window_without_rows_leads(tmp_path: Path) -> None:
    model = MODEL.replace("where = \"t < TIMESTAMP '2024-03-09'\"\n", "")
    config, _ = train_on(tmp_path, _rows(), model)
    # No as_of: the wall clock's time, years after the data's event times.
    record = run_offline(config, "m", force=True)

    reason = record["reason"]
    assert record["outcome"] == "failed"
    assert reason.startswith(
        "challenger not trained: model 'm' has no labelled rows with t from "
    )
    assert ", the retraining window, in dataset 'd' version " in reason
    assert "check 'where'" not in reason
    assert "give an as_of time within them (--as-of" in reason
