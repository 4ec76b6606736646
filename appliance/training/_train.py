"""Training end to end: frame, fit, evaluate, export, parity, register, record."""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from appliance.config import Config, ModelConfig
from appliance.errors import ExportError, TrainingError
from appliance.serving import OnnxModel
from appliance.storage import (
    Catalog,
    ModelVersion,
    fail_run,
    finish_run,
    register_version,
    start_run,
)
from appliance.training._export import (
    check_derived,
    input_schema,
    parity,
    parity_message,
    probe_rows,
    to_onnx,
    training_inputs,
)
from appliance.training._frame import TrainingFrame, load_frame
from appliance.training._metrics import classification_metrics, regression_metrics
from appliance.training._pipeline import build_pipeline, estimator_params

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


def train_model(
    config: Config, name: str, catalog: Catalog | None = None
) -> TrainResult:
    """Train model `name` on the latest version of its dataset and register it.

    The run is recorded as running first and closed as finished or failed.

    Args:
        config: The appliance configuration.
        name: Model declared as ``[models.NAME]``.
        catalog: Open catalog to use, such as a cursor of the daemon's
            connection; the catalog under the home is opened when None.

    Raises:
        TrainingError: The data cannot train this model.
        ExportError: The pipeline cannot be exported, or ONNX and native
            outputs differ by more than `PARITY_TOLERANCE`.
    """
    cfg = config.model(name)
    if catalog is not None:
        return _recorded_train(catalog, cfg)
    with Catalog(config.storage.home) as opened:
        return _recorded_train(opened, cfg)


def _recorded_train(catalog: Catalog, cfg: ModelConfig) -> TrainResult:
    params = {"algorithm": cfg.algorithm, **estimator_params(cfg)}
    run_id = start_run(catalog, cfg.name, cfg.dataset, params, code_version())
    try:
        return _train(catalog, cfg, run_id)
    except Exception as exc:
        fail_run(catalog, run_id, f"{type(exc).__name__}: {exc}")
        raise


def _train(catalog: Catalog, cfg: ModelConfig, run_id: str) -> TrainResult:
    started = time.perf_counter()
    frame = load_frame(catalog, cfg)
    pipeline = build_pipeline(cfg, frame.numeric, frame.categorical)
    try:
        pipeline.fit(frame.x_train, frame.y_train)
    except ValueError as exc:
        raise TrainingError(f"fitting model {cfg.name!r} failed: {exc}") from exc
    metrics = _evaluate(pipeline, frame, cfg.task)
    metrics["fit_seconds"] = time.perf_counter() - started

    inputs = input_schema(frame.numeric, frame.categorical)
    schema = _schema(cfg, frame, inputs, run_id, metrics)
    reference = training_inputs(pipeline, frame.x_train, frame.numeric)
    onnx_bytes = to_onnx(pipeline, inputs, cfg.task, reference)
    onnx_model = OnnxModel(onnx_bytes, schema)
    check_derived(catalog, cfg, frame, onnx_model)
    probes = probe_rows(frame.x_train, frame.numeric, frame.categorical, pipeline)
    checked = pd.concat([frame.x_test, probes], ignore_index=True)
    agreement = parity(onnx_model, pipeline, checked, cfg.task, PARITY_TOLERANCE)
    difference = agreement.max_difference
    metrics["parity_max_abs_diff"] = difference
    metrics["parity_label_mismatches"] = agreement.label_mismatches
    if not agreement.passed(PARITY_TOLERANCE):
        finish_run(
            catalog,
            run_id,
            frame.dataset_version,
            metrics,
            None,
            error=f"ONNX parity {difference:.3g} above {PARITY_TOLERANCE}",
        )
        raise ExportError(
            parity_message(
                cfg.name, agreement, checked, len(frame.x_test), PARITY_TOLERANCE
            )
        )

    schema["parity"] = difference
    version = register_version(
        catalog, cfg.name, run_id, cfg.task, onnx_bytes, schema, difference
    )
    finish_run(catalog, run_id, frame.dataset_version, metrics, version.version)
    return TrainResult(
        run_id=run_id,
        model_version=version,
        dataset_version=frame.dataset_version,
        metrics=metrics,
        parity=difference,
        rows_train=len(frame.y_train),
        rows_test=len(frame.y_test),
    )


def _evaluate(pipeline: Any, frame: TrainingFrame, task: str) -> dict[str, float]:
    if task == "regression":
        predicted = pipeline.predict(frame.x_test)
        return regression_metrics(frame.y_test, np.asarray(predicted))
    assert frame.classes is not None
    proba = pipeline.predict_proba(frame.x_test)
    return classification_metrics(frame.y_test, proba, len(frame.classes))


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
        "run_id": run_id,
        "metrics": metrics,
    }


def code_version() -> str:
    """Return the git commit of the source tree, else the package version."""
    root = Path(__file__).resolve().parents[2]
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return "git:" + result.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "edge-appliance " + metadata.version("edge-appliance")
