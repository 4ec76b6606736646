"""Prediction log outputs of the same rows sent as JSON and as Arrow."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pytest
from support import DATASETS, MODELS, json_rows

BINARY = "binary_lightgbm"
MULTICLASS = "multiclass_logistic_regression"
REGRESSION = "regression_random_forest"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
LOG_TIMEOUT_SECONDS = 10.0
TOLERANCE = 1e-6


def feature_rows(frames: dict[str, pd.DataFrame], name: str) -> list[dict[str, Any]]:
    """Return 5 rows of the model's dataset without its target."""
    dataset = MODELS[name][0]
    target = DATASETS[dataset][0]
    return json_rows(frames[dataset].drop(columns=[target]).iloc[:5])


def post_arrow(http: httpx.Client, name: str, rows: list[dict[str, Any]]) -> str:
    """Predict `rows` as an Arrow stream and return the request id."""
    table = pa.Table.from_pylist(rows)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    response = http.post(
        f"/v1/models/{name}/predict",
        content=sink.getvalue().to_pybytes(),
        headers={"content-type": ARROW_STREAM},
    )
    assert response.status_code == 200, response.text
    return response.headers["x-request-id"]


def logged_outputs(http: httpx.Client, name: str, request_id: str) -> list[Any]:
    """Return the logged outputs of a request by row, waiting for the log."""
    deadline = time.monotonic() + LOG_TIMEOUT_SECONDS
    while True:
        response = http.get("/v1/predictions", params={"model": name, "limit": 1000})
        assert response.status_code == 200, response.text
        rows = [
            r for r in response.json()["predictions"] if r["request_id"] == request_id
        ]
        if rows:
            return [r["output"] for r in sorted(rows, key=lambda r: r["row_index"])]
        assert time.monotonic() < deadline, f"request {request_id} not logged"
        time.sleep(0.2)


def value_types(value: Any) -> Any:
    """Return the keys and value types of a logged output, nested objects too."""
    if isinstance(value, dict):
        return {key: value_types(item) for key, item in value.items()}
    return type(value).__name__


@pytest.mark.parametrize("name", [BINARY, MULTICLASS, REGRESSION])
def test_arrow_outputs_logged_as_json(
    http: httpx.Client, frames: dict[str, pd.DataFrame], name: str
) -> None:
    rows = feature_rows(frames, name)
    sent = http.post(f"/v1/models/{name}/predict", json={"rows": rows})
    assert sent.status_code == 200, sent.text
    arrow_id = post_arrow(http, name, rows)

    from_json = logged_outputs(http, name, sent.json()["request_id"])
    from_arrow = logged_outputs(http, name, arrow_id)

    assert from_json == sent.json()["predictions"]
    assert len(from_arrow) == len(from_json)
    for got, want in zip(from_arrow, from_json):
        assert value_types(got) == value_types(want)
        assert list(got) == list(want)
        if "value" in want:
            assert got["value"] == pytest.approx(want["value"], abs=TOLERANCE)
            continue
        assert got["label"] == want["label"]
        assert list(got["probabilities"]) == list(want["probabilities"])
        for key, probability in want["probabilities"].items():
            expected = pytest.approx(probability, abs=TOLERANCE)
            assert got["probabilities"][key] == expected
