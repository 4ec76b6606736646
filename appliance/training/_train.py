"""Training end to end: frame, search, fit, evaluate, export, register, record.

The run is recorded as running before any work and closed once: finished with
every result in one transaction, or failed with the error (an interrupt
included) and no partial results. A search records each candidate as a child
run of the training run.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from appliance.config import Config, FeatureViewConfig, ModelConfig
from appliance.errors import ExportError, TrainingError, TrainingStopped
from appliance.serving import OnnxModel
from appliance.signing import version_signer
from appliance.storage import (
    FAILED,
    INTERRUPTED,
    Catalog,
    ModelVersion,
    RunLog,
    RunResult,
    Signer,
    fail_run,
    finish_run,
    register_version,
    start_run,
)
from appliance.training._data_checks import (
    check_frame,
    check_measured,
    check_window_frame,
)
from appliance.training._environment import code_version, package_versions
from appliance.training._evaluate import evaluate
from appliance.training._export import (
    check_derived,
    input_schema,
    parity,
    parity_message,
    probe_rows,
    to_onnx,
    training_inputs,
)
from appliance.training._frame import TrainingFrame, TrainingWindow, load_frame
from appliance.training._metrics import overfit_gap
from appliance.training._params import check_params
from appliance.training._pipeline import (
    build_pipeline,
    estimator_class,
    estimator_params,
    fit_errors,
)
from appliance.training._reference import reference_values
from appliance.training._search import SearchOutcome, search
from appliance.training._stop import StopCheck
from appliance.training._validation import (
    check_fold_classes,
    cross_validate,
    summarize,
)

logger = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-5
"""Largest ONNX-to-native difference in probability (or in value over
max(1, |value|)) accepted."""


@dataclass(frozen=True)
class TrainResult:
    """Outcome of a successful training."""

    run_id: str
    model_version: ModelVersion
    dataset_version: str
    metrics: dict[str, float]
    parity: float
    rows_train: int
    rows_test: int
    trials: int = 0
    """Child runs recorded by the search; 0 without a search."""
    warnings: list[str] = field(default_factory=list)
    """Problems of the data that training worked around, such as a feature
    view's repeated keys, and limits the search met, such as a sampled grid or
    candidates not started in time; also in the run's ``evaluation``."""
    x_holdout: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    """Holdout features, so a caller can score other versions on the same rows."""
    y_holdout: np.ndarray | None = field(default=None, repr=False, compare=False)
    """Holdout targets, encoded as class indices for a classifier."""


def train_model(
    config: Config,
    name: str,
    catalog: Catalog | None = None,
    window: TrainingWindow | None = None,
    tags: dict[str, str] | None = None,
    stop: threading.Event | None = None,
) -> TrainResult:
    """Train model `name` on the latest version of its dataset and register it.

    Args:
        config: The appliance configuration.
        name: Model declared as ``[models.NAME]``.
        catalog: Open catalog to use, such as a cursor of the daemon's
            connection; the catalog under the home is opened when None.
        window: Rows and holdout by event time, in place of the model's
            ``where`` and ``split``, as the retraining job uses them.
        tags: Labels added to the run's tags.
        stop: Event that ends the training early once set, such as at a
            daemon stop. It is checked between steps, folds, search candidates
            and LightGBM boosting iterations, interrupts the frame read's
            DuckDB queries, and is checked during the ONNX export, but never
            after the version is registered.

    Raises:
        TrainingError: The data cannot train this model.
        ExportError: The pipeline cannot be exported, or ONNX and native
            outputs differ by more than `PARITY_TOLERANCE`.
        TrainingStopped: `stop` was set before the version was registered.
            The run is recorded as failed, and no version is registered.
    """
    cfg = config.model(name)
    if tags:
        cfg = dataclasses.replace(cfg, tags={**cfg.tags, **tags})
    check = StopCheck(stop)
    sign = version_signer(config)
    views = config.feature_views
    if catalog is not None:
        return _recorded_train(catalog, cfg, views, window, check, sign)
    with Catalog(config.storage.home) as opened:
        return _recorded_train(opened, cfg, views, window, check, sign)


def _recorded_train(
    catalog: Catalog,
    cfg: ModelConfig,
    views: dict[str, FeatureViewConfig],
    window: TrainingWindow | None,
    stop: StopCheck,
    sign: Signer,
) -> TrainResult:
    run_id = start_run(
        catalog,
        cfg.name,
        cfg.dataset,
        {"algorithm": cfg.algorithm, **estimator_params(cfg)},
        code_version(),
        kind="search" if cfg.search else "train",
        tags=dict(cfg.tags),
        packages=package_versions(),
    )
    try:
        return _train(catalog, cfg, run_id, views, window, stop, sign)
    except BaseException as exc:
        stopped = isinstance(exc, (KeyboardInterrupt, TrainingStopped))
        status = INTERRUPTED if stopped else FAILED
        # Every caller of `train_model` shows the error it raises: the
        # command prints it, the daemon logs it.
        fail_run(catalog, run_id, _error_text(exc), status, raised=True)
        raise


def _train(
    catalog: Catalog,
    cfg: ModelConfig,
    run_id: str,
    views: dict[str, FeatureViewConfig],
    window: TrainingWindow | None,
    stop: StopCheck,
    sign: Signer,
) -> TrainResult:
    started = time.perf_counter()
    stop("before reading the training frame")
    frame = load_frame(catalog, cfg, views, window, stop)
    if window is None:
        check_frame(frame, cfg)
    else:
        check_window_frame(frame, cfg, window)
    n_classes = len(frame.classes) if frame.classes else None
    estimator = estimator_class(cfg.task, cfg.algorithm)
    check_params(cfg, estimator, estimator_params(cfg), n_classes)
    log = RunLog(catalog, run_id)
    metrics: dict[str, float] = {}
    folds = None
    trials = 0
    outcome = None
    warned = list(frame.warnings)
    if frame.classes and (cfg.cv is not None or cfg.search is not None):
        check_fold_classes(cfg, frame.x_train, frame.y_train, frame.classes)
    if cfg.search is not None:
        outcome = _search(catalog, cfg, frame, run_id, stop)
        cfg = dataclasses.replace(cfg, params={**cfg.params, **outcome.best.params})
        folds, trials = outcome.best.folds, len(outcome.trials)
        metrics[f"search_best_{outcome.metric}"] = outcome.best.score
        metrics["search_trials"] = float(trials)
        metrics["search_not_started"] = float(outcome.not_started)
        metrics["search_seconds"] = outcome.seconds
        warned += outcome.warnings
    pipeline = build_pipeline(cfg, frame.numeric, frame.categorical)
    fit_params = stop.fit_params(cfg.algorithm)
    if cfg.cv is not None and cfg.search is None:
        folds = cross_validate(
            pipeline,
            frame.x_train,
            frame.y_train,
            cfg.cv,
            cfg.split.seed,
            n_classes,
            stop,
            fit_params,
            cfg.name,
        )
        metrics.update(summarize(folds))

    stop("before the final fit")
    try:
        pipeline.fit(frame.x_train, frame.y_train, **fit_params)
    except fit_errors(cfg) as exc:
        # Parameters valid one by one can still conflict with each other or
        # with the data.
        raise TrainingError(f"fitting model {cfg.name!r} failed: {exc}") from exc
    evaluation = evaluate(pipeline, frame, cfg)
    check_measured(cfg, evaluation.metrics, len(frame.y_test), window)
    evaluation.details["warnings"] = warned
    if outcome is not None:
        evaluation.details["search"] = outcome.summary()
    metrics.update(evaluation.metrics)
    metrics["fit_seconds"] = time.perf_counter() - started

    inputs = input_schema(frame.numeric, frame.categorical)
    schema = _schema(cfg, frame, inputs, run_id, metrics)
    schema["reference"] = reference_values(
        frame.x_train, frame.numeric, frame.categorical
    )
    if window is not None:
        schema["where"] = None
        schema["window"] = window.to_dict()
        if window.refit and window.reference_metrics is not None:
            schema["reference_metrics"] = window.reference_metrics
    stop("before the ONNX export")
    onnx_bytes, difference = _export(
        catalog, cfg, pipeline, frame, schema, metrics, stop
    )
    schema["parity"] = difference
    # This is the last check, because the version is registered and its run
    # finished as one unit.
    stop("before registering the version")
    version = register_version(
        catalog, cfg.name, run_id, cfg.task, onnx_bytes, schema, difference, sign
    )

    for name, png in evaluation.plots.items():
        log.log_artifact(name, png, "image/png")
    for index, fold in enumerate(folds or []):
        for key, value in fold.items():
            log.log_metric(f"fold_{key}", value, step=index)
    params = _full_params(pipeline, cfg)
    result = RunResult(
        frame.dataset_version,
        metrics,
        version.version,
        params=params,
        folds=folds,
        evaluation=evaluation.details,
        feature_views=dict(frame.feature_versions),
    )
    finish_run(catalog, run_id, result, log)
    return TrainResult(
        run_id=run_id,
        model_version=version,
        dataset_version=frame.dataset_version,
        metrics=metrics,
        parity=difference,
        rows_train=len(frame.y_train),
        rows_test=len(frame.y_test),
        trials=trials,
        warnings=warned,
        x_holdout=frame.x_test,
        y_holdout=frame.y_test,
    )


def _search(
    catalog: Catalog,
    cfg: ModelConfig,
    frame: TrainingFrame,
    run_id: str,
    stop: StopCheck,
) -> SearchOutcome:
    """Run the declared search and record each candidate as a child run."""
    from appliance.config import CVConfig

    assert cfg.search is not None
    outcome = search(
        build_pipeline(cfg, frame.numeric, frame.categorical),
        frame.x_train,
        frame.y_train,
        cfg.search,
        cfg.cv or CVConfig(),
        cfg.primary_metric,
        len(frame.classes) if frame.classes else None,
        cfg.split.seed,
        stop,
        stop.fit_params(cfg.algorithm),
    )
    halving = cfg.search.method == "halving"
    for trial in outcome.trials:
        ended = trial.started_at + timedelta(seconds=trial.seconds)
        # Not a new ModelConfig: its checks would reject the params of a failed
        # candidate, which is recorded as a failed child run instead.
        child = start_run(
            catalog,
            cfg.name,
            cfg.dataset,
            {"algorithm": cfg.algorithm, **estimator_params(cfg), **trial.params},
            code_version(),
            parent_run_id=run_id,
            kind="trial",
            tags={**cfg.tags, "search": cfg.search.method},
            started_at=trial.started_at,
        )
        if trial.error is not None:
            fail_run(catalog, child, trial.error, finished_at=ended)
            continue
        metric = outcome.metric
        trial_metrics = {
            metric: trial.score,
            f"train_{metric}": trial.train_score,
            "overfit_gap": overfit_gap(metric, trial.train_score, trial.score),
            "fit_seconds": trial.fit_seconds,
        }
        if halving:
            trial_metrics["round"] = float(trial.round or 0)
            trial_metrics["rows"] = float(trial.rows or 0)
        finish_run(
            catalog,
            child,
            RunResult(frame.dataset_version, trial_metrics, folds=trial.folds),
            finished_at=ended,
        )
    return outcome


def _export(
    catalog: Catalog,
    cfg: ModelConfig,
    pipeline: Any,
    frame: TrainingFrame,
    schema: dict[str, Any],
    metrics: dict[str, float],
    stop: StopCheck,
) -> tuple[bytes, float]:
    """Convert to ONNX and check parity on holdout and probe rows.

    Adds ``parity_max_abs_diff`` and ``parity_label_mismatches`` to `metrics`.
    `stop` is checked during the conversion and between the steps.

    Raises:
        ExportError: The outputs differ by more than `PARITY_TOLERANCE`.
        TrainingStopped: `stop` was set.
    """
    reference = training_inputs(pipeline, frame.x_train, frame.numeric)
    onnx_bytes = to_onnx(pipeline, schema["inputs"], cfg.task, reference, stop)
    stop("after the ONNX conversion")
    onnx_model = OnnxModel(onnx_bytes, schema)
    check_derived(catalog, cfg, frame, onnx_model)
    probes = probe_rows(frame.x_train, frame.numeric, frame.categorical, pipeline)
    checked = pd.concat([frame.x_test, probes], ignore_index=True)
    stop("before the parity check")
    agreement = parity(onnx_model, pipeline, checked, cfg.task, PARITY_TOLERANCE)
    metrics["parity_max_abs_diff"] = agreement.max_difference
    metrics["parity_label_mismatches"] = agreement.label_mismatches
    if not agreement.passed(PARITY_TOLERANCE):
        raise ExportError(
            parity_message(
                cfg.name,
                cfg.task,
                agreement,
                checked,
                len(frame.x_test),
                PARITY_TOLERANCE,
            )
        )
    return onnx_bytes, agreement.max_difference


def _schema(
    cfg: ModelConfig,
    frame: TrainingFrame,
    inputs: list[dict[str, str]],
    run_id: str,
    metrics: dict[str, float],
) -> dict[str, Any]:
    return {
        "model": cfg.name,
        "task": cfg.task,
        "algorithm": cfg.algorithm,
        "target": cfg.target,
        "inputs": inputs,
        "request": frame.request,
        "derive": frame.derive,
        "checks": cfg.checks,
        "classes": frame.classes,
        "dataset": cfg.dataset,
        "dataset_version": frame.dataset_version,
        "rows_train": len(frame.y_train),
        "rows_test": len(frame.y_test),
        "rows_unlabelled": frame.unlabelled,
        "where": cfg.where,
        "split": dataclasses.asdict(cfg.split),
        "metric": cfg.primary_metric,
        "intended_use": cfg.intended_use,
        "feature_versions": frame.feature_versions,
        "run_id": run_id,
        "metrics": metrics,
        "parity_tolerance": PARITY_TOLERANCE,
    }


def _full_params(pipeline: Any, cfg: ModelConfig) -> dict[str, Any]:
    """Return every parameter of the fitted estimator, defaults included."""
    estimator = pipeline.named_steps["estimator"]
    return {"algorithm": cfg.algorithm, **estimator.get_params(deep=False)}


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted: the training was stopped by the user (Ctrl-C)"
    if isinstance(exc, TrainingStopped):
        return f"interrupted: {exc}, on a stop request such as a daemon stop"
    return f"{type(exc).__name__}: {exc}"
