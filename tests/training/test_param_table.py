"""The table of estimator parameters that the config checks without the libraries."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from lightgbm import LGBMClassifier
from lightgbm.basic import LightGBMError

from appliance import _param_table
from appliance._param_checks import LIGHTGBM_RULES, check_params
from appliance.training._param_source import build_table
from appliance.training._pipeline import estimator_class

REGENERATE = "run python -m appliance.training._param_source and ruff format"


def test_table_matches_installed_libraries() -> None:
    fresh = build_table()

    assert fresh["classes"] == _param_table.CLASSES, REGENERATE
    assert fresh["names"] == _param_table.NAMES, REGENERATE
    assert fresh["constraints"] == _param_table.CONSTRAINTS, REGENERATE
    assert fresh["lightgbm_params"] == _param_table.LIGHTGBM_PARAMS, REGENERATE
    assert fresh["lightgbm_aliases"] == _param_table.LIGHTGBM_ALIASES, REGENERATE


def lightgbm_accepts(name: str, value: Any) -> bool:
    """Fit one round on a few rows with `name` set to `value` alone."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 2))
    y = np.arange(20) % 2
    probe = {"verbose": -1, name: value}
    if name != "num_iterations":
        probe["n_estimators"] = 1
    try:
        LGBMClassifier(**probe).fit(x, y)
    except (LightGBMError, ValueError, TypeError):
        return False
    return True


def probe_values(rule: tuple) -> tuple[list[Any], list[Any]]:
    """Return values the rule accepts and values it rejects, at its edges."""
    if rule[0] == "type":
        kind = rule[1]
        if kind == "bool":
            return [True, False], ["x"]
        if kind == "int":
            return [-1, 0, 3], ["x", 0.5]
        return [-1.5, 0, 2.5], ["x"]
    _, kind, left, right, closed = rule
    step = 1 if kind == "int" else 0.001
    accepted, rejected = [], ["x"]
    if kind == "int":
        rejected.append(0.5 if left is None else left + 0.5)
    for bound, inward, closed_here in (
        (left, step, closed in ("left", "both")),
        (right, -step, closed in ("right", "both")),
    ):
        if bound is None:
            continue
        accepted.append(bound if closed_here else bound + inward)
        rejected.append(bound - inward if closed_here else bound)
    return accepted, rejected


@pytest.mark.parametrize("name", sorted(LIGHTGBM_RULES))
def test_lightgbm_rule_matches_lightgbm(name: str) -> None:
    for rule in LIGHTGBM_RULES[name]:
        accepted, rejected = probe_values(rule)
        for value in accepted:
            assert lightgbm_accepts(name, value), (name, value)
            check_params("m", "lightgbm", "classification", {name: value})
        for value in rejected:
            assert not lightgbm_accepts(name, value), (name, value)
            with pytest.raises(ValueError, match=f"params\\] {name} = "):
                check_params("m", "lightgbm", "classification", {name: value})


SKLEARN_CASES = [
    ("random_forest", "classification", {"max_depth": 0}),
    ("random_forest", "classification", {"max_depth": 3}),
    ("random_forest", "classification", {"max_features": "auto"}),
    ("random_forest", "classification", {"max_features": 0.5}),
    ("random_forest", "classification", {"max_features": 1.5}),
    ("random_forest", "classification", {"min_samples_split": 1}),
    ("random_forest", "classification", {"min_samples_leaf": 1.0}),
    ("random_forest", "classification", {"criterion": "squared_error"}),
    ("random_forest", "regression", {"criterion": "squared_error"}),
    ("random_forest", "regression", {"n_estimators": "ten"}),
    ("random_forest", "regression", {"random_state": -1}),
    ("logistic_regression", "classification", {"C": 0}),
    ("logistic_regression", "classification", {"C": 0.5}),
    ("logistic_regression", "classification", {"penalty": "l3"}),
    ("logistic_regression", "classification", {"solver": "saga"}),
    ("logistic_regression", "classification", {"l1_ratio": 1.5}),
    ("linear_regression", "regression", {"positive": True}),
    ("linear_regression", "regression", {"tol": -1.0}),
]


@pytest.mark.parametrize(("algorithm", "task", "params"), SKLEARN_CASES)
def test_sklearn_check_agrees_with_sklearn(
    algorithm: str, task: str, params: dict[str, Any]
) -> None:
    from sklearn.utils._param_validation import InvalidParameterError

    try:
        estimator_class(task, algorithm)(**params)._validate_params()
    except InvalidParameterError:
        valid = False
    else:
        valid = True

    if valid:
        check_params("m", algorithm, task, params)
    else:
        with pytest.raises(ValueError, match=f"{next(iter(params))} = "):
            check_params("m", algorithm, task, params)


def test_numpy_values_from_search_accepted() -> None:
    check_params("m", "lightgbm", "classification", {"num_leaves": np.int64(7)})
    check_params("m", "lightgbm", "regression", {"learning_rate": np.float64(0.1)})
    check_params("m", "random_forest", "regression", {"n_estimators": np.int64(5)})
    check_params("m", "random_forest", "regression", {"max_features": np.float64(0.5)})
    with pytest.raises(ValueError, match="num_leaves = "):
        check_params("m", "lightgbm", "classification", {"num_leaves": np.int64(1)})
    with pytest.raises(ValueError, match="n_estimators = True "):
        check_params("m", "random_forest", "regression", {"n_estimators": True})
