"""HTTP API of the daemon, run as a real subprocess on 127.0.0.1."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from support import (
    DATASETS,
    MODELS,
    SERVER_MAX_BODY_BYTES,
    SERVER_MAX_ROWS,
    TrainedHome,
    json_rows,
    model_table,
    start_daemon,
    stop_daemon,
)

from appliance.config import load_config
from appliance.serving import OnnxModel, class_key
from appliance.signing import trusted_keys
from appliance.storage import MODEL_FILE, Catalog, ingest
from appliance.training import train_model

BINARY = "binary_lightgbm"
MULTICLASS = "multiclass_logistic_regression"
REGRESSION = "regression_random_forest"
SERVED = [BINARY, MULTICLASS, REGRESSION]
TOLERANCE = 1e-6


def request_rows(frames: dict[str, pd.DataFrame], name: str) -> list[dict[str, Any]]:
    """Return 12 feature rows of the model's dataset, missing values included."""
    dataset = MODELS[name][0]
    target, _, text = DATASETS[dataset]
    features = frames[dataset].drop(columns=[target])
    rows = json_rows(features.iloc[:10])
    first = rows[0]
    rows.append({k: (v if k == text else None) for k, v in first.items()})
    rows.append({**first, text: "a category never seen in training"})
    return rows


def load_onnx(trained: TrainedHome, name: str) -> OnnxModel:
    version = trained.results[name].model_version
    trusted = trusted_keys(trained.config)
    return OnnxModel.load(version.path, version.sha256, trusted=trusted)


def predict(http: httpx.Client, name: str, body: Any) -> httpx.Response:
    return http.post(f"/v1/models/{name}/predict", json=body)


def first_feature(trained: TrainedHome, name: str, kind: str) -> str:
    model = load_onnx(trained, name)
    return next(spec["name"] for spec in model.inputs if spec["type"] == kind)


def assert_predictions_equal(
    actual: list[dict[str, Any]], expected: list[dict[str, Any]]
) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert got.keys() == want.keys()
        if "value" in want:
            assert got["value"] == pytest.approx(want["value"], abs=TOLERANCE)
            continue
        assert got["label"] == want["label"]
        assert got["probabilities"].keys() == want["probabilities"].keys()
        for key, probability in want["probabilities"].items():
            expected_probability = pytest.approx(probability, abs=TOLERANCE)
            assert got["probabilities"][key] == expected_probability


# --- successful requests ---------------------------------------------------------


def test_health_returns_ok(http: httpx.Client) -> None:
    response = http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "models": len(MODELS)}


def test_models_lists_every_version(http: httpx.Client, trained: TrainedHome) -> None:
    response = http.get("/v1/models")
    assert response.status_code == 200

    listed = {entry["name"]: entry for entry in response.json()["models"]}
    assert sorted(listed) == sorted(MODELS)
    for name, entry in listed.items():
        result = trained.results[name]
        assert entry["version"] == result.model_version.version
        assert entry["task"] == trained.config.model(name).task


def test_models_lists_inputs_classes(
    http: httpx.Client, trained: TrainedHome, frames: dict[str, pd.DataFrame]
) -> None:
    listed = {e["name"]: e for e in http.get("/v1/models").json()["models"]}

    binary = listed[BINARY]
    assert binary["classes"] == [0, 1]
    assert binary["inputs"] == load_onnx(trained, BINARY).inputs
    species = sorted(frames["multiclass"]["species"].unique())
    assert listed[MULTICLASS]["classes"] == species
    assert listed[REGRESSION]["classes"] is None


@pytest.mark.parametrize("name", SERVED)
def test_predict_response_envelope(
    http: httpx.Client, frames: dict[str, pd.DataFrame], name: str
) -> None:
    rows = request_rows(frames, name)
    response = predict(http, name, {"rows": rows})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")

    body = response.json()
    assert sorted(body) == ["model", "predictions", "request_id", "version"]
    assert body["model"] == name
    assert body["version"] == 1
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
    assert len(body["predictions"]) == len(rows)


def test_predict_request_ids_differ(
    http: httpx.Client, frames: dict[str, pd.DataFrame]
) -> None:
    rows = request_rows(frames, BINARY)[:1]
    first = predict(http, BINARY, {"rows": rows}).json()["request_id"]
    second = predict(http, BINARY, {"rows": rows}).json()["request_id"]
    assert first != second


@pytest.mark.parametrize("name", [BINARY, MULTICLASS])
def test_predict_classification_fields(
    http: httpx.Client, frames: dict[str, pd.DataFrame], name: str
) -> None:
    dataset = MODELS[name][0]
    classes = sorted(frames[dataset][DATASETS[dataset][0]].unique().tolist())
    keys = [class_key(c) for c in classes]
    body = predict(http, name, {"rows": request_rows(frames, name)}).json()

    for prediction in body["predictions"]:
        assert sorted(prediction) == ["label", "probabilities"]
        assert prediction["label"] in classes
        assert list(prediction["probabilities"]) == keys
        total = sum(prediction["probabilities"].values())
        assert abs(total - 1.0) <= TOLERANCE


def test_predict_regression_fields(
    http: httpx.Client, frames: dict[str, pd.DataFrame]
) -> None:
    body = predict(http, REGRESSION, {"rows": request_rows(frames, REGRESSION)}).json()

    for prediction in body["predictions"]:
        assert list(prediction) == ["value"]
        assert isinstance(prediction["value"], float)
        assert math.isfinite(prediction["value"])


@pytest.mark.parametrize("name", SERVED)
def test_predict_matches_onnx_model(
    http: httpx.Client,
    trained: TrainedHome,
    frames: dict[str, pd.DataFrame],
    name: str,
) -> None:
    rows = request_rows(frames, name)
    expected = load_onnx(trained, name).predict_rows(rows)

    body = predict(http, name, {"rows": rows}).json()
    assert_predictions_equal(body["predictions"], expected)


@pytest.mark.parametrize("name", SERVED)
def test_predict_ignores_extra_columns(
    http: httpx.Client, frames: dict[str, pd.DataFrame], name: str
) -> None:
    rows = request_rows(frames, name)
    unused = {"note": "ignored", "extra_number": 1e9, "nested": {"a": [1]}}
    extra = [{**row, **unused} for row in rows]

    plain = predict(http, name, {"rows": rows}).json()["predictions"]
    padded = predict(http, name, {"rows": extra}).json()["predictions"]
    assert padded == plain


def test_predict_ignores_extra_fields(
    http: httpx.Client, frames: dict[str, pd.DataFrame]
) -> None:
    rows = request_rows(frames, BINARY)
    response = predict(http, BINARY, {"rows": rows, "client": "test"})
    assert response.status_code == 200


def test_predict_max_rows_accepted(
    http: httpx.Client, frames: dict[str, pd.DataFrame]
) -> None:
    rows = (request_rows(frames, BINARY) * SERVER_MAX_ROWS)[:SERVER_MAX_ROWS]
    response = predict(http, BINARY, {"rows": rows})
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == SERVER_MAX_ROWS


# --- rejected requests -----------------------------------------------------------


def test_predict_unknown_model_404(
    http: httpx.Client, frames: dict[str, pd.DataFrame]
) -> None:
    response = predict(http, "no_such_model", {"rows": request_rows(frames, BINARY)})
    assert response.status_code == 404
    assert "'no_such_model' is not served" in response.json()["error"]


def test_predict_missing_column_422(
    http: httpx.Client, trained: TrainedHome, frames: dict[str, pd.DataFrame]
) -> None:
    column = first_feature(trained, BINARY, "number")
    rows = request_rows(frames, BINARY)[:3]
    del rows[2][column]

    response = predict(http, BINARY, {"rows": rows})
    assert response.status_code == 422
    body = response.json()
    assert body["model"] == BINARY
    assert body["row"] == 2
    assert body["column"] == column
    assert f"row 2 of the request to model '{BINARY}'" in body["error"]
    assert f"missing column '{column}'" in body["error"]


def test_predict_missing_text_column_422(
    http: httpx.Client, trained: TrainedHome, frames: dict[str, pd.DataFrame]
) -> None:
    column = first_feature(trained, MULTICLASS, "string")
    rows = request_rows(frames, MULTICLASS)[:1]
    del rows[0][column]

    response = predict(http, MULTICLASS, {"rows": rows})
    assert response.status_code == 422
    assert response.json()["column"] == column


@pytest.mark.parametrize("value", ["12.5", True, [1.0], {"v": 1}])
def test_predict_wrong_number_type_422(
    http: httpx.Client,
    trained: TrainedHome,
    frames: dict[str, pd.DataFrame],
    value: Any,
) -> None:
    column = first_feature(trained, REGRESSION, "number")
    rows = request_rows(frames, REGRESSION)[:2]
    rows[1][column] = value

    response = predict(http, REGRESSION, {"rows": rows})
    assert response.status_code == 422
    body = response.json()
    assert body["model"] == REGRESSION
    assert body["row"] == 1
    assert body["column"] == column
    assert f"column '{column}'" in body["error"]
    assert "must be a number or null" in body["error"]


@pytest.mark.parametrize("value", [1.5, [1], {"v": "x"}])
def test_predict_wrong_text_type_422(
    http: httpx.Client,
    trained: TrainedHome,
    frames: dict[str, pd.DataFrame],
    value: Any,
) -> None:
    column = first_feature(trained, BINARY, "string")
    rows = request_rows(frames, BINARY)[:1]
    rows[0][column] = value

    response = predict(http, BINARY, {"rows": rows})
    assert response.status_code == 422
    assert response.json()["column"] == column
    assert "must be a string or null" in response.json()["error"]


def test_predict_empty_body_400(http: httpx.Client) -> None:
    response = http.post(f"/v1/models/{BINARY}/predict", content=b"")
    assert response.status_code == 400
    assert response.json()["model"] == BINARY
    assert "empty request body" in response.json()["error"]


@pytest.mark.parametrize(
    "content",
    [b'{"rows": [', b"not json", b"[]", b'{"rows": "many"}', b'{"data": []}'],
)
def test_predict_malformed_json_400(http: httpx.Client, content: bytes) -> None:
    response = http.post(
        f"/v1/models/{BINARY}/predict",
        content=content,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert "malformed request body" in response.json()["error"]


def test_predict_no_rows_422(http: httpx.Client) -> None:
    response = predict(http, BINARY, {"rows": []})
    assert response.status_code == 422
    assert response.json()["model"] == BINARY
    assert "has no rows" in response.json()["error"]


@pytest.mark.parametrize("row", [[1.0, 2.0], "row", 5, None])
def test_predict_row_not_object_422(
    http: httpx.Client, frames: dict[str, pd.DataFrame], row: Any
) -> None:
    rows = [request_rows(frames, BINARY)[0], row]
    response = predict(http, BINARY, {"rows": rows})
    assert response.status_code == 422
    body = response.json()
    assert body["row"] == 1
    assert "is not a JSON object" in body["error"]


def test_predict_too_many_rows_413(
    http: httpx.Client, frames: dict[str, pd.DataFrame]
) -> None:
    rows = (request_rows(frames, BINARY) * 2)[: SERVER_MAX_ROWS + 1]
    body = json.dumps({"rows": rows}).encode()
    assert len(body) < SERVER_MAX_BODY_BYTES

    response = http.post(
        f"/v1/models/{BINARY}/predict",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["limit"] == SERVER_MAX_ROWS
    assert f"{SERVER_MAX_ROWS + 1} rows" in response.json()["error"]


def test_predict_body_too_large_413(
    http: httpx.Client, frames: dict[str, pd.DataFrame]
) -> None:
    row = {**request_rows(frames, BINARY)[0], "padding": "x" * SERVER_MAX_BODY_BYTES}
    response = predict(http, BINARY, {"rows": [row]})
    assert response.status_code == 413
    assert "error" in response.json()


def test_predict_after_errors_still_served(
    http: httpx.Client, frames: dict[str, pd.DataFrame]
) -> None:
    predict(http, BINARY, {"rows": [None]})
    http.post(f"/v1/models/{BINARY}/predict", content=b"{")
    response = predict(http, BINARY, {"rows": request_rows(frames, BINARY)[:1]})
    assert response.status_code == 200


# --- daemon start-up -------------------------------------------------------------


def test_daemon_skips_corrupt_model(
    write_config, tmp_path: Path, frames: dict[str, pd.DataFrame]
) -> None:
    source = tmp_path / "iris.csv"
    frames["multiclass"].to_csv(source, index=False)
    algorithms = {"intact": "logistic_regression", "corrupt": "lightgbm"}
    models = {
        name: model_table("flowers", "species", "classification", algorithm)
        for name, algorithm in algorithms.items()
    }
    config = load_config(write_config(models))
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "flowers", [source])
    train_model(config, "intact")
    corrupt = train_model(config, "corrupt").model_version
    with (corrupt.path / MODEL_FILE).open("ab") as handle:
        handle.write(b"tampered")

    daemon = start_daemon(config.path, config.storage.home, tmp_path / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            health = client.get("/health").json()
            listed = client.get("/v1/models").json()["models"]
            missing = client.post("/v1/models/corrupt/predict", json={"rows": [{}]})
    finally:
        stop_daemon(daemon)

    assert health["models"] == 1
    assert [entry["name"] for entry in listed] == ["intact"]
    assert missing.status_code == 404
    log = daemon.log.read_text()
    assert "model load failed model=corrupt version=1" in log
    assert str(corrupt.path / MODEL_FILE) in log
