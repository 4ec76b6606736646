"""Holdout evaluation: metrics overall and per segment, details and plots."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from appliance.config import TARGET_UNIT_METRICS, ModelConfig
from appliance.errors import TrainingError
from appliance.training import _plots
from appliance.training._frame import TrainingFrame
from appliance.training._metrics import (
    classification_details,
    classification_metrics,
    overfit_gap,
    regression_metrics,
    relative_overfit_gap,
)

logger = logging.getLogger(__name__)

MAX_SEGMENT_VALUES = 50
"""Most values of one segment column that get their own metrics (largest first)."""


@dataclass
class Evaluation:
    """Holdout results of a fitted pipeline: metrics, details and plots."""

    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    plots: dict[str, bytes] = field(default_factory=dict)
    """PNG file name to its bytes."""


def evaluate(pipeline: Any, frame: TrainingFrame, cfg: ModelConfig) -> Evaluation:
    """Score `pipeline` on the holdout rows, overall and per segment.

    The overfitting gap of the primary metric (training rows against holdout
    rows) is stored as ``overfit_gap`` and flagged in ``overfit_flagged``.

    Raises:
        TrainingError: A segment column is not a categorical feature.
    """
    output = _output(pipeline, frame.x_test, cfg.task)
    metrics = _metrics(frame.y_test, output, frame.classes)
    train_metrics = _metrics(
        frame.y_train, _output(pipeline, frame.x_train, cfg.task), frame.classes
    )
    metric = cfg.primary_metric
    metrics[f"train_{metric}"] = train_metrics[metric]
    metrics.update(_overfitting(cfg, train_metrics[metric], metrics[metric]))

    details: dict[str, Any] = {"metric": metric, "train": train_metrics}
    details["segments"] = _segments(cfg, frame, output)
    plots = {}
    if cfg.task == "classification":
        assert frame.classes is not None
        details.update(classification_details(frame.y_test, output, frame.classes))
        plots = _classification_plots(frame, output, details)
    else:
        plots["residuals.png"] = _plots.residuals_png(frame.y_test, output)
    importance = feature_importance(pipeline)
    if importance:
        details["feature_importance"] = importance
        plots["feature_importance.png"] = _plots.importance_png(
            list(importance), list(importance.values())
        )
    return Evaluation(metrics, details, plots)


def _overfitting(cfg: ModelConfig, train: float, holdout: float) -> dict[str, float]:
    """Return the overfitting gap of the primary metric and whether it is flagged.

    ``overfit_gap`` is in the metric's units. For a metric in target units,
    ``overfit_relative_gap`` divides it by the holdout value, and the flag
    compares that share with the threshold, so one threshold fits targets of
    any scale.
    """
    metric = cfg.primary_metric
    result = {"overfit_gap": overfit_gap(metric, train, holdout)}
    checked = result["overfit_gap"]
    if metric in TARGET_UNIT_METRICS:
        checked = relative_overfit_gap(metric, train, holdout)
        result["overfit_relative_gap"] = checked
    result["overfit_flagged"] = float(checked > cfg.overfit_limit)
    if checked > cfg.overfit_limit:
        logger.warning(
            "overfitting model=%s metric=%s train=%.4g holdout=%.4g gap=%.4g "
            "checked_gap=%.4g threshold=%.4g",
            cfg.name,
            metric,
            train,
            holdout,
            result["overfit_gap"],
            checked,
            cfg.overfit_limit,
        )
    return result


def feature_importance(pipeline: Any) -> dict[str, float]:
    """Return the estimator's importance per encoded feature, largest first.

    Tree models give ``feature_importances_``; linear models give the absolute
    coefficient, averaged over classes. Other estimators give an empty result.
    """
    estimator = pipeline.named_steps["estimator"]
    names = list(pipeline.named_steps["prepare"].get_feature_names_out())
    if hasattr(estimator, "feature_importances_"):
        values = np.asarray(estimator.feature_importances_, dtype=float)
    elif hasattr(estimator, "coef_"):
        values = np.abs(np.atleast_2d(estimator.coef_)).mean(axis=0)
    else:
        return {}
    order = np.argsort(values)[::-1]
    return {str(names[i]): float(values[i]) for i in order}


def _classification_plots(
    frame: TrainingFrame, proba: np.ndarray, details: dict[str, Any]
) -> dict[str, bytes]:
    classes = frame.classes or []
    plots = {
        "calibration.png": _plots.calibration_png(details["calibration"]),
        "confusion_matrix.png": _plots.confusion_png(
            details["confusion_matrix"], classes
        ),
    }
    if len(np.unique(frame.y_test)) == len(classes):
        plots["roc.png"] = _plots.roc_png(frame.y_test, proba, classes)
        plots["pr.png"] = _plots.pr_png(frame.y_test, proba, classes)
    return plots


def _segments(
    cfg: ModelConfig, frame: TrainingFrame, output: np.ndarray
) -> dict[str, dict[str, dict[str, float]]]:
    result: dict[str, dict[str, dict[str, float]]] = {}
    for column in cfg.segments:
        if column not in frame.categorical:
            raise TrainingError(
                f"segment column {column!r} of model {cfg.name!r} is not a "
                f"categorical feature; categorical features: "
                f"{', '.join(frame.categorical) or 'none'}"
            )
        values = frame.x_test[column]
        result[column] = {}
        for value in values.value_counts().index[:MAX_SEGMENT_VALUES]:
            mask = (values == value).to_numpy()
            scores = _metrics(frame.y_test[mask], output[mask], frame.classes)
            result[column][str(value)] = {"rows": float(mask.sum()), **scores}
    return result


def _metrics(
    y_true: np.ndarray, output: np.ndarray, classes: list[Any] | None
) -> dict[str, float]:
    if classes is None:
        return regression_metrics(y_true, output)
    return classification_metrics(y_true, output, len(classes))


def _output(pipeline: Any, x: pd.DataFrame, task: str) -> np.ndarray:
    if task == "regression":
        return np.asarray(pipeline.predict(x), dtype=np.float64)
    return np.asarray(pipeline.predict_proba(x), dtype=np.float64)
