"""Evaluation metrics of classifiers and regressors, as plain functions.

Binary tasks score the second class as positive. Multi-class tasks report
macro averages, one-vs-rest ROC and PR AUC, and the multi-class Brier score
(mean over rows of the squared distance between the probability vector and
the one-hot label, divided by 2 so that it matches the binary score).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn import metrics

from appliance.config import LOWER_IS_BETTER, TARGET_UNIT_METRICS

CALIBRATION_BINS = 10

_SCORERS = {
    "roc_auc": ("roc_auc", "roc_auc_ovr"),
    "pr_auc": ("average_precision", None),
    "log_loss": ("neg_log_loss", "neg_log_loss"),
    "brier": ("neg_brier_score", None),
    "accuracy": ("accuracy", "accuracy"),
    "precision": ("precision", "precision_macro"),
    "recall": ("recall", "recall_macro"),
    "f1": ("f1", "f1_macro"),
    "mae": ("neg_mean_absolute_error", None),
    "rmse": ("neg_root_mean_squared_error", None),
    "r2": ("r2", None),
    "mape": ("neg_mean_absolute_percentage_error", None),
}


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, n_classes: int
) -> dict[str, float]:
    """Return the scalar metrics of class probabilities `proba`.

    ROC AUC and PR AUC are NaN when `y_true` lacks a class.
    """
    predicted = proba.argmax(axis=1)
    binary = n_classes == 2
    average = "binary" if binary else "macro"
    labels = list(range(n_classes))
    onehot = np.eye(n_classes)[y_true]
    result = {
        "accuracy": metrics.accuracy_score(y_true, predicted),
        "log_loss": metrics.log_loss(y_true, proba, labels=labels),
        "brier": float(np.mean(np.sum((proba - onehot) ** 2, axis=1)) / 2),
        "precision": metrics.precision_score(
            y_true, predicted, average=average, zero_division=0
        ),
        "recall": metrics.recall_score(
            y_true, predicted, average=average, zero_division=0
        ),
        "f1": metrics.f1_score(y_true, predicted, average=average, zero_division=0),
        "f1_macro": metrics.f1_score(
            y_true, predicted, average="macro", labels=labels, zero_division=0
        ),
        "calibration_error": expected_calibration_error(y_true, proba),
        "roc_auc": math.nan,
        "pr_auc": math.nan,
    }
    if len(np.unique(y_true)) == n_classes:
        if binary:
            result["roc_auc"] = metrics.roc_auc_score(y_true, proba[:, 1])
            result["pr_auc"] = metrics.average_precision_score(y_true, proba[:, 1])
        else:
            result["roc_auc"] = metrics.roc_auc_score(
                y_true, proba, multi_class="ovr", average="macro"
            )
            result["pr_auc"] = metrics.average_precision_score(
                onehot, proba, average="macro"
            )
    return {name: float(value) for name, value in result.items()}


def classification_details(
    y_true: np.ndarray, proba: np.ndarray, classes: list[Any]
) -> dict[str, Any]:
    """Return the confusion matrix, per-class metrics and the calibration curve.

    The confusion matrix has true classes as rows and predicted classes as
    columns, both in the order of `classes`.
    """
    labels = list(range(len(classes)))
    predicted = proba.argmax(axis=1)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y_true, predicted, labels=labels, zero_division=0
    )
    per_class = {
        str(value): {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, value in enumerate(classes)
    }
    return {
        "classes": [str(c) for c in classes],
        "confusion_matrix": metrics.confusion_matrix(
            y_true, predicted, labels=labels
        ).tolist(),
        "per_class": per_class,
        "calibration": calibration_curve(y_true, proba),
    }


def calibration_curve(y_true: np.ndarray, proba: np.ndarray) -> dict[str, list[float]]:
    """Return the reliability curve in equal-width bins of predicted probability.

    Binary tasks use the probability of the positive class; multi-class tasks
    use the probability of the predicted class against whether it was right.
    Empty bins are left out.
    """
    confidence, hit = _confidence(y_true, proba)
    bins = np.minimum((confidence * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    predicted, observed, counts = [], [], []
    for index in range(CALIBRATION_BINS):
        mask = bins == index
        if mask.any():
            predicted.append(float(confidence[mask].mean()))
            observed.append(float(hit[mask].mean()))
            counts.append(int(mask.sum()))
    return {"predicted": predicted, "observed": observed, "count": counts}


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Return the count-weighted mean gap between predicted and observed rates.

    >>> round(expected_calibration_error(np.array([0, 1]), np.array([[0.9, 0.1],
    ...     [0.2, 0.8]])), 3)
    0.15
    """
    curve = calibration_curve(y_true, proba)
    total = sum(curve["count"])
    if not total:
        return math.nan
    gaps = [
        count * abs(p - o)
        for p, o, count in zip(curve["predicted"], curve["observed"], curve["count"])
    ]
    return float(sum(gaps) / total)


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Return MAE, RMSE, R2 and MAPE.

    MAPE follows scikit-learn: a zero target contributes a very large term.
    """
    return {
        "mae": float(metrics.mean_absolute_error(y_true, predicted)),
        "rmse": float(math.sqrt(metrics.mean_squared_error(y_true, predicted))),
        "r2": float(metrics.r2_score(y_true, predicted))
        if len(y_true) > 1
        else math.nan,
        "mape": float(metrics.mean_absolute_percentage_error(y_true, predicted)),
    }


def scorer_name(metric: str, n_classes: int | None) -> str:
    """Return the scikit-learn scoring name of one of the appliance's metrics.

    Raises:
        ValueError: The metric has no scorer for multi-class targets.
    """
    binary_name, multi_name = _SCORERS[metric]
    if n_classes is None or n_classes == 2:
        return binary_name
    if multi_name is None:
        raise ValueError(
            f"metric {metric!r} is defined for two classes only; the target has "
            f"{n_classes}. Use roc_auc, log_loss, accuracy or f1"
        )
    return multi_name


def from_score(metric: str, score: float) -> float:
    """Turn a scikit-learn score back into the metric (scorers negate losses)."""
    return -score if metric in LOWER_IS_BETTER else score


def overfit_gap(metric: str, train: float, holdout: float) -> float:
    """Return how much better `metric` is on training rows than on holdout rows.

    >>> overfit_gap("roc_auc", 0.75, 0.5), overfit_gap("rmse", 1.0, 1.5)
    (0.25, 0.5)
    """
    if metric in LOWER_IS_BETTER:
        return holdout - train
    return train - holdout


def relative_overfit_gap(metric: str, train: float, holdout: float) -> float:
    """Return the overfitting gap of a metric in target units as a share.

    For `TARGET_UNIT_METRICS` the gap is divided by the holdout value, so 0.1
    means the training error is lower than the holdout error by a tenth of
    the holdout error. Other metrics are already without units, so their gap
    is returned as is.

    >>> relative_overfit_gap("rmse", 40.0, 50.0)
    0.2
    >>> relative_overfit_gap("roc_auc", 0.75, 0.5)
    0.25
    """
    gap = overfit_gap(metric, train, holdout)
    if metric not in TARGET_UNIT_METRICS or holdout <= 0:
        # An error of 0 on the holdout leaves no gap above 0 to divide.
        return gap
    return gap / holdout


def _confidence(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if proba.shape[1] == 2:
        return proba[:, 1], (y_true == 1).astype(float)
    predicted = proba.argmax(axis=1)
    return proba.max(axis=1), (predicted == y_true).astype(float)
