"""Cross-validation of a pipeline on the training rows, with metrics per fold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from appliance.config import CVConfig, ModelConfig
from appliance.errors import TrainingError, shown
from appliance.training._metrics import classification_metrics, regression_metrics
from appliance.training._stop import StopCheck


def splitter(cv: CVConfig, seed: int) -> Any:
    """Return the scikit-learn splitter that `cv` declares.

    ``time`` folds keep row order (the training frame is in time order when
    the holdout split is ``time``) and validate each fold on later rows only.
    """
    from sklearn.model_selection import KFold, StratifiedKFold, TimeSeriesSplit

    if cv.method == "stratified":
        return StratifiedKFold(n_splits=cv.folds, shuffle=True, random_state=seed)
    if cv.method == "time":
        return TimeSeriesSplit(n_splits=cv.folds)
    return KFold(n_splits=cv.folds, shuffle=True, random_state=seed)


def cross_validate(
    pipeline: Any,
    x: pd.DataFrame,
    y: np.ndarray,
    cv: CVConfig,
    seed: int,
    n_classes: int | None,
    stop: StopCheck | None = None,
    fit_params: dict[str, Any] | None = None,
    model: str = "NAME",
) -> list[dict[str, float]]:
    """Fit a clone of `pipeline` per fold and return each fold's metrics.

    Each dictionary contains every metric of the task on the fold's validation
    rows, plus ``rows_train`` and ``rows_validation``. `stop` is checked before
    each fold, and `fit_params` go to each fold's fit. `model` names the
    model's table in the error of a failed split.

    Raises:
        TrainingError: The rows cannot be split into `cv.folds` folds, or a fit
            fails.
        TrainingStopped: `stop` was set.
    """
    from sklearn.base import clone

    try:
        splits = list(splitter(cv, seed).split(x, y))
    except ValueError as exc:
        raise TrainingError(
            f"cannot split {len(y)} training rows into {cv.folds} "
            f"{cv.method} folds: {exc}; {_folds_advice(cv, y, n_classes, model)}"
        ) from None
    folds = []
    for index, (train, valid) in enumerate(splits):
        if stop is not None:
            stop(f"before cross-validation fold {index}")
        fitted = clone(pipeline)
        try:
            fitted.fit(x.iloc[train], y[train], **(fit_params or {}))
        except ValueError as exc:
            raise TrainingError(f"fitting fold {index} failed: {exc}") from exc
        scores = _fold_metrics(fitted, x.iloc[valid], y[valid], n_classes)
        folds.append(
            {"rows_train": float(len(train)), "rows_validation": float(len(valid))}
            | scores
        )
    return folds


def check_fold_classes(
    cfg: ModelConfig, x: pd.DataFrame, y: np.ndarray, classes: Sequence[Any]
) -> None:
    """Reject cross-validation folds whose training rows have a single class.

    Such a fold cannot fit a classifier: logistic regression raises, and
    LightGBM returns two probability columns for its one class. A fold that
    lacks only some classes is scored, and `cross_validate` gives those
    classes zero probability. A split that fails is left to `cross_validate`
    and the search, which name the fold count the rows allow.

    Raises:
        TrainingError: Naming the fold, its rows, the class and what to change.
    """
    cv = cfg.cv or CVConfig()
    try:
        splits = list(splitter(cv, cfg.split.seed).split(x, y))
    except ValueError:
        return
    for index, (train, _) in enumerate(splits):
        found = np.unique(y[train])
        if len(found) > 1:
            continue
        label = shown(classes[found[0]])
        rows = f"{len(train)} training rows"
        if cv.method == "time":
            rows = f"first {rows} by {cfg.split.column!r}"
        raise TrainingError(
            f"fold {index} of the {cv.method} cross-validation of model "
            f"{cfg.name!r} trains on its {rows}, which have only class {label}, "
            f"so the fold cannot fit a classifier. {_fold_class_advice(cfg, cv, y)}"
        )


def _fold_class_advice(cfg: ModelConfig, cv: CVConfig, y: np.ndarray) -> str:
    """Return what to change so that every fold trains on two classes."""
    section = f"[models.{cfg.name}.cv]"
    if cv.method != "time":
        advice = "Add labelled rows of the other classes"
        if cv.method == "kfold":
            advice = f'Set method = "stratified" in {section}, or add labelled rows'
        return advice
    # The first fold trains on the fewest rows, so it decides. TimeSeriesSplit
    # validates k folds of len(y) // (k + 1) rows each, after the rest.
    first = int(np.flatnonzero(y != y[0])[0])
    allowed = [
        k for k in range(2, cv.folds) if len(y) - k * (len(y) // (k + 1)) > first
    ]
    fewer = f"set folds to {max(allowed)} or fewer in {section}, " if allowed else ""
    return (
        f"The first row of another class comes after {first} rows of that class; "
        f"{fewer}add earlier labelled rows of other classes, or remove {section}"
    )


def _folds_advice(
    cv: CVConfig, y: np.ndarray, n_classes: int | None, model: str
) -> str:
    """Return the fold count the rows allow, as the fix of a failed split."""
    max_folds = len(y) - 1 if cv.method == "time" else len(y)
    if cv.method == "stratified" and n_classes:
        max_folds = int(np.bincount(y, minlength=n_classes).max())
    fewer = (
        f"set folds to {max_folds} or fewer in [models.{model}.cv]"
        if max_folds >= 2
        else f"remove [models.{model}.cv]"
    )
    return f"{fewer}, or add labelled rows"


def summarize(folds: list[dict[str, float]]) -> dict[str, float]:
    """Return ``cv_<metric>_mean`` and ``cv_<metric>_std`` over the folds.

    >>> summarize([{"mae": 1.0}, {"mae": 3.0}])
    {'cv_mae_mean': 2.0, 'cv_mae_std': 1.0}
    """
    result = {}
    for key in folds[0]:
        if key.startswith("rows_"):
            continue
        values = np.array([fold[key] for fold in folds], dtype=float)
        result[f"cv_{key}_mean"] = float(np.nanmean(values))
        result[f"cv_{key}_std"] = float(np.nanstd(values))
    return result


def _fold_metrics(
    fitted: Any, x: pd.DataFrame, y: np.ndarray, n_classes: int | None
) -> dict[str, float]:
    if n_classes is None:
        return regression_metrics(y, np.asarray(fitted.predict(x), dtype=float))
    proba = np.asarray(fitted.predict_proba(x), dtype=float)
    if proba.shape[1] != n_classes:
        # A fold whose training rows lack a class gives fewer columns.
        full = np.zeros((len(proba), n_classes))
        full[:, fitted.classes_] = proba
        proba = full
    return classification_metrics(y, proba, n_classes)
