"""Request schema at serving: types, missing values, rules and warnings, over HTTP."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from appliance.errors import RequestError
from pipeline_support import (
    Daemon,
    load_model,
    native_pipeline,
    train_on,
    write_config,
)

MODEL = """
[models.m]
dataset = "d"
target = "y"
task = "classification"
algorithm = "lightgbm"
features = ["num_rooms", "area", "city", "age", "income"]
categorical = ["city"]
params = { n_estimators = 20 }
[models.m.checks]
income = { min = 0 }
"""
PREDICT = "/v1/models/m/predict"
ROW = {"num_rooms": 3, "area": 71.5, "city": "Ghent", "age": 42, "income": 50000}


def _data(rows: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    data = pd.DataFrame(
        {
            "num_rooms": pd.array(rng.integers(1, 7, rows), dtype="Int64"),
            "area": rng.uniform(20, 150, rows),
            "city": rng.choice(["Ghent", "Liege", "Namur"], rows),
            "age": rng.uniform(18, 90, rows),
            "income": rng.uniform(0, 1e5, rows),
        }
    )
    data.loc[::13, "num_rooms"] = pd.NA
    score = data["area"] / 150 + (data["city"] == "Ghent") + rng.normal(0, 0.5, rows)
    data["y"] = np.where(score > score.quantile(0.75), "yes", "no")
    return data


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("request_schema")
    data = _data()
    config, _ = train_on(folder, data, MODEL)
    # The daemon holds the catalog open, so read everything from it first.
    pipeline, _ = native_pipeline(config, "m", data)
    model = load_model(config)
    daemon = Daemon(write_config(folder, MODEL))
    try:
        yield daemon, model, pipeline
    finally:
        daemon.stop()


def _predict(daemon: Daemon, rows: list[dict]) -> tuple[int, dict]:
    return daemon.post(PREDICT, {"rows": rows})


def test_integer_and_float_values_identical(served):
    daemon, _, _ = served
    as_floats = {**ROW, "num_rooms": 3.0, "age": 42.0, "income": 50000.0}
    status_int, body_int = _predict(daemon, [ROW])
    status_float, body_float = _predict(daemon, [as_floats])
    assert status_int == status_float == 200
    assert body_int["predictions"] == body_float["predictions"]


def test_classifier_response_labels_and_probabilities(served):
    daemon, _, _ = served
    status, body = _predict(daemon, [ROW])
    prediction = body["predictions"][0]
    probabilities = prediction["probabilities"]
    assert status == 200
    assert list(probabilities) == ["no", "yes"]
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert prediction["label"] == max(probabilities, key=probabilities.get)


@pytest.mark.parametrize("size", [1, 38])
def test_batch_sizes_accepted(served, size):
    daemon, _, _ = served
    status, body = _predict(daemon, [ROW] * size)
    assert status == 200
    assert len(body["predictions"]) == size


@pytest.mark.parametrize(
    ("change", "column"),
    [
        ({"age": "forty"}, "age"),
        ({"num_rooms": 3.5}, "num_rooms"),
        ({"income": -1}, "income"),
        ({"area": 1e39}, "area"),
    ],
)
def test_invalid_value_rejected_naming_column(served, change, column):
    daemon, _, _ = served
    status, body = _predict(daemon, [{**ROW, **change}])
    assert status == 422
    assert body["column"] == column
    assert repr(column) in body["error"]
    assert "onnxruntime" not in body["error"].lower()


def test_missing_column_rejected_naming_area(served):
    daemon, _, _ = served
    row = {k: v for k, v in ROW.items() if k != "area"}
    status, body = _predict(daemon, [row])
    assert status == 422
    assert body["column"] == "area"


def test_null_num_rooms_predicts_as_native_missing(served):
    daemon, _, pipeline = served
    status, body = _predict(daemon, [{**ROW, "num_rooms": None}])
    native = pipeline.predict_proba(
        pd.DataFrame([{**ROW, "num_rooms": math.nan}]).astype({"num_rooms": float})
    )[0]
    assert status == 200
    served_yes = body["predictions"][0]["probabilities"]["yes"]
    assert served_yes == pytest.approx(native[1], abs=1e-5)


def test_nan_forms_treated_as_missing(served):
    daemon, _, _ = served
    _, with_null = _predict(daemon, [{**ROW, "area": None}])
    body = (
        b'{"rows": [{"num_rooms": 3, "area": NaN, "city": "Ghent", "age": 42, '
        b'"income": 50000}]}'
    )
    status_bare, with_bare_nan = daemon.post(PREDICT, body)
    status_text, with_text_nan = _predict(daemon, [{**ROW, "area": "NaN"}])
    assert status_bare == status_text == 200
    assert with_bare_nan["predictions"] == with_null["predictions"]
    assert with_text_nan["predictions"] == with_null["predictions"]


def test_infinity_literal_rejected_naming_column(served):
    daemon, _, _ = served
    body = (
        b'{"rows": [{"num_rooms": 3, "area": Infinity, "city": "Ghent", "age": 42, '
        b'"income": 50000}]}'
    )
    status, response = daemon.post(PREDICT, body)
    assert status == 422
    assert response["column"] == "area"


def test_extra_column_ignored_with_warning(served):
    daemon, _, _ = served
    _, plain = _predict(daemon, [ROW])
    status, body = _predict(daemon, [{**ROW, "colour": "red"}])
    assert status == 200
    assert body["predictions"] == plain["predictions"]
    assert body["warnings"] == [
        "columns 'colour' are not inputs of model 'm' and were ignored"
    ]
    assert "warnings" not in plain


def test_reordered_columns_predict_same(served):
    daemon, _, _ = served
    _, plain = _predict(daemon, [ROW])
    reordered = dict(reversed(list(ROW.items())))
    _, body = _predict(daemon, [reordered])
    assert body["predictions"] == plain["predictions"]


def test_json_and_arrow_rows_predict_same(served):
    _, model, _ = served
    rows = [ROW, {**ROW, "num_rooms": None, "city": None}, {**ROW, "area": 20.5}]
    table = pa.Table.from_pylist(rows)
    from_json, _ = model.predict_request(rows)
    from_arrow, _ = model.predict_table(table)
    assert from_json == from_arrow


def test_daemon_json_and_arrow_predict_same(served):
    daemon, _, _ = served
    rows = [ROW, {**ROW, "num_rooms": None, "city": None}, {**ROW, "area": 20.5}]
    _, from_json = _predict(daemon, rows)
    status, from_arrow = daemon.post_arrow(PREDICT, pa.Table.from_pylist(rows))
    assert status == 200
    assert from_arrow.column("prediction").to_pylist() == [
        p["label"] for p in from_json["predictions"]
    ]
    assert from_arrow.column("probability_yes").to_pylist() == [
        p["probabilities"]["yes"] for p in from_json["predictions"]
    ]


def test_daemon_arrow_rule_violation_names_column(served):
    daemon, _, _ = served
    table = pa.Table.from_pylist([{**ROW, "income": -5.0}])
    status, body = daemon.post_arrow(PREDICT, table)
    assert status == 422
    assert body["column"] == "income"


def test_arrow_rules_match_json_rules():
    from appliance.serving import table_to_columns

    request = [{"name": "income", "type": "integer", "sql_type": "BIGINT"}]
    table = pa.table({"income": pa.array([1.0, float("nan"), 2.5])})
    with pytest.raises(RequestError, match="row 2, column 'income'.*whole number"):
        table_to_columns("m", request, table)
    columns, warnings = table_to_columns("m", request, table.slice(0, 2))
    assert np.isnan(columns["income"][1])
    assert warnings == []


def test_arrow_text_numbers_name_bad_value():
    from appliance.serving import table_to_columns

    request = [{"name": "income", "type": "number", "sql_type": "DOUBLE"}]
    # A CSV reader types this column as text because of its third value.
    table = pa.table({"income": pa.array(["1.5", None, "abc", "2"])})

    with pytest.raises(RequestError) as raised:
        table_to_columns("m", request, table)

    assert raised.value.detail["row"] == 2
    assert "must be a number or null, got 'abc'" in str(raised.value)


def test_model_nan_output_returned_as_null(served):
    _, model, _ = served
    formatted = model.format(np.array([[math.nan, math.nan]]))
    assert formatted[0]["probabilities"] == {"no": None, "yes": None}


def test_regression_nan_output_returned_as_null(tmp_path):
    rng = np.random.default_rng(4)
    data = pd.DataFrame({"a": rng.normal(0, 0.01, 200), "b": rng.normal(0, 0.01, 200)})
    data["y"] = data["a"] - data["b"]
    models = """
[models.m]
dataset = "d"
target = "y"
task = "regression"
algorithm = "linear_regression"
"""
    config, _ = train_on(tmp_path, data, models)
    model = load_model(config)
    # Both inputs scale to +inf in float32, and a - b of two infinities is NaN.
    results, _ = model.predict_request([{"a": 3e38, "b": 3e38}, {"a": 0.0, "b": 0.0}])
    assert results[0] == {"value": None}
    assert results[1]["value"] == pytest.approx(0.0, abs=1e-3)


def test_openapi_row_lists_request_types_and_checks(served):
    import json
    import urllib.request

    daemon, _, _ = served
    with urllib.request.urlopen(daemon.base + "/schema/openapi.json") as response:
        document = json.loads(response.read())
    properties = document["components"]["schemas"]["mRow"]["properties"]
    assert properties["num_rooms"]["type"] == ["integer", "null"]
    assert properties["area"]["type"] == ["number", "null"]
    assert properties["city"]["type"] == ["string", "null"]
    assert properties["income"]["minimum"] == 0.0
