"""Pure parts of the retraining job: metric choice, window bounds, scores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from appliance import retraining
from appliance.config import RetrainConfig
from appliance.retraining import effective_metric, score, window_bounds

NOW = datetime(2024, 3, 1, tzinfo=UTC)


def test_public_names_importable() -> None:
    for name in retraining.__all__:
        assert hasattr(retraining, name), name


def test_effective_metric_by_task() -> None:
    assert effective_metric("classification", "log_loss") == "log_loss"
    assert effective_metric("classification", "mae") == "roc_auc"
    assert effective_metric("regression", "roc_auc") == "mae"


def test_window_sliding_days_and_rows() -> None:
    policy = RetrainConfig(holdout_days=7, window_days=20, window_rows=500)
    start, holdout_start, max_rows = window_bounds(policy, NOW)
    assert holdout_start == NOW - timedelta(days=7)
    assert start == NOW - timedelta(days=27)
    assert max_rows == 500


def test_window_expanding_keeps_everything() -> None:
    policy = RetrainConfig(window="expanding", holdout_days=2, window_rows=10)
    assert window_bounds(policy, NOW) == (None, NOW - timedelta(days=2), None)


def test_score_roc_auc_matches_pairs() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=200)
    p1 = np.round(rng.random(200), 1)  # ties on purpose
    proba = np.column_stack([1 - p1, p1])
    pos, neg = p1[y == 1], p1[y == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (
        pos[:, None] == neg[None, :]
    ).mean()
    assert score("roc_auc", y, proba) == pytest.approx(pairs)


def test_score_one_class_is_undefined() -> None:
    proba = np.array([[0.2, 0.8], [0.4, 0.6]])
    assert score("roc_auc", np.array([1, 1]), proba) is None


def test_score_log_loss_and_mae() -> None:
    proba = np.array([[0.5, 0.5], [0.1, 0.9]])
    expected = -(np.log(0.5) + np.log(0.9)) / 2
    assert score("log_loss", np.array([0, 1]), proba) == pytest.approx(expected)
    assert score("mae", np.array([1.0, 3.0]), np.array([2.0, 1.0])) == 1.5


def test_score_multiclass_roc_auc_macro() -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    proba = np.eye(3)[y] * 0.7 + 0.1
    assert score("roc_auc", y, proba) == 1.0
