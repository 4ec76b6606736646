"""Pure parts of a retraining: its clock, its window and the holdout scores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from appliance.config import RetrainConfig

CLASSIFICATION_METRICS = ("roc_auc", "log_loss", "accuracy")
COUNTED_OUTCOMES = ("running", "promoted", "rejected")
"""Outcomes of runs that trained, which the cool-down, the budget and the count
of new labels start from. An ``interrupted`` run is not counted: the run that
resumes it is. A ``failed`` run trained no model, so only the policy's
`retry_minutes` delay the next run after it."""

_SAME_MOMENT = timedelta(minutes=1)
"""Maximum time between a run's start and its as_of time for a record without
a stored clock to count as a wall-clock run."""


def effective_metric(task: str, metric: str) -> str:
    """Return the policy's metric, or the task's default when it does not fit.

    A regression model's policy keeps the ``roc_auc`` default unless it sets
    ``mae``, so a regression always compares by MAE.
    """
    if task == "regression":
        return "mae"
    return metric if metric in CLASSIFICATION_METRICS else "roc_auc"


def window_bounds(
    policy: RetrainConfig, now: datetime
) -> tuple[datetime | None, datetime, int | None]:
    """Return the training start, the holdout start and the row cap of a run.

    The holdout is the last `holdout_days` before `now`. A sliding window
    starts `window_days` before the holdout and keeps at most `window_rows`
    training rows; an expanding window keeps every earlier row.
    """
    holdout_start = now - timedelta(days=policy.holdout_days)
    if policy.window == "expanding":
        return None, holdout_start, None
    start = None
    if policy.window_days is not None:
        start = holdout_start - timedelta(days=policy.window_days)
    return start, holdout_start, policy.window_rows


def run_clock(record: dict[str, Any]) -> str:
    """Return the clock of a recorded run's as_of time: ``wall`` or ``event``.

    Runs store it in ``detail["clock"]``. For a record without it, an as_of
    time within a minute of the start is taken as the wall clock's.

    NOTE: such a guess takes an event-clock run of live data, whose latest
    label came less than a minute before the run, for a wall-clock run.
    """
    stored = (record.get("detail") or {}).get("clock")
    if stored in ("wall", "event"):
        return str(stored)
    as_of = record.get("as_of")
    if as_of is None:
        return "wall"
    gap = abs(as_utc(as_of) - as_utc(record["started_at"]))
    return "wall" if gap <= _SAME_MOMENT else "event"


def time_on_clock(record: dict[str, Any], clock: str) -> datetime | None:
    """Return when a recorded run happened on `clock`, or None when unknown.

    On the wall clock a run has its as_of time, when that is a wall-clock
    time, else its start. On the event clock only a run whose as_of time is
    an event time has a place: the event time a wall-clock run saw is not
    stored.
    """
    if run_clock(record) == clock and record.get("as_of") is not None:
        return as_utc(record["as_of"])
    if clock == "wall":
        return as_utc(record["started_at"])
    return None


def as_utc(value: datetime) -> datetime:
    """Return `value` as an aware UTC datetime; a naive one is taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def score(metric: str, y: np.ndarray, output: np.ndarray) -> float | None:
    """Score model outputs on holdout targets with `metric`.

    Args:
        metric: ``roc_auc``, ``log_loss``, ``accuracy`` or ``mae``.
        y: Targets: class indices for a classifier, values for a regression.
        output: Class probabilities ``(rows, classes)``, or values ``(rows,)``.

    Returns:
        The score, or None when it is undefined (ROC AUC of one class).

    >>> y = np.array([0, 1, 1, 0])
    >>> p = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.9, 0.1]])
    >>> score("roc_auc", y, p), score("accuracy", y, p)
    (1.0, 0.75)
    """
    if metric == "mae":
        return float(np.mean(np.abs(np.asarray(output, dtype=np.float64) - y)))
    proba = np.asarray(output, dtype=np.float64)
    labels = np.asarray(y, dtype=np.int64)
    if metric == "accuracy":
        return float(np.mean(proba.argmax(axis=1) == labels))
    if metric == "log_loss":
        picked = np.clip(proba[np.arange(len(labels)), labels], 1e-15, 1.0)
        return float(-np.mean(np.log(picked)))
    return _roc_auc(labels, proba)


def _roc_auc(labels: np.ndarray, proba: np.ndarray) -> float | None:
    """Return the ROC AUC, one-vs-rest macro averaged above two classes."""
    classes = range(proba.shape[1]) if proba.shape[1] > 2 else [1]
    scores = [_binary_auc(labels == c, proba[:, c]) for c in classes]
    present = [s for s in scores if s is not None]
    return float(np.mean(present)) if present else None


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Return the Mann-Whitney ROC AUC with ties counted half."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    # Tied scores share the mean of their ranks.
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def record_dict(record: dict[str, Any]) -> dict[str, Any]:
    """Return the fields of a retraining record as JSON-ready values."""
    values = dict(record)
    for key, value in values.items():
        if isinstance(value, datetime):
            values[key] = value.isoformat()
    return values
