"""The retraining policy: when to retrain, on what rows, and what to promote.

Pure functions of the policy, the clock and past retrainings, so the daemon's
job and the replay script take the same decisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np

from appliance.config import RetrainConfig
from appliance.times import days_text

Reason = Literal["drift", "schedule", "manual"]

HIGHER_IS_BETTER = {"roc_auc": True, "accuracy": True, "log_loss": False, "mae": False}


@dataclass(frozen=True)
class Decision:
    """Whether to act, and why."""

    act: bool
    reason: str


def decide_retrain(
    policy: RetrainConfig,
    trigger: Reason,
    now: datetime,
    past_runs: Sequence[datetime],
    new_labels: int,
    no_labels_reason: str = "no new labels since the last retraining",
    last_run: str = "the last retraining",
    clock: str = "wall",
) -> Decision:
    """Decide whether an alarm or a scheduled tick starts a retraining.

    Args:
        policy: The model's retraining policy.
        trigger: ``drift`` for a drift alarm, ``schedule`` for a cron tick,
            ``manual`` for an operator's request (which skips only the trigger
            check).
        now: Time of the alarm or tick.
        past_runs: Times of earlier retrainings of the model on the clock of
            `now`: start times on the wall clock, as-of times on the event
            clock.
        new_labels: Labels received since the last retraining.
        no_labels_reason: Reason given when `new_labels` is 0, which says
            how the caller counted them.
        last_run: Names the latest of `past_runs` in the cool-down's reason.
        clock: ``wall`` or ``event``, the clock of `now` and `past_runs`,
            named in the cool-down's reason.
    """
    if trigger != "manual" and not _trigger_enabled(policy, trigger):
        return Decision(
            False, f"trigger {trigger!r} is off (policy {policy.trigger!r})"
        )
    last = max(past_runs, default=None)
    cooldown = timedelta(hours=policy.cooldown_hours)
    if last is not None and now - last < cooldown:
        verb = "started at" if clock == "wall" else "took as now"
        return Decision(
            False,
            f"{last_run} {verb} {last.isoformat()}, and cooldown_hours = "
            f"{policy.cooldown_hours:g} allows the next from "
            f"{(last + cooldown).isoformat()} on the {clock} clock, which reads "
            f"{now.isoformat()} now",
        )
    period_start = now - timedelta(days=policy.budget_days)
    used = sum(period_start < run <= now for run in past_runs)
    if used >= policy.budget:
        return Decision(
            False,
            f"budget used: {used} retraining{'' if used == 1 else 's'} in the last "
            f"{days_text(policy.budget_days)}",
        )
    if new_labels == 0:
        # Whatever the policy says, 0 new rows cannot make a better model.
        return Decision(False, no_labels_reason)
    if new_labels < policy.min_new_labels:
        return Decision(
            False,
            f"{new_labels} new labels, fewer than min_new_labels = "
            f"{policy.min_new_labels}",
        )
    return Decision(True, f"{trigger} retraining allowed")


def training_window(
    policy: RetrainConfig, times: np.ndarray, now: datetime
) -> tuple[np.ndarray, np.ndarray]:
    """Split labelled rows into training and holdout rows by the policy.

    The holdout is every row of the last `holdout_days` before `now`. Training
    rows come before it: all of them for an expanding window, else those within
    `window_days` of the holdout start, then the latest `window_rows`.

    Args:
        policy: The model's retraining policy.
        times: ``datetime64`` time of each labelled row.
        now: End of the data; rows after it are ignored.

    Returns:
        Boolean masks over `times`: training rows, holdout rows.
    """
    stamps = np.asarray(times, dtype="datetime64[us]")
    end = np.datetime64(now.replace(tzinfo=None), "us")
    holdout_start = end - _span(policy.holdout_days)
    holdout = (stamps >= holdout_start) & (stamps <= end)
    train = stamps < holdout_start
    if policy.window == "sliding":
        if policy.window_days is not None:
            train &= stamps >= holdout_start - _span(policy.window_days)
        if policy.window_rows is not None:
            rows = np.flatnonzero(train)
            if rows.size > policy.window_rows:
                # Keep the rows with the latest times, not the last positions.
                order = rows[np.argsort(stamps[rows], kind="stable")]
                train[order[: rows.size - policy.window_rows]] = False
    return train, holdout


def decide_promotion(
    policy: RetrainConfig,
    champion: float | None,
    challenger: float | None,
    parity_ok: bool,
) -> Decision:
    """Decide whether a challenger replaces the champion.

    Both scores are the policy's metric on the same holdout rows. The
    challenger must beat the champion by `promote_margin` and pass the export
    parity check; with no champion it only needs a score and parity.
    """
    if not parity_ok:
        return Decision(False, "challenger failed the ONNX parity check")
    if challenger is None or np.isnan(challenger):
        return Decision(False, f"challenger has no {policy.metric} on the holdout")
    if champion is None or np.isnan(champion):
        return Decision(True, "no champion score to beat")
    gain = _gain(policy.metric, champion, challenger)
    if gain < policy.promote_margin:
        return Decision(
            False,
            f"challenger {policy.metric} {challenger:.4f} vs champion "
            f"{champion:.4f}: gain {gain:.4f} below margin {policy.promote_margin}",
        )
    return Decision(
        True,
        f"challenger {policy.metric} {challenger:.4f} beats champion "
        f"{champion:.4f} by {gain:.4f}",
    )


def decide_rollback(
    policy: RetrainConfig, new_live: float | None, old_live: float | None
) -> Decision:
    """Decide whether a newly promoted champion goes back to the previous one.

    Args:
        policy: The model's retraining policy.
        new_live: The new champion's live metric since its promotion.
        old_live: The previous champion's live metric before it was replaced.
    """
    if new_live is None or old_live is None:
        return Decision(False, "live metric not available for both versions")
    loss = -_gain(policy.metric, old_live, new_live)
    if loss > policy.rollback_margin:
        return Decision(
            True,
            f"live {policy.metric} {new_live:.4f} is {loss:.4f} worse than the "
            f"previous champion's {old_live:.4f}, above margin "
            f"{policy.rollback_margin}",
        )
    return Decision(
        False,
        f"live {policy.metric} {new_live:.4f} is not worse than the previous "
        f"champion's {old_live:.4f} by more than {policy.rollback_margin}",
    )


def _gain(metric: str, baseline: float, candidate: float) -> float:
    """Return how much better `candidate` is, positive when it is better."""
    if HIGHER_IS_BETTER[metric]:
        return candidate - baseline
    return baseline - candidate


def _trigger_enabled(policy: RetrainConfig, trigger: Reason) -> bool:
    return policy.trigger == "both" or policy.trigger == trigger


def _span(days: float) -> np.timedelta64:
    return np.timedelta64(int(days * 86_400_000_000), "us")
