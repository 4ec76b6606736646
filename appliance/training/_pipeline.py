"""scikit-learn pipelines: imputation, encoding and the estimator, all exportable."""

from __future__ import annotations

import os
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from appliance.config import ModelConfig
from appliance.errors import TrainingError

_DEFAULTS: dict[str, dict[str, Any]] = {
    "lightgbm": {"n_estimators": 200, "learning_rate": 0.05, "verbose": -1},
    "random_forest": {"n_estimators": 100, "max_depth": 16, "min_samples_leaf": 3},
    "logistic_regression": {"max_iter": 1000},
    "linear_regression": {},
}
_SCALED = {"logistic_regression", "linear_regression"}


def estimator_params(cfg: ModelConfig) -> dict[str, Any]:
    """Return the estimator's keyword arguments: defaults, then the config's."""
    params = dict(_DEFAULTS[cfg.algorithm])
    if cfg.algorithm in ("lightgbm", "random_forest"):
        params["random_state"] = cfg.split.seed
        params["n_jobs"] = os.cpu_count() or 1
    if cfg.algorithm == "logistic_regression":
        params["random_state"] = cfg.split.seed
    params.update(cfg.params)
    return params


def build_pipeline(
    cfg: ModelConfig, numeric: list[str], categorical: list[str]
) -> Pipeline:
    """Build the unfitted pipeline of a model.

    Numeric columns are imputed with the median (and standardized for linear
    models); categorical columns are one-hot encoded, with categories unseen in
    training encoded as all zeros.

    Raises:
        TrainingError: A parameter in ``params`` is not accepted by the estimator.
    """
    transformers = []
    if numeric:
        steps: list[tuple[str, Any]] = [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True))
        ]
        if cfg.algorithm in _SCALED:
            steps.append(("scale", StandardScaler()))
        transformers.append(("numeric", Pipeline(steps), numeric))
    if categorical:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        transformers.append(("categorical", encoder, categorical))
    prepare = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("prepare", prepare), ("estimator", _estimator(cfg))])


def _estimator(cfg: ModelConfig) -> Any:
    params = estimator_params(cfg)
    cls = _estimator_class(cfg.task, cfg.algorithm)
    try:
        estimator = cls(**params)
    except TypeError as exc:
        raise TrainingError(
            f"invalid 'models.{cfg.name}.params' for {cfg.algorithm}: {exc}"
        ) from None
    return estimator


def _estimator_class(task: str, algorithm: str) -> type[Any]:
    if algorithm == "lightgbm":
        from lightgbm import LGBMClassifier, LGBMRegressor

        return LGBMClassifier if task == "classification" else LGBMRegressor
    if algorithm == "random_forest":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        return (
            RandomForestClassifier
            if task == "classification"
            else RandomForestRegressor
        )
    if algorithm == "logistic_regression":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression
    from sklearn.linear_model import LinearRegression

    return LinearRegression
