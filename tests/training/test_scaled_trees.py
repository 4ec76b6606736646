"""Tree ensembles on scaled numeric columns: export without the scaler, parity."""

from __future__ import annotations

import numpy as np
import onnx
import pandas as pd
import pytest
from pipeline_support import load_model, native_pipeline, train_on
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from appliance.storage import Catalog, get_version
from appliance.training._export import parity, probe_rows, split_probes
from appliance.training._scaled import ScaledInputs


def _diabetes(task: str) -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    data = load_diabetes(as_frame=True).frame.rename(columns={"target": "y"})
    if task == "classification":
        data["y"] = np.select(
            [data["y"] > 200, data["y"] > 100], ["high", "mid"], "low"
        )
    return data


def _op_types(config) -> set[str]:
    with Catalog(config.storage.home, read_only=True) as catalog:
        version = get_version(catalog, "m", None)
    graph = onnx.load(version.path / "model.onnx").graph
    return {node.op_type for node in graph.node}


SCALED_TREES = """
[models.m]
dataset = "d"
target = "y"
task = "{task}"
algorithm = "{algorithm}"
params = {{ n_estimators = 20 }}
[models.m.preprocess]
scale = "{scale}"
"""


@pytest.mark.parametrize("scale", ["standard", "minmax"])
@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("algorithm", ["lightgbm", "random_forest"])
def test_scaled_trees_keep_parity(tmp_path, algorithm, task, scale):
    # On this data some scaled thresholds lie within one float32 step of a
    # training value, and minmax puts LightGBM's zero split on a column's
    # minimum. A scaler computed in float32 would send such values astray.
    data = _diabetes(task)
    models = SCALED_TREES.format(task=task, algorithm=algorithm, scale=scale)
    config, result = train_on(tmp_path, data, models)
    pipeline, frame = native_pipeline(config, "m", data)
    model = load_model(config)
    probes = probe_rows(frame.x_train, frame.numeric, frame.categorical, pipeline)
    on_probes = parity(model, pipeline, probes, task)
    on_holdout = parity(model, pipeline, frame.x_test, task)

    assert result.parity <= 1e-5
    assert on_probes.max_difference <= 1e-5
    assert on_probes.label_mismatches == 0
    assert on_holdout.max_difference <= 1e-5
    assert on_holdout.label_mismatches == 0


def test_scaled_forest_serves_unscaled_inputs(tmp_path):
    data = _diabetes("regression")
    models = SCALED_TREES.format(
        task="regression", algorithm="random_forest", scale="minmax"
    )
    config, _ = train_on(tmp_path, data, models)
    pipeline, frame = native_pipeline(config, "m", data)
    rows = frame.x_test.head(20)
    served, _ = load_model(config).predict_request(rows.to_dict("records"))
    native = pipeline.predict(rows)

    assert _op_types(config) == {"Concat", "Imputer", "TreeEnsembleRegressor"}
    values = np.array([result["value"] for result in served])
    assert np.abs(values - native).max() <= 1e-5 * np.abs(native).max()


def _scaled_column(scaler, values: np.ndarray, float32_splits: bool) -> ScaledInputs:
    scaler.fit(np.column_stack([values, values[::-1]]))
    return ScaledInputs(scaler, 2, float32_splits)


@pytest.mark.parametrize("float32_splits", [False, True])
@pytest.mark.parametrize("scaler", [StandardScaler(), MinMaxScaler()])
def test_float32_thresholds_split_where_native_does(scaler, float32_splits):
    rng = np.random.default_rng(0)
    scaled = _scaled_column(scaler, rng.normal(3.0, 7.0, size=500), float32_splits)
    thresholds = np.concatenate([rng.normal(size=200), [0.0, 1e-35, -1e-35]])

    placed = scaled.float32_thresholds(1, thresholds)
    above = np.nextafter(placed, np.float32(np.inf))

    assert placed.dtype == np.float32
    assert scaled._goes_left(1, placed, thresholds).all()
    assert not scaled._goes_left(1, above, thresholds).any()


def test_float32_thresholds_beyond_every_input():
    scaled = _scaled_column(StandardScaler(), np.array([1.0, 2.0, 4.0]), False)

    placed = scaled.float32_thresholds(0, np.array([-np.inf, np.inf]))

    assert placed[0] == -np.inf
    assert placed[1] == np.finfo(np.float32).max


def test_scaled_probes_are_float32_around_thresholds(tmp_path):
    data = _diabetes("regression")
    models = SCALED_TREES.format(
        task="regression", algorithm="lightgbm", scale="standard"
    )
    config, _ = train_on(tmp_path, data, models)
    pipeline, frame = native_pipeline(config, "m", data)

    probes = split_probes(pipeline, frame.numeric)

    assert probes
    for values in probes.values():
        assert (values.astype(np.float32).astype(np.float64) == values).all()


def test_linear_model_keeps_scaler_unrounded(tmp_path):
    data = _diabetes("regression")
    models = SCALED_TREES.format(
        task="regression", algorithm="linear_regression", scale="standard"
    ).replace("params = { n_estimators = 20 }\n", "")
    config, result = train_on(tmp_path, data, models)
    pipeline, _ = native_pipeline(config, "m", data)

    assert list(pipeline[0].named_transformers_["numeric"].named_steps) == [
        "impute",
        "scale",
    ]
    assert "Scaler" in _op_types(config)
    assert result.parity <= 1e-5
