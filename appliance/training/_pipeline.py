"""scikit-learn pipelines: imputation, encoding and the estimator, all exportable."""

from __future__ import annotations

import os
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from appliance.config import ModelConfig
from appliance.errors import TrainingError
from appliance.training._encoders import MISSING, OrdinalCodes, RareCategories
from appliance.training._scaled import ROUND_STEP, SCALE_STEP, RoundToFloat32

_DEFAULTS: dict[str, dict[str, Any]] = {
    "lightgbm": {"n_estimators": 200, "learning_rate": 0.05, "verbose": -1},
    "random_forest": {"n_estimators": 100, "max_depth": 16, "min_samples_leaf": 3},
    "logistic_regression": {"max_iter": 1000},
    "linear_regression": {},
}
_SCALED = {"logistic_regression", "linear_regression"}
_TREES = {"lightgbm", "random_forest"}


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
    """Build the unfitted pipeline of a model from its ``preprocess`` settings.

    Numeric columns are imputed and scaled together. A tree ensemble's
    scaled inputs are first rounded to float32, as ONNX reads them, because
    its export leaves the scaler out (`appliance.training._scaled`). Each
    categorical column gets its own imputer and encoder, because skl2onnx can
    only export a text imputer that reads a single column. Every step has an
    ONNX converter or is left out of the export.

    Raises:
        TrainingError: A parameter in ``params`` is not accepted by the estimator.
    """
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(("numeric", _numeric_steps(cfg), numeric))
    for name in categorical:
        transformers.append((f"categorical_{name}", _categorical_steps(cfg), [name]))
    prepare = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("prepare", prepare), ("estimator", _estimator(cfg))])


def _numeric_steps(cfg: ModelConfig) -> Pipeline:
    settings = cfg.preprocess
    impute = SimpleImputer(
        strategy=settings.numeric_impute,
        fill_value=settings.numeric_fill,
        keep_empty_features=True,
    )
    steps: list[tuple[str, Any]] = [("impute", impute)]
    scale = settings.scale
    if scale == "auto":
        scale = "standard" if cfg.algorithm in _SCALED else "none"
    if scale != "none" and cfg.algorithm in _TREES:
        steps.append((ROUND_STEP, RoundToFloat32()))
    if scale == "standard":
        steps.append((SCALE_STEP, StandardScaler()))
    elif scale == "minmax":
        steps.append((SCALE_STEP, MinMaxScaler()))
    return Pipeline(steps)


def _categorical_steps(cfg: ModelConfig) -> Pipeline:
    settings = cfg.preprocess
    steps: list[tuple[str, Any]] = []
    if settings.categorical_impute != "none":
        impute = SimpleImputer(
            missing_values=MISSING,
            strategy=settings.categorical_impute,
            fill_value=settings.categorical_fill,
            keep_empty_features=True,
        )
        steps.append(("impute", impute))
    if settings.encoding == "ordinal":
        encoder: Any = OrdinalCodes(
            unknown_value=settings.unknown_value,
            missing_value=settings.missing_value,
            min_frequency=settings.min_frequency,
        )
    else:
        if settings.min_frequency is not None:
            steps.append(("group_rare", RareCategories(settings.min_frequency)))
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    steps.append(("encode", encoder))
    return Pipeline(steps)


def _estimator(cfg: ModelConfig) -> Any:
    params = estimator_params(cfg)
    cls = estimator_class(cfg.task, cfg.algorithm)
    try:
        estimator = cls(**params)
    except TypeError as exc:
        raise TrainingError(
            f"invalid 'models.{cfg.name}.params' for {cfg.algorithm}: {exc}"
        ) from None
    return estimator


def fit_errors(cfg: ModelConfig) -> tuple[type[Exception], ...]:
    """Return the errors a fit raises for data or settings it cannot use."""
    if cfg.algorithm == "lightgbm":
        from lightgbm.basic import LightGBMError

        return (ValueError, LightGBMError)
    return (ValueError,)


def estimator_class(task: str, algorithm: str) -> type[Any]:
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
