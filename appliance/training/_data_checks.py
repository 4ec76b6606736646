"""Checks of a training frame: splits too small to measure, surprising features.

The split checks raise `TrainingError`, because a model scored on a holdout
too small to measure, or trained without a class, would be registered with
metrics that mean nothing. The feature checks return warnings, one sentence
each, which training prints and records with the run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from appliance.config import MIN_TRAINING_ROWS, ModelConfig
from appliance.errors import TrainingError, shown
from appliance.times import days_text

if TYPE_CHECKING:
    from appliance.training._frame import TrainingFrame, TrainingWindow

MIN_HOLDOUT_ROWS = 2
"""Minimum holdout rows a model is scored on, because R2 and every spread
need two; a classifier also needs one row per class."""
_NUMBER_PREFIX = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"
"""Text that starts with a decimal number, such as ``0.2cm`` or ``12 kg``."""
_NUMBER_SHARE = 0.5
"""Share of a text feature's distinct values that must start with a number
for the feature to be reported as a number stored as text."""


def check_split_sizes(
    cfg: ModelConfig, train_rows: int, holdout_rows: int, classes: Sequence[Any]
) -> None:
    """Reject a split whose holdout or training rows are too few to measure.

    Raises:
        TrainingError: Naming both counts, the minimum and a `test_size` or
            row count that would pass.
    """
    rows = train_rows + holdout_rows
    need_holdout = max(MIN_HOLDOUT_ROWS, len(classes))
    split = cfg.split
    if holdout_rows < need_holdout:
        per_class = ", one per class" if need_holdout > MIN_HOLDOUT_ROWS else ""
        raise TrainingError(
            f"model {cfg.name!r} would be scored on {holdout_rows} holdout rows "
            f"of its {rows} labelled rows (test_size {split.test_size}), too few "
            f"to measure, because scoring needs at least {need_holdout}{per_class}; "
            f"{_size_advice(cfg, rows, need_holdout)}"
        )
    if train_rows < MIN_TRAINING_ROWS:
        raise TrainingError(
            f"model {cfg.name!r} would be fitted on {train_rows} training rows of "
            f"its {rows} labelled rows (test_size {split.test_size}), fewer than "
            f"the minimum of {MIN_TRAINING_ROWS}; add labelled rows, or lower "
            f"test_size in [models.{cfg.name}.split]"
        )


def _size_advice(cfg: ModelConfig, rows: int, need_holdout: int) -> str:
    """Return what to change so the holdout gets `need_holdout` rows."""
    test_size = math.ceil(100 * need_holdout / rows) / 100 if rows else 1.0
    enough = math.ceil(
        max(need_holdout / cfg.split.test_size, need_holdout + MIN_TRAINING_ROWS)
    )
    advice = f"add labelled rows (about {enough} at this test_size)"
    if test_size <= 0.5 and rows - need_holdout >= MIN_TRAINING_ROWS:
        advice += (
            f", or raise test_size in [models.{cfg.name}.split] to {test_size} or more"
        )
    if cfg.split.method == "group":
        advice += ", or split on a column with more groups"
    return advice


def check_frame(frame: TrainingFrame, cfg: ModelConfig) -> None:
    """Reject a training frame whose split cannot fit or measure the model.

    Raises:
        TrainingError: From `check_split_sizes` or `check_classes`.
    """
    classes = frame.classes or []
    check_split_sizes(cfg, len(frame.y_train), len(frame.y_test), classes)
    if classes:
        check_classes(cfg, frame.y_train, frame.y_test, classes)


def check_window_frame(
    frame: TrainingFrame, cfg: ModelConfig, window: TrainingWindow
) -> None:
    """Reject a time window whose split cannot fit or measure the model.

    The limits are those of `check_frame`. The messages name the window's
    event times, the row counts and the retrain settings that size each part.

    Raises:
        TrainingError: Naming the part of the window, its event times, its
            row counts and what to change.
    """
    classes = frame.classes or []
    train_rows, holdout_rows = len(frame.y_train), len(frame.y_test)
    need_holdout = max(MIN_HOLDOUT_ROWS, len(classes))
    holdout = _holdout_span(cfg, window)
    counts = f"{train_rows} training and {holdout_rows} holdout rows"
    section = f"[models.{cfg.name}.retrain]"
    if holdout_rows < need_holdout:
        per_class = ", one per class" if need_holdout > MIN_HOLDOUT_ROWS else ""
        raise TrainingError(
            f"retraining window of model {cfg.name!r} has {counts}, too few "
            f"holdout rows ({holdout}) to measure, because scoring needs at least "
            f"{need_holdout}{per_class}; send labelled rows of that period, or "
            f"raise holdout_days in {section}"
        )
    if train_rows < MIN_TRAINING_ROWS:
        raise TrainingError(
            f"retraining window of model {cfg.name!r} has {counts}, fewer "
            f"training rows ({_training_span(cfg, window)}) than the minimum of "
            f"{MIN_TRAINING_ROWS}; {_training_advice(cfg, window)}"
        )
    if classes:
        _check_window_classes(cfg, window, frame, counts)


def _check_window_classes(
    cfg: ModelConfig, window: TrainingWindow, frame: TrainingFrame, counts: str
) -> None:
    """Reject a window without a class in training, or a holdout not measurable.

    The holdout needs every class when the model's metric is ROC or PR AUC,
    as in `check_classes`. Retraining scores champion and challenger by the
    policy's metric. That is ROC AUC unless the policy sets ``log_loss`` or
    ``accuracy``, and it needs at least two classes in the holdout.
    """
    classes = frame.classes or []
    start = f"retraining window of model {cfg.name!r} has {counts}, and its"
    missing = _missing_classes(frame.y_train, classes)
    if missing:
        raise TrainingError(
            f"{start} training rows ({_training_span(cfg, window)}) have no row "
            f"of class {missing}, so the model could not predict it; "
            f"{_training_advice(cfg, window, 'send labelled rows of that class')}"
        )
    missing = _missing_classes(frame.y_test, classes)
    metric = _unmeasured_metric(cfg, frame.y_test, missing)
    if metric is None:
        return
    raise TrainingError(
        f"{start} holdout rows ({_holdout_span(cfg, window)}) have no row of class "
        f"{missing}, so its {metric} cannot be measured; send labelled rows of "
        f"that class for that period, or raise holdout_days in "
        f"[models.{cfg.name}.retrain]"
    )


def _unmeasured_metric(
    cfg: ModelConfig, y_test: np.ndarray, missing: str
) -> str | None:
    """Return the metric that a window's holdout classes leave unmeasured."""
    if missing and cfg.primary_metric in ("roc_auc", "pr_auc"):
        return f"metric {cfg.primary_metric}"
    if cfg.retrain.metric in ("log_loss", "accuracy"):
        return None
    if len(np.unique(y_test)) < 2:
        return "retraining metric roc_auc"
    return None


def _holdout_span(cfg: ModelConfig, window: TrainingWindow) -> str:
    """Describe a window's holdout by its event times and its length in days."""
    days = (window.end - window.holdout_start).total_seconds() / 86400
    return (
        f"{cfg.event_timestamp} from {window.holdout_start.isoformat()} to "
        f"{window.end.isoformat()}, {days_text(days)}"
    )


def _training_span(cfg: ModelConfig, window: TrainingWindow) -> str:
    """Describe the event times of a window's training rows."""
    holdout_start = window.holdout_start.isoformat()
    if window.start is not None:
        days = (window.holdout_start - window.start).total_seconds() / 86400
        span = (
            f"{cfg.event_timestamp} from {window.start.isoformat()} up to "
            f"{holdout_start}, {days_text(days)}"
        )
    else:
        span = f"every {cfg.event_timestamp} before {holdout_start}"
    if window.max_rows is not None:
        span += f", the latest {window.max_rows} at most"
    if window.refit:
        span += ", plus the holdout rows of this refit"
    return span


def _training_advice(
    cfg: ModelConfig, window: TrainingWindow, first: str = "send older labelled rows"
) -> str:
    """Return `first` plus the retrain settings that widen a window's training."""
    settings = []
    if window.start is not None:
        settings.append("window_days")
    if window.max_rows is not None:
        settings.append("window_rows")
    if not settings:
        return first
    return f"{first}, or raise {' or '.join(settings)} in [models.{cfg.name}.retrain]"


def check_stratified(cfg: ModelConfig, y: np.ndarray, classes: Sequence[Any]) -> None:
    """Reject a stratified split of a class with fewer than two rows.

    scikit-learn names such a class by its index, so this check names it by
    its label before the split runs.

    Raises:
        TrainingError: Naming each class with too few rows and its count.
    """
    counts = np.bincount(y, minlength=len(classes))
    rare = [(classes[i], int(n)) for i, n in enumerate(counts) if n < 2]
    if not rare:
        return
    listed = ", ".join(f"{shown(label)} ({n} row)" for label, n in rare)
    subject = f"class {listed} has" if len(rare) == 1 else f"classes {listed} have"
    raise TrainingError(
        f"cannot split the rows of model {cfg.name!r} stratified on {cfg.target!r}: "
        f"{subject} fewer than 2 labelled rows, and a stratified split "
        "puts at least one row of each class in both training and holdout; add "
        "labelled rows of that class, or leave its rows out with 'where' (a "
        "random split would put the class on one side only)"
    )


def check_classes(
    cfg: ModelConfig, y_train: np.ndarray, y_test: np.ndarray, classes: Sequence[Any]
) -> None:
    """Reject training rows without a class, or a holdout that cannot measure.

    A class missing from the training rows leaves the estimator with fewer
    probability columns than the target has classes. A class missing from the
    holdout makes ``roc_auc`` and ``pr_auc`` NaN, so the check applies when
    one of them is the model's metric.

    Raises:
        TrainingError: Naming the missing classes and what to change.
    """
    fix = _class_advice(cfg)
    missing = _missing_classes(y_train, classes)
    if missing:
        raise TrainingError(
            f"the {len(y_train)} training rows of model {cfg.name!r} have no row of "
            f"class {missing}, so the model could not predict it; {fix}"
        )
    missing = _missing_classes(y_test, classes)
    if missing and cfg.primary_metric in ("roc_auc", "pr_auc"):
        raise TrainingError(
            f"the {len(y_test)} holdout rows of model {cfg.name!r} have no row of "
            f"class {missing}, so its metric {cfg.primary_metric} cannot be "
            f"measured; {fix}"
        )


def _missing_classes(y: np.ndarray, classes: Sequence[Any]) -> str:
    counts = np.bincount(y, minlength=len(classes))
    return ", ".join(shown(classes[i]) for i in np.flatnonzero(counts == 0))


def _class_advice(cfg: ModelConfig) -> str:
    advice = "add labelled rows of that class"
    if cfg.split.method != "stratified":
        advice += f', or set method = "stratified" in [models.{cfg.name}.split]'
    return advice


def check_measured(
    cfg: ModelConfig,
    metrics: dict[str, float],
    rows: int,
    window: TrainingWindow | None = None,
) -> None:
    """Reject a model whose holdout metric came out NaN.

    Raises:
        TrainingError: Naming the metric and the holdout rows.
    """
    metric = cfg.primary_metric
    if not math.isnan(metrics.get(metric, 0.0)):
        return
    advice = f"raise test_size in [models.{cfg.name}.split]"
    holdout = f"its {rows} holdout rows"
    if window is not None:
        advice = f"raise holdout_days in [models.{cfg.name}.retrain]"
        holdout += f" ({_holdout_span(cfg, window)})"
    raise TrainingError(
        f"metric {metric} of model {cfg.name!r} is NaN on {holdout}, so the "
        "version would be registered without a measure of its quality; add "
        f"labelled rows, or {advice}"
    )


def group_column_warnings(cfg: ModelConfig) -> list[str]:
    """Return a warning when the model lists the column its group split uses.

    Training leaves that column out of the features: a model that reads the
    group id can learn each group's rows, which the holdout of unseen groups
    would neither need nor measure.
    """
    if cfg.split.method != "group":
        return []
    column = cfg.split.column
    listed = [
        key
        for key, names in (("features", cfg.features), ("categorical", cfg.categorical))
        if names and column in names
    ]
    if not listed:
        return []
    return [
        f"feature {column!r} of model {cfg.name!r} is the column of its group "
        "split, so training left it out of the features: a model that reads the "
        "group id learns each group, which a holdout of unseen groups does not "
        f"measure; remove it from {' and '.join(listed)} to silence this warning, "
        "or use another split method to train on it"
    ]


def text_number_warnings(
    cfg: ModelConfig, frame: pd.DataFrame, categorical: Sequence[str]
) -> list[str]:
    """Return a warning per text feature whose values mostly start with a number.

    Such a feature, like ``0.2cm``, is one-hot encoded with one category per
    value, which is rarely what a column of measurements was meant to be.
    Features the model lists in ``categorical`` are not reported.
    """
    warnings = []
    for name in categorical:
        if name in cfg.categorical:
            continue
        values = frame[name].dropna()
        distinct = pd.Series(values[values != ""].unique(), dtype=object).astype(str)
        if distinct.empty:
            continue
        numeric = distinct[distinct.str.match(_NUMBER_PREFIX)]
        if len(numeric) < _NUMBER_SHARE * len(distinct):
            continue
        warnings.append(
            f"feature {name!r} of model {cfg.name!r} is text in dataset "
            f"{cfg.dataset!r}, though {len(numeric)} of its {len(distinct)} "
            f"distinct values start with a number, such as {shown(numeric.iloc[0])}; "
            f"it is one-hot encoded as a category per value. Ingest it as "
            "numbers, or derive a number in [models."
            f"{cfg.name}.derive] (such as TRY_CAST(regexp_extract(...) AS DOUBLE)); "
            "list it in 'categorical' to keep the categories and silence this "
            "warning"
        )
    return warnings


def empty_feature_warnings(cfg: ModelConfig, x_train: pd.DataFrame) -> list[str]:
    """Return a warning per feature without a value in any training row."""
    warnings = []
    for name in x_train.columns:
        values = x_train[name]
        present = values.notna() & (values != "")
        if present.any():
            continue
        warnings.append(
            f"feature {name!r} of model {cfg.name!r} has no value in any of its "
            f"{len(x_train)} training rows, so it carries no information; fill "
            "the column or leave it out of 'features'"
        )
    return warnings


def unused_derive_warnings(cfg: ModelConfig) -> list[str]:
    """Return a warning per derived column that nothing of the model reads."""
    advice = "list it in 'features' to train on it"
    if cfg.features is None:
        advice += " (derived columns are features only when listed there)"
    return [
        f"derived column {name!r} of model {cfg.name!r} is not used: no feature, "
        f"the target, the split column, event_timestamp or 'where' reads it; "
        f"{advice}, or remove it from [models.{cfg.name}.derive]"
        for name in cfg.unused_derive
    ]
