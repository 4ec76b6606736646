"""Request values the predict route rejects naming their row and column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pytest
from support import DATASETS, TrainedHome, json_rows, run_appliance

BINARY = "binary_lightgbm"
NUMBER_COLUMN = "radius"
TEXT_COLUMN = "site"
PLACEHOLDER = "__value__"
ARROW_STREAM = "application/vnd.apache.arrow.stream"


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


def nul_message(row: int, shown: str, character: int) -> str:
    return (
        f"row {row}, column '{TEXT_COLUMN}' of model '{BINARY}' is the text "
        f"'{shown}', which contains a NUL byte (0x00) at character {character}; "
        "remove NUL bytes from the text"
    )


@pytest.mark.parametrize(
    ("text", "shown", "character"),
    [
        ("no\0rth", "no\\0rth", 3),
        ("\0", "\\0", 1),
        ("x" * 70 + "\0", "x" * 70 + "\\0", 71),
        ("x" * 90 + "\0", "x" * 80 + "... (91 characters)", 91),
    ],
)
def test_predict_nul_text_422(
    http: httpx.Client,
    frames: dict[str, pd.DataFrame],
    text: str,
    shown: str,
    character: int,
) -> None:
    rows = feature_rows(frames, 3)
    rows[2][TEXT_COLUMN] = text

    response = http.post(f"/v1/models/{BINARY}/predict", json={"rows": rows})

    assert response.status_code == 422
    body = response.json()
    assert body["row"] == 2
    assert body["column"] == TEXT_COLUMN
    assert body["error"] == nul_message(2, shown, character)


def test_predict_arrow_nul_text_422(
    http: httpx.Client, frames: dict[str, pd.DataFrame]
) -> None:
    rows = feature_rows(frames, 3)
    rows[1][TEXT_COLUMN] = "ea\0st"
    table = pa.Table.from_pylist(rows)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)

    response = http.post(
        f"/v1/models/{BINARY}/predict",
        content=sink.getvalue().to_pybytes(),
        headers={"content-type": ARROW_STREAM},
    )

    assert response.status_code == 422
    body = response.json()
    assert (body["row"], body["column"]) == (1, TEXT_COLUMN)
    assert body["error"] == nul_message(1, "ea\\0st", 3)


def test_predict_text_without_nul_200(
    http: httpx.Client, frames: dict[str, pd.DataFrame]
) -> None:
    rows = feature_rows(frames, 1)
    rows[0][TEXT_COLUMN] = "north\\0 and \u00e9"

    response = http.post(f"/v1/models/{BINARY}/predict", json={"rows": rows})

    assert response.status_code == 200, response.text
