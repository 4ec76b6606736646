"""Batch drift statistics: PSI, KS and chi-squared with their edge cases."""

from __future__ import annotations

import math
from datetime import UTC

import numpy as np
import pytest

from appliance.config import RetrainConfig
from appliance.monitoring import (
    DriftThresholds,
    batch_drift,
    batch_drift_alert,
    chi2_test,
    decide_retrain,
    psi_numeric,
)


def test_chi2_same_proportions_no_drift() -> None:
    reference = ["bad"] * 500 + ["good"] * 100
    current = ["bad"] * 250 + ["good"] * 50

    report = batch_drift({"c": reference}, {"c": current}, [], ["c"])
    feature = report.features[0]

    assert chi2_test(reference, current) == (0.0, 1.0)
    assert feature.p_value == 1.0
    assert feature.p_value >= 0.99
    assert feature.status == "ok"
    assert feature.psi == 0.0


def test_small_window_insufficient_data() -> None:
    rng = np.random.default_rng(0)
    rules = DriftThresholds(min_samples=30)

    report = batch_drift(
        {"x": rng.normal(0, 1, 150), "c": ["a"] * 150},
        {"x": rng.normal(3, 1, 8), "c": ["b"] * 8},
        ["x"],
        ["c"],
        rules,
    )

    assert [f.status for f in report.features] == [
        "insufficient data",
        "insufficient data",
    ]
    assert report.drifted == []
    assert report.tested == 0
    assert report.share_drifted == 0.0
    assert batch_drift_alert("m", report) is None


def test_constant_column_finite_no_drift() -> None:
    report = batch_drift(
        {"x": [3.0] * 500, "y": np.arange(500.0), "c": ["k"] * 500},
        {"x": [3.0] * 400, "y": np.arange(400.0) + 1000, "c": ["k"] * 400},
        ["x", "y"],
        ["c"],
    )
    x, y, c = report.features

    assert (x.status, x.psi, x.statistic, x.p_value) == ("ok", 0.0, 0.0, 1.0)
    assert (c.status, c.psi, c.statistic, c.p_value) == ("ok", 0.0, 0.0, 1.0)
    assert y.status == "drift"
    assert report.share_drifted == pytest.approx(1 / 3)
    assert math.isfinite(report.share_drifted)


def test_constant_column_changed_value_finite() -> None:
    report = batch_drift({"x": [3.0] * 500}, {"x": [4.0] * 400}, ["x"], [])
    feature = report.features[0]

    assert feature.status == "drift"
    assert feature.statistic == 1.0
    assert math.isfinite(feature.psi)
    assert feature.psi == pytest.approx(18.4188, abs=1e-4)


def test_tiny_shift_large_sample_below_effect_floor() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 100_000)
    current = rng.normal(0.01, 1, 100_000)
    policy = RetrainConfig(trigger="drift", min_new_labels=0)

    report = batch_drift({"x": reference}, {"x": current}, ["x"], [])
    feature = report.features[0]
    alert = batch_drift_alert("m", report)
    retrained = alert is not None and decide_retrain(policy, "drift", _now(), [], 0).act

    # The p-value alone would call this drift; the effect floor does not.
    assert feature.p_value == pytest.approx(0.003875, abs=1e-6)
    assert feature.p_value < DriftThresholds().p_value
    assert feature.statistic == pytest.approx(0.0079, abs=1e-9)
    assert feature.statistic < DriftThresholds().ks_floor
    assert feature.psi < 0.001
    assert feature.status == "ok"
    assert retrained is False


def test_mean_shift_flagged_by_psi_and_ks() -> None:
    rng = np.random.default_rng(1)

    report = batch_drift(
        {"x": rng.normal(0, 1, 5000)}, {"x": rng.normal(1, 1, 5000)}, ["x"], []
    )
    feature = report.features[0]

    assert feature.status == "drift"
    assert feature.psi > 0.2
    assert feature.statistic > 0.3
    assert batch_drift_alert("m", report).subject == "batch"


def test_missing_values_own_bin() -> None:
    reference = np.r_[np.arange(1000.0), [np.nan] * 10]
    current = np.r_[np.arange(1000.0), [np.nan] * 500]

    psi = psi_numeric(reference, current)

    # 10 bins of 0.099 -> 0.0667 plus missing 0.0099 -> 0.3333.
    assert psi == pytest.approx(1.2653, abs=1e-4)


def test_thresholds_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="p_value must be within"):
        DriftThresholds(p_value=1.5)
    with pytest.raises(ValueError, match="min_samples must be at least 1"):
        DriftThresholds(min_samples=0)


def _now():
    from datetime import datetime

    return datetime(2013, 6, 1, tzinfo=UTC)
