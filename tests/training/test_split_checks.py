"""Splits too small to measure a model, and cross-validation that needs order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pipeline_support import train_on, write_config
from sklearn.datasets import load_diabetes, load_iris

from appliance.config import load_config
from appliance.errors import ConfigError, TrainingError
from appliance.storage import Catalog, list_runs

IRIS_MODEL = """
[models.m]
dataset = "d"
target = "species"
task = "classification"
algorithm = "lightgbm"
params = {n_estimators = 10, min_child_samples = 2, verbose = -1}
"""

DIABETES_MODEL = """
[models.m]
dataset = "d"
target = "target"
task = "regression"
algorithm = "linear_regression"
"""


def _iris(rows_per_class: int | None = None) -> pd.DataFrame:
    iris = load_iris(as_frame=True)
    data = iris.frame.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    data["species"] = iris.target_names[iris.target]
    data = data.drop(columns=["target"])
    if rows_per_class is not None:
        data = data.groupby("species").head(rows_per_class)
    return data.reset_index(drop=True)


def _with_rare_class(rows: int) -> pd.DataFrame:
    """Return setosa and versicolor rows plus `rows` virginica rows."""
    data = _iris()
    common = data[data["species"] != "virginica"]
    return pd.concat([common, data[data["species"] == "virginica"].head(rows)])


def test_five_rows_rejected_before_registering(tmp_path: Path) -> None:
    with pytest.raises(TrainingError) as caught:
        train_on(tmp_path, _iris().sample(5, random_state=0), IRIS_MODEL)

    message = str(caught.value)
    assert "scored on 1 holdout rows of its 5 labelled rows" in message
    assert "scoring needs at least 3, one per class" in message
    assert "add labelled rows" in message
    with Catalog(tmp_path / "home", read_only=True) as catalog:
        (run,) = list_runs(catalog, "m")
    assert run.status == "failed"
    assert run.model_version is None


def test_small_holdout_suggests_test_size(tmp_path: Path) -> None:
    # 12 rows hold out 2 at the default test_size; 3 need a test_size of 0.25.
    with pytest.raises(TrainingError, match="raise test_size .* to 0.25 or more"):
        train_on(tmp_path, _iris(rows_per_class=4), IRIS_MODEL)


def test_few_training_rows_rejected(tmp_path: Path) -> None:
    diabetes = load_diabetes(as_frame=True).frame.head(10)
    model = DIABETES_MODEL + "[models.m.split]\ntest_size = 0.9\n"
    with pytest.raises(TrainingError) as caught:
        train_on(tmp_path, diabetes, model)

    message = str(caught.value)
    assert "fitted on 1 training rows of its 10 labelled rows" in message
    assert "lower test_size in [models.m.split]" in message


def test_class_missing_from_training_rows_named(tmp_path: Path) -> None:
    # With seed 1 the single virginica row lands in the holdout.
    model = IRIS_MODEL + "[models.m.split]\nseed = 1\n"
    with pytest.raises(TrainingError) as caught:
        train_on(tmp_path, _with_rare_class(1), model)

    message = str(caught.value)
    assert "training rows of model 'm' have no row of class 'virginica'" in message
    assert 'set method = "stratified" in [models.m.split]' in message


def test_class_missing_from_holdout_named(tmp_path: Path) -> None:
    # With seed 0 the single virginica row lands in the training rows, so
    # roc_auc, the default metric, would be NaN on the holdout.
    with pytest.raises(TrainingError) as caught:
        train_on(tmp_path, _with_rare_class(1), IRIS_MODEL)

    message = str(caught.value)
    assert "holdout rows of model 'm' have no row of class 'virginica'" in message
    assert "roc_auc cannot be measured" in message


def test_stratified_split_names_class_label(tmp_path: Path) -> None:
    model = IRIS_MODEL + '[models.m.split]\nmethod = "stratified"\n'
    with pytest.raises(TrainingError) as caught:
        train_on(tmp_path, _with_rare_class(1), model)

    message = str(caught.value)
    assert "class 'virginica' (1 row) has fewer than 2 labelled rows" in message
    assert "[1]" not in message
    assert "add labelled rows of that class" in message
    assert "'where'" in message


def test_too_many_folds_suggest_fewer(tmp_path: Path) -> None:
    model = (
        IRIS_MODEL
        + "[models.m.split]\ntest_size = 0.5\n"
        + '[models.m.cv]\nmethod = "stratified"\nfolds = 10\n'
    )
    with pytest.raises(TrainingError) as caught:
        train_on(tmp_path, _iris(rows_per_class=10), model)

    message = str(caught.value)
    assert "cannot split 15 training rows into 10 stratified folds" in message
    assert "or fewer in [models.m.cv], or add labelled rows" in message


def test_kfold_more_folds_than_rows_suggests_fewer(tmp_path: Path) -> None:
    diabetes = load_diabetes(as_frame=True).frame.head(24)
    model = DIABETES_MODEL + "[models.m.split]\ntest_size = 0.5\n"
    model += "[models.m.cv]\nfolds = 13\n"
    with pytest.raises(TrainingError) as caught:
        train_on(tmp_path, diabetes, model)

    assert "set folds to 12 or fewer in [models.m.cv]" in str(caught.value)


def test_time_cv_without_time_split_rejected(tmp_path: Path) -> None:
    model = IRIS_MODEL + '[models.m.cv]\nmethod = "time"\nfolds = 3\n'
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, model))

    message = str(caught.value)
    assert "cv method 'time' needs training rows in time order" in message
    assert "split method 'random'" in message
    assert '[models.m.split] method = "time"' in message


def test_time_cv_names_event_timestamp(tmp_path: Path) -> None:
    model = (
        IRIS_MODEL
        + 'event_timestamp = "taken_at"\n'
        + '[models.m.split]\nmethod = "group"\ncolumn = "site"\n'
        + '[models.m.cv]\nmethod = "time"\n'
    )
    with pytest.raises(ConfigError, match="set split.column to 'taken_at'"):
        load_config(write_config(tmp_path, model))


def test_time_cv_with_time_split_trains(tmp_path: Path) -> None:
    # Times in random order, so that every time fold has rows of each class.
    data = _iris().assign(taken=np.random.default_rng(0).permutation(150))
    model = (
        IRIS_MODEL
        + 'features = ["sepal_length", "sepal_width", "petal_length"]\n'
        + 'metric = "accuracy"\n'
        + '[models.m.split]\nmethod = "time"\ncolumn = "taken"\ntest_size = 0.3\n'
        + '[models.m.cv]\nmethod = "time"\nfolds = 3\n'
    )
    _, result = train_on(tmp_path, data.sample(frac=1, random_state=0), model)

    assert result.rows_test == 45
    assert "cv_accuracy_mean" in result.metrics


def _time_cv_model(folds: int, algorithm: str = "lightgbm") -> str:
    """Return model ``m`` on iris with a time split and `folds` time folds."""
    model = IRIS_MODEL
    if algorithm != "lightgbm":
        params = "params = {n_estimators = 10, min_child_samples = 2, verbose = -1}\n"
        model = model.replace("lightgbm", algorithm).replace(params, "")
    return (
        model
        + 'metric = "accuracy"\n'
        + '[models.m.split]\nmethod = "time"\ncolumn = "taken"\ntest_size = 0.2\n'
        + f'[models.m.cv]\nmethod = "time"\nfolds = {folds}\n'
    )


def _setosa_first(setosa_rows: int) -> pd.DataFrame:
    """Return iris in time order: `setosa_rows` setosa rows, then mixed rows."""
    data = _iris()
    setosa = data[data["species"] == "setosa"]
    rest = pd.concat([setosa.iloc[setosa_rows:], data[data["species"] != "setosa"]])
    rest = rest.sample(frac=1, random_state=0)
    ordered = pd.concat([setosa.iloc[:setosa_rows], rest], ignore_index=True)
    return ordered.assign(taken=np.arange(len(ordered)))


def test_time_cv_sorted_classes_named(tmp_path: Path) -> None:
    # Rows sorted by class: the first time fold trains on setosa rows only.
    # Without the check, LightGBM's fold fails with a numpy shape error.
    data = _iris().assign(taken=np.arange(150))
    with pytest.raises(TrainingError) as caught:
        train_on(tmp_path, data, _time_cv_model(folds=3))

    message = str(caught.value)
    assert "fold 0 of the time cross-validation of model 'm'" in message
    assert "trains on its first 30 training rows by 'taken'" in message
    assert "which have only class 'setosa'" in message
    assert "comes after 50 rows of that class" in message
    assert "or remove [models.m.cv]" in message
    with Catalog(tmp_path / "home", read_only=True) as catalog:
        (run,) = list_runs(catalog, "m")
    assert run.status == "failed"


def test_time_cv_one_class_fewer_folds(tmp_path: Path) -> None:
    # 120 training rows in 5 folds: the first fold trains on 20 rows, all of
    # them among the 30 setosa rows. In 2 folds it trains on 40 rows.
    data = _setosa_first(30)
    (tmp_path / "five").mkdir()
    (tmp_path / "two").mkdir()
    with pytest.raises(TrainingError) as caught:
        train_on(tmp_path / "five", data, _time_cv_model(5, "logistic_regression"))
    _, result = train_on(
        tmp_path / "two", data, _time_cv_model(2, "logistic_regression")
    )

    message = str(caught.value)
    assert "trains on its first 20 training rows by 'taken'" in message
    assert "comes after 30 rows of that class" in message
    assert "set folds to 2 or fewer in [models.m.cv]" in message
    assert "cv_accuracy_mean" in result.metrics


def test_search_time_cv_one_class_named(tmp_path: Path) -> None:
    model = _time_cv_model(3, "logistic_regression")
    model += '[models.m.search]\nmethod = "grid"\nspace = {C = [0.1, 1.0]}\n'
    with pytest.raises(TrainingError) as caught:
        train_on(tmp_path, _iris().assign(taken=np.arange(150)), model)

    message = str(caught.value)
    assert "fold 0 of the time cross-validation of model 'm'" in message
    assert "which have only class 'setosa'" in message
    assert "search scored no candidate" not in message
