"""Request values the predict route rejects naming their row and column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from support import DATASETS, TrainedHome, json_rows, run_appliance

BINARY = "binary_lightgbm"
NUMBER_COLUMN = "radius"
TEXT_COLUMN = "site"
PLACEHOLDER = "__value__"


def feature_rows(frames: dict[str, pd.DataFrame], count: int) -> list[dict[str, Any]]:
    """Return `count` rows of the binary dataset without its target."""
    target = DATASETS["binary"][0]
    return json_rows(frames["binary"].drop(columns=[target]).iloc[:count])


def post_raw(http: httpx.Client, rows: list[dict[str, Any]], value: str) -> Any:
    """Post `rows` with the placeholder string replaced by the raw JSON `value`."""
    body = json.dumps({"rows": rows}).replace(f'"{PLACEHOLDER}"', value)
    return http.post(
        f"/v1/models/{BINARY}/predict",
        content=body.encode(),
        headers={"content-type": "application/json"},
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("1e999", "1e999"),
        ("-1e400", "-1e400"),
        ("1" + "0" * 400, "10000000000000000000... (401 characters)"),
        ("1" + "0" * 5000, "10000000000000000000... (5001 characters)"),
    ],
)
def test_predict_overflowing_number_422(
    http: httpx.Client, frames: dict[str, pd.DataFrame], value: str, shown: str
) -> None:
    rows = feature_rows(frames, 3)
    rows[1][NUMBER_COLUMN] = PLACEHOLDER

    response = post_raw(http, rows, value)

    assert response.status_code == 422
    body = response.json()
    assert body["row"] == 1
    assert body["column"] == NUMBER_COLUMN
    assert body["error"] == (
        f"row 1, column '{NUMBER_COLUMN}' of model '{BINARY}' is {shown}, beyond "
        "the float64 range (±1.798e+308); send a finite number within it, or null "
        "for a missing value"
    )


def test_predict_overflowing_text_value_422(
    http: httpx.Client, frames: dict[str, pd.DataFrame]
) -> None:
    rows = feature_rows(frames, 2)
    rows[0][TEXT_COLUMN] = PLACEHOLDER

    response = post_raw(http, rows, "1e999")

    assert response.status_code == 422
    body = response.json()
    assert (body["row"], body["column"]) == (0, TEXT_COLUMN)
    assert "must be a string or null, got 1e999" in body["error"]


def test_predict_file_overflowing_number_named(
    http: httpx.Client,
    trained: TrainedHome,
    frames: dict[str, pd.DataFrame],
    tmp_path: Path,
) -> None:
    target = DATASETS["binary"][0]
    frame = frames["binary"].drop(columns=[target]).iloc[:3].copy()
    frame[NUMBER_COLUMN] = frame[NUMBER_COLUMN].astype(object)
    frame.loc[frame.index[1], NUMBER_COLUMN] = "1e999"
    source = tmp_path / "rows.csv"
    frame.to_csv(source, index=False)
    output = tmp_path / "scored.parquet"

    result = run_appliance(
        trained.config_path, trained.home, "predict", BINARY, str(source), str(output)
    )

    assert result.returncode != 0
    assert (
        f"{source}, line 3, column '{NUMBER_COLUMN}' of model '{BINARY}' must be "
        "finite, got inf; replace it with a finite number, or with a missing value "
        "(null)"
    ) in result.stderr
    assert not output.exists()
