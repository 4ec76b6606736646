"""Retraining policy: triggers, cool-down, budget, windows, promotion, rollback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from appliance.config import RetrainConfig
from appliance.monitoring import (
    decide_promotion,
    decide_retrain,
    decide_rollback,
    training_window,
)

T0 = datetime(2013, 4, 1, tzinfo=UTC)


def days(n: float) -> datetime:
    return T0 + timedelta(days=n)


def test_daily_alarms_with_cooldown_and_budget() -> None:
    # A detector that fires nearly every day, as ADWIN on the flights loss
    # did, must not turn into daily retraining.
    policy = RetrainConfig(
        trigger="drift",
        cooldown_hours=24 * 7,
        budget=3,
        budget_days=30,
        min_new_labels=0,
    )
    runs: list[datetime] = []
    skipped = []
    for day in range(60):
        decision = decide_retrain(policy, "drift", days(day), runs, 10_000)
        if decision.act:
            runs.append(days(day))
        else:
            skipped.append(decision.reason)

    assert runs == [days(0), days(7), days(14), days(30), days(37), days(44)]
    assert len(skipped) == 54
    assert sum("cooldown_hours = 168 allows the next from" in r for r in skipped) == 36
    assert skipped[0] == (
        "the last retraining started at 2013-04-01T00:00:00+00:00, and "
        "cooldown_hours = 168 allows the next from 2013-04-08T00:00:00+00:00 on "
        "the wall clock, which reads 2013-04-02T00:00:00+00:00 now"
    )
    assert sum("budget used" in r for r in skipped) == 18


def test_trigger_off_and_schedule_only() -> None:
    off = RetrainConfig()
    scheduled = RetrainConfig(trigger="schedule", schedule="0 3 * * 1")

    assert decide_retrain(off, "drift", T0, [], 10**6).act is False
    assert decide_retrain(scheduled, "drift", T0, [], 10**6).act is False
    assert decide_retrain(scheduled, "schedule", T0, [], 10**6).act is True
    assert decide_retrain(off, "manual", T0, [], 10**6).act is True


def test_min_new_labels_blocks() -> None:
    policy = RetrainConfig(trigger="both", schedule="0 3 * * *", min_new_labels=500)

    decision = decide_retrain(policy, "schedule", T0, [], 499)

    assert decision.act is False
    assert decision.reason == "499 new labels, fewer than min_new_labels = 500"
    assert decide_retrain(policy, "schedule", T0, [], 0).act is False
    assert decide_retrain(policy, "schedule", T0, [], 500).act is True


def test_zero_new_rows_no_retraining() -> None:
    policy = RetrainConfig(trigger="drift", min_new_labels=0)

    no_rows = decide_retrain(policy, "drift", T0, [], 0)
    manual = decide_retrain(policy, "manual", T0, [], 0)
    one_row = decide_retrain(policy, "drift", T0, [], 1)

    assert no_rows.act is False
    assert no_rows.reason == "no new labels since the last retraining"
    assert manual.act is False
    assert one_row.act is True


def test_sliding_window_days_and_rows() -> None:
    times = np.array(
        [np.datetime64("2013-01-01") + np.timedelta64(d, "D") for d in range(100)]
    )
    now = datetime(2013, 4, 10, 23, 59)
    policy = RetrainConfig(window="sliding", window_days=30, holdout_days=7)

    train, holdout = training_window(policy, times, now)

    assert np.flatnonzero(holdout).tolist() == list(range(93, 100))
    assert np.flatnonzero(train).tolist() == list(range(63, 93))

    by_rows = RetrainConfig(window="sliding", window_days=None, window_rows=10)
    train, _ = training_window(by_rows, times, now)
    assert np.flatnonzero(train).tolist() == list(range(83, 93))


def test_expanding_window_keeps_all() -> None:
    times = np.array(
        [np.datetime64("2013-01-01") + np.timedelta64(d, "D") for d in range(100)]
    )
    policy = RetrainConfig(window="expanding", holdout_days=7)

    train, holdout = training_window(policy, times, datetime(2013, 4, 10, 23, 59))

    assert int(train.sum()) == 93
    assert int(holdout.sum()) == 7


def test_worse_challenger_not_promoted() -> None:
    policy = RetrainConfig(promote_margin=0.002)

    worse = decide_promotion(policy, 0.70, 0.69, parity_ok=True)
    tiny = decide_promotion(policy, 0.70, 0.701, parity_ok=True)
    better = decide_promotion(policy, 0.70, 0.71, parity_ok=True)
    no_parity = decide_promotion(policy, 0.70, 0.80, parity_ok=False)

    assert worse.act is False
    assert "below margin 0.002" in worse.reason
    assert tiny.act is False
    assert better.act is True
    assert no_parity.act is False
    assert no_parity.reason == "challenger failed the ONNX parity check"


def test_lower_is_better_metric() -> None:
    policy = RetrainConfig(metric="log_loss", promote_margin=0.01)

    assert decide_promotion(policy, 0.50, 0.48, parity_ok=True).act is True
    assert decide_promotion(policy, 0.50, 0.495, parity_ok=True).act is False


def test_rollback_fires_beyond_margin() -> None:
    policy = RetrainConfig(rollback_margin=0.02)

    assert decide_rollback(policy, 0.66, 0.70).act is True
    assert decide_rollback(policy, 0.69, 0.70).act is False
    assert decide_rollback(policy, None, 0.70).act is False


def test_retrain_config_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="needs 'schedule'"):
        RetrainConfig(trigger="schedule")
    with pytest.raises(ValueError, match="not a valid cron line"):
        RetrainConfig(trigger="both", schedule="61 * * * *")


def test_budget_of_one_day_singular() -> None:
    policy = RetrainConfig(
        trigger="drift", cooldown_hours=0, budget=1, budget_days=1, min_new_labels=0
    )

    decision = decide_retrain(policy, "drift", days(0.5), [days(0)], 10_000)

    assert decision.act is False
    assert decision.reason == "budget used: 1 retraining in the last 1 day"
