"""The overfitting check: relative for errors in target units, absolute otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_support import train_on, write_config
from sklearn.datasets import load_diabetes
from support import run_appliance

from appliance.config import RELATIVE_OVERFIT_THRESHOLD, load_config

MODEL = """
[models.m]
dataset = "d"
target = "target"
task = "regression"
algorithm = "{algorithm}"
{extra}
"""


def _model(algorithm: str, extra: str = "") -> str:
    return MODEL.format(algorithm=algorithm, extra=extra)


def test_linear_regression_not_flagged(tmp_path: Path) -> None:
    diabetes = load_diabetes(as_frame=True, scaled=False).frame
    _, result = train_on(tmp_path, diabetes, _model("linear_regression"))
    metrics = result.metrics

    # The gap is several target units, far above 0.05, but a small share of
    # the holdout RMSE.
    assert metrics["overfit_gap"] > 1.0
    assert metrics["overfit_relative_gap"] == pytest.approx(
        metrics["overfit_gap"] / metrics["rmse"]
    )
    assert metrics["overfit_relative_gap"] < RELATIVE_OVERFIT_THRESHOLD
    assert metrics["overfit_flagged"] == 0.0


def test_boosted_trees_flagged_relative(tmp_path: Path) -> None:
    diabetes = load_diabetes(as_frame=True, scaled=False).frame
    model = _model("lightgbm", "params = {verbose = -1}")
    _, result = train_on(tmp_path, diabetes, model)
    metrics = result.metrics

    assert metrics["overfit_relative_gap"] > RELATIVE_OVERFIT_THRESHOLD
    assert metrics["overfit_flagged"] == 1.0


def test_set_threshold_applies_to_relative_gap(tmp_path: Path) -> None:
    diabetes = load_diabetes(as_frame=True, scaled=False).frame
    model = _model("lightgbm", 'metric = "mae"\noverfit_threshold = 0.99\n')
    _, result = train_on(tmp_path, diabetes, model)
    metrics = result.metrics

    assert metrics["overfit_gap"] > 0.99
    assert metrics["overfit_relative_gap"] == pytest.approx(
        metrics["overfit_gap"] / metrics["mae"]
    )
    assert metrics["overfit_flagged"] == 0.0


def test_unitless_metric_keeps_absolute_gap(tmp_path: Path) -> None:
    diabetes = load_diabetes(as_frame=True, scaled=False).frame
    _, result = train_on(tmp_path, diabetes, _model("lightgbm", 'metric = "r2"'))
    metrics = result.metrics

    assert "overfit_relative_gap" not in metrics
    assert metrics["overfit_gap"] == pytest.approx(metrics["train_r2"] - metrics["r2"])
    assert metrics["overfit_flagged"] == float(metrics["overfit_gap"] > 0.05)


def test_default_thresholds_by_metric(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            _model("lightgbm")
            + '[models.c]\ndataset = "d"\ntarget = "y"\ntask = "classification"\n',
        )
    )

    assert config.model("m").overfit_threshold is None
    assert config.model("m").overfit_limit == RELATIVE_OVERFIT_THRESHOLD
    assert config.model("c").overfit_limit == 0.05


def test_train_command_prints_relative_gap(tmp_path: Path) -> None:
    config = write_config(tmp_path, _model("lightgbm", "params = {verbose = -1}"))
    source = tmp_path / "diabetes.csv"
    load_diabetes(as_frame=True, scaled=False).frame.to_csv(source, index=False)
    home = tmp_path / "home"

    run_appliance(config, home, "ingest", "d", str(source))
    trained = run_appliance(config, home, "train", "m")

    assert trained.returncode == 0, trained.stderr
    (warning,) = [
        line for line in trained.stdout.splitlines() if line.startswith("warning:")
    ]
    assert "warning: overfitting: rmse " in warning
    assert "% of the holdout value, above overfit_threshold 0.2" in warning
