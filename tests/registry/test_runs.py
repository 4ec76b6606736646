"""Run records: complete on success, failed and empty on error, artifacts checked."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.config import Config
from appliance.errors import IntegrityError, TrainingError
from appliance.storage import (
    INTERRUPTED,
    Catalog,
    RunLog,
    RunResult,
    fail_run,
    finish_run,
    get_run,
    list_artifacts,
    list_runs,
    metric_series,
    read_artifact,
    start_run,
)
from appliance.storage import _runs as runs_module
from appliance.storage._blobs import blob_path
from appliance.training import train_model

CLASSIFICATION_METRICS = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "f1_macro",
    "calibration_error",
)


def test_training_failure_recorded_as_failed(trips: Callable[[str], Config]) -> None:
    config = trips(
        """
        [models.broken]
        dataset = "trips"
        target = "late"
        task = "classification"
        where = "no_such_column > 1"
        """
    )

    with pytest.raises(TrainingError, match="invalid 'where'"):
        train_model(config, "broken")

    with Catalog(config.storage.home, read_only=True) as catalog:
        (run,) = list_runs(catalog, "broken")
        artifacts = list_artifacts(catalog, run.run_id)
        series = metric_series(catalog, run.run_id)
    assert run.status == "failed"
    assert run.error is not None and "no_such_column" in run.error
    assert run.finished_at is not None
    assert run.duration_seconds is not None and run.duration_seconds >= 0
    assert run.metrics is None
    assert run.model_version is None
    assert run.evaluation is None
    assert artifacts == []
    assert series == {}
    assert run.params["algorithm"] == "lightgbm"


def test_failed_run_drops_logged_metrics(tmp_path: Path) -> None:
    with Catalog(tmp_path) as catalog:
        run_id = start_run(catalog, "m", "d", {"a": 1}, "test")
        log = RunLog(catalog, run_id)
        log.log_metric("loss", 0.5, step=1)
        log.log_artifact("note.txt", b"hello", "text/plain")
        fail_run(catalog, run_id, "ValueError: boom")

        run = get_run(catalog, run_id)
        assert run.status == "failed"
        assert run.error == "ValueError: boom"
        assert metric_series(catalog, run_id) == {}
        assert list_artifacts(catalog, run_id) == []


def test_finished_run_commits_log(tmp_path: Path) -> None:
    with Catalog(tmp_path) as catalog:
        run_id = start_run(catalog, "m", "d", {"a": 1}, "test", tags={"team": "ops"})
        log = RunLog(catalog, run_id)
        for step in range(3):
            log.log_metric("loss", 1.0 / (step + 1), step=step)
        digest = log.log_artifact("note.txt", b"hello", "text/plain")
        finish_run(catalog, run_id, RunResult("v1", {"auc": 0.9}), log)

        run = get_run(catalog, run_id)
        assert run.status == "finished"
        assert run.metrics == {"auc": 0.9}
        assert run.tags == {"team": "ops"}
        assert metric_series(catalog, run_id)["loss"] == [
            (0, 1.0),
            (1, 0.5),
            (2, 1.0 / 3),
        ]
        assert read_artifact(catalog, run_id, "note.txt") == b"hello"

        path = blob_path(catalog.blobs_dir, digest)
        path.write_bytes(b"hellO")
        with pytest.raises(IntegrityError, match="sha256"):
            read_artifact(catalog, run_id, "note.txt")


def test_interrupted_finish_closes_as_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupt inside `finish_run` rolls its transaction back, so the
    `fail_run` that training calls next is stored."""

    def interrupt(*args: object) -> None:
        raise KeyboardInterrupt

    with Catalog(tmp_path) as catalog:
        run_id = start_run(catalog, "m", "d", {"a": 1}, "test")
        log = RunLog(catalog, run_id)
        log.log_metric("loss", 0.5, step=1)
        monkeypatch.setattr(runs_module, "_insert_log", interrupt)
        with pytest.raises(KeyboardInterrupt):
            finish_run(catalog, run_id, RunResult("v1", {"auc": 0.9}), log)
        fail_run(catalog, run_id, "KeyboardInterrupt", INTERRUPTED)

    with Catalog(tmp_path, read_only=True) as catalog:
        run = get_run(catalog, run_id)
    assert run.status == "interrupted"
    assert run.error == "KeyboardInterrupt"
    assert run.metrics is None


def test_run_of_dead_process_closed_as_interrupted(tmp_path: Path) -> None:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(ended.stdout)
    with Catalog(tmp_path) as catalog:
        stale = start_run(catalog, "m", "d", {}, "test")
        catalog.db.execute(
            "UPDATE runs SET pid = ? WHERE run_id = ?", [dead_pid, stale]
        )

        start_run(catalog, "m", "d", {}, "test")

        run = get_run(catalog, stale)
        assert run.status == "interrupted"
        assert run.error == (
            f"interrupted: process {dead_pid} ended before the run was closed"
        )


def test_run_of_dead_process_listed_as_interrupted(tmp_path: Path) -> None:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(ended.stdout)
    with Catalog(tmp_path) as catalog:
        stale = start_run(catalog, "m", "d", {}, "test")
        alive = start_run(catalog, "m", "d", {}, "test")
        catalog.db.execute(
            "UPDATE runs SET pid = ? WHERE run_id = ?", [dead_pid, stale]
        )

    # A read-only reader, such as `appliance runs list` without a daemon,
    # cannot close the run but must not show it as running.
    with Catalog(tmp_path, read_only=True) as catalog:
        listed = {run.run_id: run for run in list_runs(catalog)}
        shown = get_run(catalog, stale)
    assert listed[stale].status == "interrupted"
    assert listed[stale].error == (
        f"interrupted: process {dead_pid} ended before the run was closed"
    )
    assert shown.status == "interrupted"
    assert listed[alive].status == "running"


def test_training_records_every_field(trips: Callable[[str], Config]) -> None:
    config = trips(
        """
        [models.late.cv]
        method = "stratified"
        folds = 3

        [models.late.tags]
        owner = "ops"
        """
    )

    result = train_model(config, "late")

    with Catalog(config.storage.home, read_only=True) as catalog:
        run = get_run(catalog, result.run_id)
        artifacts = {a["name"] for a in list_artifacts(catalog, run.run_id)}
        series = metric_series(catalog, run.run_id)
    assert run.status == "finished"
    assert run.kind == "train"
    assert run.dataset_version == result.dataset_version
    assert run.model_version == result.model_version.version
    assert run.code_version.startswith(("git:", "edge-appliance"))
    assert run.tags == {"owner": "ops"}
    assert run.host
    assert run.duration_seconds is not None and run.duration_seconds > 0
    assert {"python", "scikit-learn", "lightgbm", "onnxruntime"} <= set(run.packages)
    # LightGBM defaults the config leaves out are recorded too.
    assert run.params["num_leaves"] == 7
    assert run.params["min_child_samples"] == 20
    assert run.params["boosting_type"] == "gbdt"
    assert run.metrics is not None
    for name in CLASSIFICATION_METRICS:
        assert name in run.metrics, name
        assert f"cv_{name}_mean" in run.metrics, name
    assert run.folds is not None and len(run.folds) == 3
    assert all("roc_auc" in fold for fold in run.folds)
    assert len(series["fold_roc_auc"]) == 3
    assert run.evaluation is not None
    assert run.evaluation["confusion_matrix"] and len(run.evaluation["classes"]) == 2
    assert set(run.evaluation["per_class"]) == {"False", "True"}
    assert sum(run.evaluation["calibration"]["count"]) == result.rows_test
    assert set(run.evaluation["segments"]["carrier"]) == {"AA", "B6", "UA"}
    assert {
        "roc.png",
        "pr.png",
        "calibration.png",
        "confusion_matrix.png",
        "feature_importance.png",
    } <= artifacts


@pytest.mark.parametrize(("threshold", "flagged"), [(0.0, 1.0), (1.0, 0.0)])
def test_overfit_gap_flagged_above_threshold(
    trips: Callable[[str], Config], threshold: float, flagged: float
) -> None:
    config = trips(
        f"""
        [models.gap]
        dataset = "trips"
        target = "late"
        task = "classification"
        algorithm = "random_forest"
        overfit_threshold = {threshold}
        params = {{n_estimators = 10, n_jobs = 1}}
        """
    )

    metrics = train_model(config, "gap").metrics

    # A forest of deep trees scores near 1.0 on its own training rows.
    assert metrics["train_roc_auc"] > metrics["roc_auc"]
    assert metrics["overfit_gap"] == pytest.approx(
        metrics["train_roc_auc"] - metrics["roc_auc"]
    )
    assert metrics["overfit_flagged"] == flagged


def test_doctests_of_metric_helpers() -> None:
    import doctest

    from appliance.cli import _runs
    from appliance.training import _metrics, _validation

    for module in (_metrics, _validation, _runs):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__
        assert result.attempted > 0, module.__name__


def test_regression_run_metrics_and_plots(trips: Callable[[str], Config]) -> None:
    config = trips(
        """
        [models.distance]
        dataset = "trips"
        target = "distance"
        task = "regression"
        algorithm = "lightgbm"
        features = ["hour", "carrier"]
        categorical = ["carrier"]
        segments = ["carrier"]
        params = {n_estimators = 10, n_jobs = 1}

        [models.distance.split]
        method = "time"
        column = "hour"

        [models.distance.cv]
        method = "time"
        folds = 3
        """
    )

    result = train_model(config, "distance")

    with Catalog(config.storage.home, read_only=True) as catalog:
        run = get_run(catalog, result.run_id)
        artifacts = {a["name"] for a in list_artifacts(catalog, run.run_id)}
    assert run.metrics is not None
    for name in ("mae", "rmse", "r2", "mape", "cv_rmse_mean", "train_rmse"):
        assert name in run.metrics, name
    assert run.metrics["overfit_gap"] == pytest.approx(
        run.metrics["rmse"] - run.metrics["train_rmse"]
    )
    assert run.folds is not None and len(run.folds) == 3
    # Time-series folds grow: each trains on every row before its validation rows.
    assert [f["rows_train"] for f in run.folds] == sorted(
        f["rows_train"] for f in run.folds
    )
    assert run.evaluation is not None
    assert set(run.evaluation["segments"]["carrier"]) == {"AA", "B6", "UA"}
    assert {"residuals.png", "feature_importance.png"} <= artifacts
    assert "roc.png" not in artifacts


def test_multiclass_run_details(trips: Callable[[str], Config]) -> None:
    config = trips(
        """
        [models.carrier]
        dataset = "trips"
        target = "carrier"
        task = "classification"
        algorithm = "logistic_regression"
        features = ["hour", "distance"]
        """
    )

    result = train_model(config, "carrier")

    with Catalog(config.storage.home, read_only=True) as catalog:
        run = get_run(catalog, result.run_id)
    assert run.metrics is not None
    for name in CLASSIFICATION_METRICS:
        assert name in run.metrics, name
    assert run.evaluation is not None
    assert run.evaluation["classes"] == ["AA", "B6", "UA"]
    matrix = run.evaluation["confusion_matrix"]
    assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
    assert sum(map(sum, matrix)) == result.rows_test
    assert set(run.evaluation["per_class"]) == {"AA", "B6", "UA"}
