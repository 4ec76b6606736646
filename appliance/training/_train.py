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

from appliance.config import Config, FeatureViewConfig, ModelConfig
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
from appliance.training._export import input_schema, parity, probe_rows, to_onnx
from appliance.training._frame import TrainingFrame, load_frame
from appliance.training._metrics import classification_metrics, regression_metrics
from appliance.training._pipeline import build_pipeline, estimator_params

logger = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4
"""Largest ONNX-to-native difference in probability (or scaled value) accepted."""


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


def train_model(config: Config, name: str) -> TrainResult:
    """Train model `name` on the latest version of its dataset and register it.

    The run is recorded as running first and closed as finished or failed.

    Raises:
        TrainingError: The data cannot train this model.
        ExportError: The pipeline cannot be exported, or ONNX and native
            outputs differ by more than `PARITY_TOLERANCE`.
    """
    cfg = config.model(name)
    with Catalog(config.storage.home) as catalog:
        params = {"algorithm": cfg.algorithm, **estimator_params(cfg)}
        run_id = start_run(catalog, name, cfg.dataset, params, code_version())
        try:
            return _train(catalog, cfg, run_id, config.feature_views)
        except Exception as exc:
            fail_run(catalog, run_id, f"{type(exc).__name__}: {exc}")
            raise


def _train(
    catalog: Catalog,
    cfg: ModelConfig,
    run_id: str,
    views: dict[str, FeatureViewConfig],
) -> TrainResult:
    started = time.perf_counter()
    frame = load_frame(catalog, cfg, views)
    pipeline = build_pipeline(cfg, frame.numeric, frame.categorical)
    try:
        pipeline.fit(frame.x_train, frame.y_train)
    except ValueError as exc:
        raise TrainingError(f"fitting model {cfg.name!r} failed: {exc}") from exc
    metrics = _evaluate(pipeline, frame, cfg.task)
    metrics["fit_seconds"] = time.perf_counter() - started

    inputs = input_schema(frame.numeric, frame.categorical)
    schema = _schema(cfg, frame, inputs, run_id, metrics)
    onnx_bytes = to_onnx(pipeline, inputs, cfg.task)
    checked = pd.concat(
        [frame.x_test, probe_rows(frame.x_test, frame.numeric, frame.categorical)],
        ignore_index=True,
    )
    difference = parity(OnnxModel(onnx_bytes, schema), pipeline, checked, cfg.task)
    metrics["parity_max_abs_diff"] = difference
    if not difference <= PARITY_TOLERANCE:
        finish_run(
            catalog,
            run_id,
            frame.dataset_version,
            metrics,
            None,
            error=f"ONNX parity {difference:.3g} above {PARITY_TOLERANCE}",
        )
        raise ExportError(
            f"ONNX output of model {cfg.name!r} differs from the native model by "
            f"{difference:.3g} on {len(checked)} holdout rows, above the tolerance "
            f"{PARITY_TOLERANCE}; the version was not registered"
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
        "classes": frame.classes,
        "dataset": cfg.dataset,
        "dataset_version": frame.dataset_version,
        "feature_versions": frame.feature_versions,
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
