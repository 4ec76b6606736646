"""JSON bodies nested too deeply to decode: 422 naming the depth, never 500."""

from __future__ import annotations

import httpx
import pytest

from appliance.serving._nesting import nesting_depth

MODEL = "binary_lightgbm"
LEVELS = 1000
DEEP = b"[" * LEVELS + b"]" * LEVELS


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", 0),
        (b"1", 0),
        (b'{"rows": []}', 2),
        (b'{"a": [{"b": [1]}], "c": {}}', 4),
        (b'{"s": "[[[{{{", "t": "\\"[["}', 1),
        (b"[" * 5 + b"]" * 5 + b"[[]]", 5),
    ],
)
def test_nesting_depth_counts_levels(body: bytes, expected: int) -> None:
    assert nesting_depth(body) == expected


@pytest.mark.parametrize(
    ("path", "body", "subject"),
    [
        (
            f"/v1/models/{MODEL}/predict",
            b'{"rows": [{"radius": ' + DEEP + b"}]}",
            f"request body for model '{MODEL}'",
        ),
        (
            f"/v1/models/{MODEL}/predict",
            b'{"rows": [{"radius": NaN, "texture": ' + DEEP + b"}]}",
            f"request body for model '{MODEL}'",
        ),
        (
            "/v1/datasets/binary/rows",
            b'{"rows": [{"radius": ' + DEEP + b"}]}",
            "request body for dataset 'binary'",
        ),
        (
            f"/v1/models/{MODEL}/feedback",
            b'{"labels": [{"request_id": "r", "row": 0, "label": ' + DEEP + b"}]}",
            f"feedback body for model '{MODEL}'",
        ),
        (
            f"/v1/models/{MODEL}/retrain",
            b'{"trigger": ' + DEEP + b"}",
            f"retrain request for model '{MODEL}'",
        ),
    ],
)
def test_deep_json_rejected_422(
    http: httpx.Client, path: str, body: bytes, subject: str
) -> None:
    depth = nesting_depth(body)
    response = http.post(
        path, content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    error = response.json()
    assert error["error"].startswith(f"{subject} is JSON nested {depth} levels deep")
    assert "recursion limit" in error["error"]
    assert error["depth"] == depth


@pytest.mark.parametrize(
    "path",
    [
        "/v1/admin/ingest",
        "/v1/admin/train",
        "/v1/admin/registry/runs/lookup",
        f"/v1/admin/registry/models/{MODEL}/promote",
    ],
)
def test_deep_json_typed_body_400(http: httpx.Client, path: str) -> None:
    response = http.post(
        path, content=DEEP, headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert "Expected `object`, got `array`" in response.json()["error"]
