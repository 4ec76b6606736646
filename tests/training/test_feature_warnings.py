"""Warnings about features that training left out, changed or found empty."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pipeline_support import load_model, train_on, write_config
from sklearn.datasets import load_diabetes, load_iris, load_wine
from support import run_appliance

from appliance.config import load_config
from appliance.errors import ConfigError
from appliance.storage import Catalog, get_run

WINE_MODEL = """
[models.m]
dataset = "d"
target = "cultivar"
task = "classification"
algorithm = "lightgbm"
categorical = ["vineyard"]
params = {n_estimators = 10, min_child_samples = 5, verbose = -1}
[models.m.split]
method = "group"
column = "vineyard"
test_size = 0.3
"""

IRIS_MODEL = """
[models.m]
dataset = "d"
target = "species"
task = "classification"
algorithm = "logistic_regression"
"""

DIABETES_MODEL = """
[models.m]
dataset = "d"
target = "target"
task = "regression"
algorithm = "linear_regression"
features = ["age", "bmi", "bp", "s5"]
"""


def _wine() -> pd.DataFrame:
    wine = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    wine["cultivar"] = wine["cultivar"].map({0: "a", 1: "b", 2: "c"})
    wine["vineyard"] = [f"v{i % 8}" for i in range(len(wine))]
    return wine


def _iris() -> pd.DataFrame:
    iris = load_iris(as_frame=True)
    data = iris.frame.drop(columns=["target"])
    data.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    data["species"] = iris.target_names[iris.target]
    return data


def _run_warnings(tmp_path: Path, run_id: str) -> list[str]:
    with Catalog(tmp_path / "home", read_only=True) as catalog:
        run = get_run(catalog, run_id)
    assert run.evaluation is not None
    return list(run.evaluation["warnings"])


def test_group_column_left_out_with_warning(tmp_path: Path) -> None:
    config, result = train_on(tmp_path, _wine(), WINE_MODEL)

    (warning,) = result.warnings
    assert "feature 'vineyard' of model 'm' is the column of its group split" in (
        warning
    )
    assert "remove it from categorical" in warning
    assert _run_warnings(tmp_path, result.run_id) == [warning]
    inputs = [column["name"] for column in load_model(config).request]
    assert "vineyard" not in inputs
    assert "alcohol" in inputs


def test_group_column_listed_in_features_left_out(tmp_path: Path) -> None:
    model = WINE_MODEL.replace(
        'categorical = ["vineyard"]',
        'features = ["alcohol", "hue", "vineyard"]\ncategorical = ["vineyard"]',
    )
    config, result = train_on(tmp_path, _wine(), model)

    (warning,) = result.warnings
    assert "remove it from features and categorical" in warning
    inputs = [column["name"] for column in load_model(config).request]
    assert inputs == ["alcohol", "hue"]


def test_group_split_without_listing_has_no_warning(tmp_path: Path) -> None:
    model = WINE_MODEL.replace('categorical = ["vineyard"]\n', "")
    _, result = train_on(tmp_path, _wine(), model)

    assert result.warnings == []


def test_train_command_prints_group_warning(tmp_path: Path) -> None:
    config = write_config(tmp_path, WINE_MODEL)
    source = tmp_path / "wine.csv"
    _wine().to_csv(source, index=False)
    home = tmp_path / "home"

    ingested = run_appliance(config, home, "ingest", "d", str(source))
    trained = run_appliance(config, home, "train", "m")

    assert ingested.returncode == 0, ingested.stderr
    assert trained.returncode == 0, trained.stderr
    warnings = [
        line for line in trained.stdout.splitlines() if line.startswith("warning:")
    ]
    assert len(warnings) == 1, trained.stdout
    assert "'vineyard' of model 'm' is the column of its group split" in warnings[0]


def test_numbers_stored_as_text_warned(tmp_path: Path) -> None:
    data = _iris()
    data["petal_width"] = data["petal_width"].map(lambda v: f"{v}cm")
    _, result = train_on(tmp_path, data, IRIS_MODEL)

    (warning,) = result.warnings
    assert "feature 'petal_width' of model 'm' is text in dataset 'd'" in warning
    assert "22 of its 22 distinct values start with a number" in warning
    assert "such as '0.2cm'" in warning
    assert _run_warnings(tmp_path, result.run_id) == [warning]


def test_numbers_as_text_listed_categorical_silent(tmp_path: Path) -> None:
    data = _iris()
    data["petal_width"] = data["petal_width"].map(lambda v: f"{v}cm")
    _, result = train_on(tmp_path, data, IRIS_MODEL + 'categorical = ["petal_width"]\n')

    assert result.warnings == []


def test_text_categories_not_warned(tmp_path: Path) -> None:
    data = _iris()
    data["garden"] = np.where(np.arange(len(data)) % 3 == 0, "north", "south")
    _, result = train_on(tmp_path, data, IRIS_MODEL)

    assert result.warnings == []


def test_empty_feature_warned(tmp_path: Path) -> None:
    data = _iris()
    data["notes"] = pd.Series([None] * len(data), dtype="string")
    data["depth"] = np.nan
    _, result = train_on(tmp_path, data, IRIS_MODEL)

    notes, depth = sorted(result.warnings)
    assert "feature 'depth' of model 'm' has no value in any of its 120" in notes
    assert "feature 'notes' of model 'm' has no value" in depth
    assert "leave it out of 'features'" in depth
    assert sorted(_run_warnings(tmp_path, result.run_id)) == [notes, depth]


def test_unused_derived_column_warned(tmp_path: Path) -> None:
    model = DIABETES_MODEL + '[models.m.derive]\nbmi_squared = "bmi * bmi"\n'
    diabetes = load_diabetes(as_frame=True).frame
    _, result = train_on(tmp_path, diabetes, model)

    (warning,) = result.warnings
    assert "derived column 'bmi_squared' of model 'm' is not used" in warning
    assert "list it in 'features' to train on it" in warning
    assert _run_warnings(tmp_path, result.run_id) == [warning]


def test_derived_columns_read_by_model_not_warned(tmp_path: Path) -> None:
    model = (
        DIABETES_MODEL.replace('target = "target"', 'target = "progression"')
        + 'where = "older"\n'
        + "[models.m.derive]\n"
        + 'progression = "target"\n'
        + 'age_over = "age - 0.01"\n'
        + 'older = "age_over > 0"\n'
    )
    diabetes = load_diabetes(as_frame=True).frame
    _, result = train_on(tmp_path, diabetes, model)

    assert result.warnings == []


def test_unused_derived_window_function_rejected(tmp_path: Path) -> None:
    model = DIABETES_MODEL + (
        '[models.m.derive]\nbmi_rank = "rank() OVER (ORDER BY bmi)"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, model))

    message = str(caught.value)
    assert "derived column 'bmi_rank' uses a window function" in message
    assert "No feature, target, split column or 'where' reads 'bmi_rank'" in message
