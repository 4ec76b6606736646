"""Encoders and imputers with rare, unseen and missing categories, native and ONNX."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import StringTensorType

from appliance.config import ModelConfig, PreprocessConfig
from appliance.serving import OnnxModel, columns_to_feed
from appliance.training._encoders import OrdinalCodes, register_converter
from appliance.training._export import input_schema, parity, to_onnx
from appliance.training._pipeline import build_pipeline
from pipeline_support import load_model, train_on

SIX_ROWS = pd.DataFrame(
    {
        "num1": [0.5, 0.4, 0.5, 0.55, 0.35, 0.5],
        "num2": [0.6, 0.8, 0.56, 0.56, 0.86, 0.68],
        "CAT1": list("abaaaa"),
        "CAT2": list("abcddd"),
    }
)
SIX_LABELS = np.array([0, 1, 0, 1, 0, 1])


def _model(algorithm: str = "random_forest", **preprocess) -> ModelConfig:
    return ModelConfig(
        name="m",
        dataset="d",
        target="y",
        task="classification",
        algorithm=algorithm,
        categorical=("CAT1", "CAT2"),
        params={"n_estimators": 20, "min_samples_leaf": 1, "n_jobs": 1},
        preprocess=PreprocessConfig(**preprocess),
    )


def _export(cfg: ModelConfig, pipeline, numeric, categorical) -> OnnxModel:
    inputs = input_schema(numeric, categorical)
    schema = {"task": cfg.task, "inputs": inputs, "classes": [0, 1]}
    return OnnxModel(to_onnx(pipeline, inputs, cfg.task), schema)


def test_onehot_min_frequency_parity_on_seven_rows():
    cfg = _model(min_frequency=2)
    numeric, categorical = ["num1", "num2"], ["CAT1", "CAT2"]
    pipeline = build_pipeline(cfg, numeric, categorical).fit(SIX_ROWS, SIX_LABELS)
    unseen = SIX_ROWS.head(1).assign(CAT2="zz")
    rows = pd.concat([SIX_ROWS, unseen], ignore_index=True)

    encoded = pipeline[0].transform(rows)
    # Per column: the infrequent group first, then the frequent category.
    # CAT1 groups b; CAT2 groups a, b and c; the unseen zz is all zeros.
    assert encoded[:, 2:].tolist() == [
        [0, 1, 1, 0],
        [1, 0, 1, 0],
        [0, 1, 1, 0],
        [0, 1, 0, 1],
        [0, 1, 0, 1],
        [0, 1, 0, 1],
        [0, 1, 0, 0],
    ]
    result = parity(
        _export(cfg, pipeline, numeric, categorical), pipeline, rows, "classification"
    )
    assert result.rows == 7
    assert result.max_difference <= 1e-5
    assert result.label_mismatches == 0


def test_ordinal_codes_missing_and_unknown_exact():
    register_converter()
    train = pd.DataFrame({"c": ["a", "b", "c", "d", ""]}, dtype=object)
    encoder = OrdinalCodes(unknown_value=-1, missing_value=42).fit(train)
    query = pd.DataFrame({"c": ["a", "d", "", "zz"]}, dtype=object)
    onnx_model = convert_sklearn(
        encoder,
        initial_types=[("c", StringTensorType([None, 1]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    exported = OnnxModel(
        onnx_model.SerializeToString(),
        {"task": "regression", "inputs": [{"name": "c", "type": "string"}]},
    ).run(columns_to_feed([{"name": "c", "type": "string"}], query))

    assert encoder.transform(query).ravel().tolist() == [0.0, 3.0, 42.0, -1.0]
    assert exported.tolist() == [0.0, 3.0, 42.0, -1.0]


def test_ordinal_min_frequency_groups_rare_categories():
    train = pd.DataFrame({"c": ["x", "x", "y", "y", "z"]}, dtype=object)
    encoder = OrdinalCodes(min_frequency=2).fit(train)
    query = pd.DataFrame({"c": ["x", "y", "z", "q", ""]}, dtype=object)
    assert encoder.transform(query).ravel().tolist() == [0.0, 1.0, 2.0, -1.0, -2.0]


@pytest.mark.parametrize("encoding", ["onehot", "ordinal"])
def test_pipeline_encoding_parity_with_probes(encoding):
    cfg = _model("lightgbm", encoding=encoding, min_frequency=2)
    cfg = ModelConfig(
        **{**cfg.__dict__, "params": {"n_estimators": 20, "min_child_samples": 1}}
    )
    numeric, categorical = ["num1", "num2"], ["CAT1", "CAT2"]
    rows = pd.concat([SIX_ROWS] * 5, ignore_index=True)
    labels = np.tile(SIX_LABELS, 5)
    pipeline = build_pipeline(cfg, numeric, categorical).fit(rows, labels)
    checked = pd.DataFrame(
        {
            "num1": [0.5, np.nan, 0.4],
            "num2": [0.6, 0.7, np.nan],
            "CAT1": ["a", "", "b"],
            "CAT2": ["zz", "b", ""],
        }
    )
    result = parity(
        _export(cfg, pipeline, numeric, categorical),
        pipeline,
        checked,
        "classification",
    )
    assert result.max_difference <= 1e-5
    assert result.label_mismatches == 0


STRING_ROWS = pd.DataFrame(
    {"c1": ["s1", "s1", "", "s7", "s8"], "c2": ["s2", "s2", "s3", "s6", ""]}
)


def test_string_imputation_constant_matches_sklearn():
    from sklearn.compose import ColumnTransformer

    from appliance.training._pipeline import _categorical_steps

    cfg = _model(categorical_impute="constant", categorical_fill="missing")
    imputers = ColumnTransformer(
        [(c, _categorical_steps(cfg).named_steps["impute"], [c]) for c in ["c1", "c2"]]
    ).fit(STRING_ROWS)
    onnx_model = convert_sklearn(
        imputers,
        initial_types=[(c, StringTensorType([None, 1])) for c in ["c1", "c2"]],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_model.SerializeToString())
    feed = {c: STRING_ROWS[c].to_numpy(object).reshape(-1, 1) for c in ["c1", "c2"]}
    expected = [
        ["s1", "s2"],
        ["s1", "s2"],
        ["missing", "s3"],
        ["s7", "s6"],
        ["s8", "missing"],
    ]
    assert imputers.transform(STRING_ROWS).tolist() == expected
    assert session.run(None, feed)[0].tolist() == expected


def test_string_null_at_serving_predicts_as_native(tmp_path):
    data = pd.concat([STRING_ROWS] * 20, ignore_index=True)
    data["x"] = np.arange(len(data), dtype=float)
    data["y"] = np.tile([0, 1, 0, 1, 1], 20)
    config, _ = train_on(
        tmp_path,
        data,
        """
[models.m]
dataset = "d"
target = "y"
task = "classification"
algorithm = "random_forest"
categorical = ["c1", "c2"]
params = { n_estimators = 20 }
[models.m.preprocess]
categorical_impute = "constant"
categorical_fill = "missing"
""",
    )
    from pipeline_support import native_pipeline

    pipeline, _ = native_pipeline(config, "m", data)
    model = load_model(config)
    served, _ = model.predict_request([{"c1": None, "c2": "s3", "x": 2.0}])
    native = pipeline.predict_proba(
        pd.DataFrame({"x": [2.0], "c1": [""], "c2": ["s3"]})
    )
    assert served[0]["probabilities"]["1"] == pytest.approx(native[0, 1], abs=1e-5)
    assert served[0]["probabilities"]["0"] == pytest.approx(native[0, 0], abs=1e-5)


@pytest.mark.parametrize(
    ("impute", "scale"),
    [
        ("mean", "standard"),
        ("median", "minmax"),
        ("most_frequent", "none"),
        ("constant", "minmax"),
    ],
)
def test_numeric_preprocess_parity(impute, scale):
    cfg = ModelConfig(
        name="m",
        dataset="d",
        target="y",
        task="classification",
        algorithm="logistic_regression",
        preprocess=PreprocessConfig(
            numeric_impute=impute, numeric_fill=-5.0, scale=scale
        ),
    )
    rng = np.random.default_rng(2)
    rows = pd.DataFrame({"a": rng.normal(size=60), "b": rng.uniform(0, 9, 60)})
    rows.loc[::5, "a"] = np.nan
    labels = (rows["b"] > 4).to_numpy(dtype=int)
    pipeline = build_pipeline(cfg, ["a", "b"], []).fit(rows, labels)
    checked = pd.concat(
        [rows, pd.DataFrame({"a": [np.nan, 1e6], "b": [np.nan, -3.0]})],
        ignore_index=True,
    )
    result = parity(
        _export(cfg, pipeline, ["a", "b"], []), pipeline, checked, "classification"
    )
    assert result.max_difference <= 1e-5
    assert result.label_mismatches == 0
