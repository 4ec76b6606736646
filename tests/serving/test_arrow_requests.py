"""Arrow requests the predict route rejects or warns about as it does JSON ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from support import DATASETS, TrainedHome, json_rows, run_appliance

MODEL = "binary_lightgbm"
PREDICT = f"/v1/models/{MODEL}/predict"
NUMBER_COLUMN = "radius"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
IGNORED_WARNING = f"columns 'bogus' are not inputs of model '{MODEL}' and were ignored"


def feature_rows(frames: dict[str, pd.DataFrame], count: int) -> list[dict[str, Any]]:
    """Return `count` rows of the binary dataset without its target."""
    target = DATASETS["binary"][0]
    return json_rows(frames["binary"].drop(columns=[target]).iloc[:count])


def stream_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def post_arrow(http: httpx.Client, body: bytes) -> httpx.Response:
    return http.post(PREDICT, content=body, headers={"content-type": ARROW_STREAM})


def with_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """Return `table` with column `name` replaced by `values`, in place."""
    index = table.column_names.index(name)
    return table.set_column(index, name, values)


def test_arrow_repeated_column_422(
    http: httpx.Client, frames: dict[str, pd.DataFrame]
) -> None:
    table = pa.Table.from_pylist(feature_rows(frames, 2))
    table = table.append_column(NUMBER_COLUMN, pa.array([1.0, 2.0]))

    response = post_arrow(http, stream_bytes(table))

    assert response.status_code == 422
    body = response.json()
    assert body["column"] == NUMBER_COLUMN
    assert body["error"] == (
        f"column '{NUMBER_COLUMN}' appears 2 times in the Arrow stream sent to "
        f"model '{MODEL}'; send each column once"
    )


def test_arrow_warnings_match_json(
    http: httpx.Client, frames: dict[str, pd.DataFrame]
) -> None:
    rows = feature_rows(frames, 2)
    for row in rows:
        row["bogus"] = 1.5

    arrow = post_arrow(http, stream_bytes(pa.Table.from_pylist(rows)))
    plain = http.post(PREDICT, json={"rows": rows})

    assert arrow.status_code == 200
    assert plain.status_code == 200
    assert plain.json()["warnings"] == [IGNORED_WARNING]
    assert json.loads(arrow.headers["x-appliance-warnings"]) == [IGNORED_WARNING]
    schema = pa.ipc.open_stream(arrow.content).schema
    assert json.loads(schema.metadata[b"warnings"]) == [IGNORED_WARNING]


def test_arrow_without_warnings_has_no_header(
    http: httpx.Client, frames: dict[str, pd.DataFrame]
) -> None:
    table = pa.Table.from_pylist(feature_rows(frames, 2))

    response = post_arrow(http, stream_bytes(table))

    assert response.status_code == 200
    assert "x-appliance-warnings" not in response.headers
    assert pa.ipc.open_stream(response.content).schema.metadata is None


def test_json_repeated_key_keeps_last(
    http: httpx.Client, frames: dict[str, pd.DataFrame]
) -> None:
    row = feature_rows(frames, 1)[0]
    last = {**row, NUMBER_COLUMN: 25.0}
    text = json.dumps({"rows": [last]})
    repeated = text.replace(
        f'"{NUMBER_COLUMN}"', f'"{NUMBER_COLUMN}": 5.0, "{NUMBER_COLUMN}"'
    )

    twice = http.post(
        PREDICT, content=repeated.encode(), headers={"content-type": "application/json"}
    )
    once = http.post(PREDICT, json={"rows": [last]})
    first = http.post(PREDICT, json={"rows": [{**row, NUMBER_COLUMN: 5.0}]})

    assert repeated.count(f'"{NUMBER_COLUMN}"') == 2
    assert twice.status_code == 200
    assert twice.json()["predictions"] == once.json()["predictions"]
    assert first.json()["predictions"] != once.json()["predictions"]


def test_arrow_bool_number_rejected_as_json(
    http: httpx.Client, frames: dict[str, pd.DataFrame]
) -> None:
    rows = feature_rows(frames, 3)
    table = pa.Table.from_pylist(rows)
    table = with_column(table, NUMBER_COLUMN, pa.array([None, True, False]))
    rows[0][NUMBER_COLUMN] = None
    rows[1][NUMBER_COLUMN] = True

    arrow = post_arrow(http, stream_bytes(table))
    plain = http.post(PREDICT, json={"rows": rows})

    assert arrow.status_code == 422
    assert plain.status_code == 422
    expected = (
        f"row 1, column '{NUMBER_COLUMN}' of model '{MODEL}' must be a number or "
        "null, got true"
    )
    assert arrow.json()["error"] == expected
    assert plain.json()["error"] == expected
    assert (arrow.json()["row"], arrow.json()["column"]) == (1, NUMBER_COLUMN)


def test_arrow_null_bool_column_is_missing(
    http: httpx.Client, frames: dict[str, pd.DataFrame]
) -> None:
    table = pa.Table.from_pylist(feature_rows(frames, 2))
    nulls = with_column(table, NUMBER_COLUMN, pa.array([None, None], pa.bool_()))
    floats = with_column(table, NUMBER_COLUMN, pa.array([None, None], pa.float64()))

    from_bools = post_arrow(http, stream_bytes(nulls))
    from_floats = post_arrow(http, stream_bytes(floats))

    assert from_bools.status_code == 200
    assert from_bools.content == from_floats.content


def test_arrow_file_format_400(
    http: httpx.Client, frames: dict[str, pd.DataFrame]
) -> None:
    table = pa.Table.from_pylist(feature_rows(frames, 2))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)

    response = post_arrow(http, sink.getvalue().to_pybytes())

    assert response.status_code == 400
    assert response.json()["error"] == (
        f"malformed Arrow IPC stream for model '{MODEL}': the body is an Arrow IPC "
        "file (it starts with ARROW1), not a stream; send the bytes of "
        f"pyarrow.ipc.new_stream with Content-Type {ARROW_STREAM}, or convert the "
        "file with pyarrow.ipc.open_file"
    )


@pytest.mark.parametrize("body", [b'{"rows": [{"radius": 1}]}', b" \n[1, 2]"])
def test_arrow_json_body_400(http: httpx.Client, body: bytes) -> None:
    response = post_arrow(http, body)

    assert response.status_code == 400
    assert response.json()["error"] == (
        f"malformed Arrow IPC stream for model '{MODEL}': the body looks like "
        "JSON; send JSON with Content-Type application/json, or send the bytes "
        f"of pyarrow.ipc.new_stream with Content-Type {ARROW_STREAM}"
    )


def test_arrow_garbage_keeps_pyarrow_reason(http: httpx.Client) -> None:
    response = post_arrow(http, b"not arrow at all")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith(f"malformed Arrow IPC stream for model '{MODEL}': ")
    assert error.endswith(f"with Content-Type {ARROW_STREAM}")
    assert "looks like JSON" not in error


@pytest.mark.parametrize("column", [NUMBER_COLUMN, "extra"])
def test_arrow_float16_column_422(
    http: httpx.Client, frames: dict[str, pd.DataFrame], column: str
) -> None:
    table = pa.Table.from_pylist(feature_rows(frames, 2))
    half = pa.array(np.array([1.5, 2.5], dtype=np.float16))
    if column in table.column_names:
        table = with_column(table, column, half)
    else:
        table = table.append_column(column, half)

    response = post_arrow(http, stream_bytes(table))

    assert response.status_code == 422
    body = response.json()
    assert body["column"] == column
    assert body["error"] == (
        f"column '{column}' of the Arrow stream sent to model '{MODEL}' is float16 "
        "(halffloat), which is not accepted; send numbers as integers, float32 or "
        "float64, text as string, large_string or dictionary, and booleans as bool"
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predict_file_repeated_header_rejected(
    http: httpx.Client,
    trained: TrainedHome,
    frames: dict[str, pd.DataFrame],
    tmp_path: Path,
    suffix: str,
) -> None:
    table = pa.Table.from_pylist(feature_rows(frames, 3))
    table = table.append_column(NUMBER_COLUMN, pa.array([1.0, 2.0, 3.0]))
    source = tmp_path / f"rows{suffix}"
    if suffix == ".csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, source)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, source)
    output = tmp_path / "scored.parquet"

    result = run_appliance(
        trained.config_path, trained.home, "predict", MODEL, str(source), str(output)
    )

    assert result.returncode != 0
    assert (
        f"{source}: column '{NUMBER_COLUMN}' appears 2 times in the header; rename "
        "or remove the repeated column"
    ) in result.stderr
    assert not output.exists()


def test_predict_file_suffixed_name_accepted(
    http: httpx.Client,
    trained: TrainedHome,
    frames: dict[str, pd.DataFrame],
    tmp_path: Path,
) -> None:
    frame = pd.DataFrame(feature_rows(frames, 3))
    frame[f"{NUMBER_COLUMN}_1"] = 1.0
    source = tmp_path / "rows.csv"
    frame.to_csv(source, index=False)
    output = tmp_path / "scored.parquet"

    result = run_appliance(
        trained.config_path, trained.home, "predict", MODEL, str(source), str(output)
    )

    assert result.returncode == 0, result.stderr
    assert output.exists()
