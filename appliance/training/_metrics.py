"""Holdout metrics for classifiers and regressors."""

from __future__ import annotations

import math

import numpy as np
from sklearn import metrics


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, n_classes: int
) -> dict[str, float]:
    """Return ROC AUC, log loss, accuracy, precision, recall and F1.

    Binary tasks score the second class as positive; multi-class tasks report
    macro averages and a one-vs-rest ROC AUC. ROC AUC is NaN when the holdout
    lacks a class.
    """
    predicted = proba.argmax(axis=1)
    binary = n_classes == 2
    average = "binary" if binary else "macro"
    result = {
        "accuracy": metrics.accuracy_score(y_true, predicted),
        "log_loss": metrics.log_loss(y_true, proba, labels=list(range(n_classes))),
        "precision": metrics.precision_score(
            y_true, predicted, average=average, zero_division=0
        ),
        "recall": metrics.recall_score(
            y_true, predicted, average=average, zero_division=0
        ),
        "f1": metrics.f1_score(y_true, predicted, average=average, zero_division=0),
        "roc_auc": math.nan,
    }
    if len(np.unique(y_true)) == n_classes:
        if binary:
            result["roc_auc"] = metrics.roc_auc_score(y_true, proba[:, 1])
        else:
            result["roc_auc"] = metrics.roc_auc_score(
                y_true, proba, multi_class="ovr", average="macro"
            )
    return {name: float(value) for name, value in result.items()}


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Return MAE, RMSE and R2."""
    return {
        "mae": float(metrics.mean_absolute_error(y_true, predicted)),
        "rmse": float(math.sqrt(metrics.mean_squared_error(y_true, predicted))),
        "r2": float(metrics.r2_score(y_true, predicted)),
    }
