"""Live metrics over a sliding window, checked against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics

from appliance.monitoring import LiveMetrics, roc_auc, row_loss


def test_live_metrics_match_sklearn_on_window() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 3000)
    scores = np.clip(labels * 0.3 + rng.random(3000) * 0.7, 0.001, 0.999)
    live = LiveMetrics("classification", window=1000)
    for y, p in zip(labels, scores, strict=True):
        live.update(y, [1 - p, p])

    result = live.metrics()
    y, p = labels[-1000:], scores[-1000:]

    assert result["labels"] == 1000
    assert result["accuracy"] == pytest.approx(metrics.accuracy_score(y, p > 0.5))
    assert result["log_loss"] == pytest.approx(metrics.log_loss(y, p))
    assert result["roc_auc"] == pytest.approx(metrics.roc_auc_score(y, p))


def test_auc_needs_enough_labels_and_both_classes() -> None:
    live = LiveMetrics("classification")
    for _ in range(300):
        live.update(1, [0.3, 0.7])

    assert live.metrics(min_auc_labels=200)["roc_auc"] is None
    assert (
        LiveMetrics("classification").update(0, [0.5, 0.5]).metrics()["roc_auc"] is None
    )
    assert roc_auc(np.array([0, 1, 1]), np.array([0.2, 0.2, 0.9])) == 0.75


def test_regression_mae_and_row_loss() -> None:
    live = LiveMetrics("regression", window=2)
    for y, v in [(1.0, 5.0), (2.0, 2.5), (3.0, 1.0)]:
        live.update(y, v)

    assert live.metrics() == {"labels": 2, "mae": 1.25}
    assert row_loss("regression", 3.0, 1.0) == 2.0
    assert row_loss("classification", 1, [0.5, 0.5]) == pytest.approx(
        0.693147, abs=1e-6
    )
