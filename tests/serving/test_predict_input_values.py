"""Missing values and integer ranges of predict inputs, over HTTP and the CLI.

Model ``trips`` reads ``distance`` (DOUBLE), ``hour`` (BIGINT) and
``carrier`` (VARCHAR). Its dataset reads ``n/a`` as missing besides the
default null values, so a CSV file scored by ``appliance predict`` must too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import Daemon, run_appliance, start_daemon, stop_daemon

from appliance.config import load_config
from appliance.errors import RequestError
from appliance.serving import rows_to_columns, table_to_columns
from appliance.storage import Catalog, ingest
from appliance.training import train_model

MODEL = "trips"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
CONFIG = """
[storage]
home = "home"

[datasets.trips]
null_values = ["", "NA", "null", "NULL", "n/a"]

[models.trips]
dataset = "trips"
target = "late"
task = "classification"
algorithm = "lightgbm"

[models.trips.params]
n_estimators = 10
"""
BIGINT_RANGE = (
    "outside the range of BIGINT (-9223372036854775808 to 9223372036854775807), "
    "the column's type in the training dataset; send a whole number within it, "
    "or null for a missing value"
)
CSV_MISSING = (
    "a CSV file is read with the empty field, 'NA', 'null', 'NULL' and 'n/a' "
    "(the null_values of [datasets.trips]) and the text 'NaN' as missing values"
)


@dataclass(frozen=True)
class TripsHome:
    config_path: Path
    home: Path
    folder: Path


@pytest.fixture(scope="module")
def trips_home(tmp_path_factory: pytest.TempPathFactory) -> TripsHome:
    """Ingest 400 trips and train model ``trips`` on them."""
    folder = tmp_path_factory.mktemp("trips")
    config_path = folder / "config.toml"
    config_path.write_text(CONFIG)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("APPLIANCE_HOME", raising=False)
        patch.delenv("APPLIANCE_CONFIG", raising=False)
        config = load_config(config_path)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "distance": rng.uniform(100, 3000, 400).round(1),
            "hour": rng.integers(0, 24, 400),
            "carrier": rng.choice(["AA", "UA", "DL"], 400),
        }
    )
    frame["late"] = (frame["hour"] > 15).astype(int)
    source = folder / "trips.csv"
    frame.to_csv(source, index=False)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "trips", [source], settings=config.dataset("trips"))
    train_model(config, MODEL)
    return TripsHome(config_path, config.storage.home, folder)


@pytest.fixture(scope="module")
def trips_daemon(
    trips_home: TripsHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    log = tmp_path_factory.mktemp("trips_daemon") / "stderr.log"
    running = start_daemon(trips_home.config_path, trips_home.home, log)
    try:
        yield running
    finally:
        stop_daemon(running)


@pytest.fixture
def client(trips_daemon: Daemon) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=trips_daemon.base_url, trust_env=False, timeout=30.0
    ) as http:
        yield http


def post_json(client: httpx.Client, hour: str, distance: str = "120.5") -> Any:
    """Post two rows, the second with `hour` and `distance` written as raw JSON."""
    body = (
        '{"rows": [{"distance": 300, "hour": 3, "carrier": "AA"}, '
        f'{{"distance": {distance}, "hour": {hour}, "carrier": "UA"}}]}}'
    )
    return client.post(
        f"/v1/models/{MODEL}/predict",
        content=body.encode(),
        headers={"content-type": "application/json"},
    )


def post_arrow(client: httpx.Client, columns: dict[str, pa.Array]) -> Any:
    """Post an Arrow stream of two rows with `columns` over the defaults."""
    table = pa.table(
        {
            "distance": pa.array([300.0, 120.5]),
            "hour": pa.array([3, 4]),
            "carrier": pa.array(["AA", "UA"]),
            **columns,
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return client.post(
        f"/v1/models/{MODEL}/predict",
        content=sink.getvalue().to_pybytes(),
        headers={"content-type": ARROW_STREAM},
    )


def predict_file(home: TripsHome, name: str, text: str) -> Any:
    """Write `text` to a CSV file and score it with ``appliance predict``."""
    source = home.folder / name
    source.write_text(text)
    output = home.folder / f"{source.stem}_scored.csv"
    output.unlink(missing_ok=True)
    result = run_appliance(
        home.config_path, home.home, "predict", MODEL, str(source), str(output)
    )
    return result, source, output


# --- missing values --------------------------------------------------------------


def test_predict_csv_dataset_null_values_missing(trips_home: TripsHome) -> None:
    text = "distance,hour,carrier\n300,3,AA\nnull,4,UA\nNA,NULL,\nn/a,n/a,n/a\n,5,DL\n"

    result, _, output = predict_file(trips_home, "nulls.csv", text)

    assert result.returncode == 0, result.stderr
    assert "scored 5 rows" in result.stdout
    scored = pd.read_csv(output, keep_default_na=False, na_values=[""])
    assert scored["distance"].isna().tolist() == [False, True, True, True, True]
    assert scored["hour"].isna().tolist() == [False, False, True, True, False]
    assert scored["carrier"].isna().tolist() == [False, False, True, True, False]
    assert scored["prediction"].notna().all()


def test_predict_csv_other_text_names_null_values(trips_home: TripsHome) -> None:
    text = "distance,hour,carrier\n300,3,AA\nnull,4,UA\n-,5,UA\n"

    result, source, output = predict_file(trips_home, "dash.csv", text)

    assert result.returncode != 0
    assert (
        f"{source}, line 4, column 'distance' of model '{MODEL}' must be a number "
        f"or null, got '-'; {CSV_MISSING}"
    ) in result.stderr
    assert not output.exists()


def test_explain_csv_dataset_null_values_missing(trips_home: TripsHome) -> None:
    source = trips_home.folder / "explain.csv"
    source.write_text("distance,hour,carrier\n300,3,AA\nn/a,NA,null\n")

    result = run_appliance(
        trips_home.config_path,
        trips_home.home,
        "explain",
        MODEL,
        str(source),
        "--json",
    )

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_predict_parquet_null_text_names_missing(trips_home: TripsHome) -> None:
    source = trips_home.folder / "nulls.parquet"
    table = pa.table(
        {"distance": ["300", "null"], "hour": [3, 4], "carrier": ["AA", "UA"]}
    )
    pq.write_table(table, source)
    output = trips_home.folder / "nulls_scored.parquet"

    result = run_appliance(
        trips_home.config_path,
        trips_home.home,
        "predict",
        MODEL,
        str(source),
        str(output),
    )

    assert result.returncode != 0
    assert (
        f"{source}, row 2, column 'distance' of model '{MODEL}' must be a number "
        "or null, got 'null'; a Parquet file is read with only null and the text "
        "'NaN' as missing values"
    ) in result.stderr


def test_predict_json_null_text_names_missing(client: httpx.Client) -> None:
    response = post_json(client, "4", distance='"NA"')

    assert response.status_code == 422
    body = response.json()
    assert (body["row"], body["column"]) == (1, "distance")
    assert body["error"] == (
        f"row 1, column 'distance' of model '{MODEL}' must be a number or null, "
        "got 'NA'; a JSON request reads only null and the text 'NaN' as missing "
        "values"
    )


def test_predict_arrow_null_text_names_missing(client: httpx.Client) -> None:
    response = post_arrow(client, {"distance": pa.array(["300", "NULL"])})

    assert response.status_code == 422
    body = response.json()
    assert (body["row"], body["column"]) == (1, "distance")
    assert body["error"].endswith(
        "got 'NULL'; an Arrow request reads only null and the text 'NaN' as "
        "missing values"
    )


# --- integer ranges ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected_text"),
    [
        ("123456789012345678901234567890", "123456789012345678901234567890"),
        ("9223372036854775808", "9223372036854775808"),
        ("-9223372036854775809", "-9223372036854775809"),
        ("1e30", "1e+30"),
    ],
)
def test_predict_json_integer_beyond_bigint_422(
    client: httpx.Client, value: str, expected_text: str
) -> None:
    response = post_json(client, value)

    assert response.status_code == 422
    body = response.json()
    assert (body["row"], body["column"]) == (1, "hour")
    assert body["error"] == (
        f"row 1, column 'hour' of model '{MODEL}' is {expected_text}, {BIGINT_RANGE}"
    )


@pytest.mark.parametrize("value", ["9223372036854775807", "-9223372036854775808"])
def test_predict_json_bigint_bounds_200(client: httpx.Client, value: str) -> None:
    response = post_json(client, value)

    assert response.status_code == 200, response.text


def test_predict_json_huge_number_column_200(client: httpx.Client) -> None:
    # A DOUBLE column can contain this value, which the model reads rounded.
    response = post_json(client, "4", distance="123456789012345678901234567890")

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("column", "expected_text"),
    [
        (pa.array([3, 2**63], pa.uint64()), "9223372036854775808"),
        (pa.array([3, 2**64 - 1], pa.uint64()), "18446744073709551615"),
        (pa.array([3.0, 1.5e29]), "1.5e+29"),
        (pa.array([3, 10**30], pa.decimal128(38, 0)), str(10**30)),
    ],
)
def test_predict_arrow_integer_beyond_bigint_422(
    client: httpx.Client, column: pa.Array, expected_text: str
) -> None:
    response = post_arrow(client, {"hour": column})

    assert response.status_code == 422
    body = response.json()
    assert (body["row"], body["column"]) == (1, "hour")
    assert body["error"] == (
        f"row 1, column 'hour' of model '{MODEL}' is {expected_text}, {BIGINT_RANGE}"
    )


@pytest.mark.parametrize(
    "columns",
    [
        {"hour": pa.array([3, 2**53 + 1], pa.int64())},
        {"hour": pa.array([3, 2**63 - 1], pa.uint64())},
        {"distance": pa.array([300, 2**62 + 1], pa.int64())},
    ],
)
def test_predict_arrow_wide_integers_200(
    client: httpx.Client, columns: dict[str, pa.Array]
) -> None:
    response = post_arrow(client, columns)

    assert response.status_code == 200, response.text


def test_predict_csv_integer_beyond_bigint_named(trips_home: TripsHome) -> None:
    text = "distance,hour,carrier\n300,3,AA\n120.5,123456789012345678901234567890,UA\n"

    result, source, output = predict_file(trips_home, "huge.csv", text)

    assert result.returncode != 0
    assert (
        f"{source}, line 3, column 'hour' of model '{MODEL}' is "
        f"123456789012345678901234567890, {BIGINT_RANGE}"
    ) in result.stderr
    assert not output.exists()


def test_openapi_integer_column_range(client: httpx.Client) -> None:
    document = client.get("/schema/openapi.json").json()

    properties = document["components"]["schemas"][f"{MODEL}Row"]["properties"]
    assert properties["hour"]["minimum"] == -(2**63)
    assert properties["hour"]["maximum"] == 2**63 - 1
    assert "minimum" not in properties["distance"]


# --- conversion of request columns -------------------------------------------------


INTEGER_REQUEST = [
    {"name": "small", "type": "integer", "sql_type": "TINYINT"},
    {"name": "unsigned", "type": "integer", "sql_type": "UBIGINT"},
]


@pytest.mark.parametrize(
    ("row", "column"),
    [
        ({"small": 128, "unsigned": 0}, "small"),
        ({"small": -129, "unsigned": 0}, "small"),
        ({"small": 0, "unsigned": -1}, "unsigned"),
        ({"small": 0, "unsigned": 2**64}, "unsigned"),
    ],
)
def test_json_integer_outside_type_rejected(row: dict[str, int], column: str) -> None:
    with pytest.raises(RequestError) as raised:
        rows_to_columns("m", INTEGER_REQUEST, [{"small": 1, "unsigned": 1}, row])

    assert raised.value.detail["row"] == 1
    assert raised.value.detail["column"] == column
    assert f"is {row[column]}, outside the range of" in str(raised.value)


@pytest.mark.parametrize(
    ("row", "column"),
    [
        ({"small": 128, "unsigned": 0}, "small"),
        ({"small": -129, "unsigned": 0}, "small"),
        ({"small": 0, "unsigned": -1}, "unsigned"),
    ],
)
def test_arrow_integer_outside_type_rejected(row: dict[str, int], column: str) -> None:
    table = pa.Table.from_pylist([{"small": 1, "unsigned": 1}, row])

    with pytest.raises(RequestError) as raised:
        table_to_columns("m", INTEGER_REQUEST, table)

    assert raised.value.detail["row"] == 1
    assert raised.value.detail["column"] == column
    assert f"is {row[column]}, outside the range of" in str(raised.value)


@pytest.mark.parametrize("count", [2, 40])
def test_integer_range_checked_at_every_request_size(count: int) -> None:
    """Small requests are compared as Python floats and large ones in numpy."""
    rows = [{"small": None, "unsigned": 1}] * (count - 1)

    with pytest.raises(RequestError) as raised:
        rows_to_columns("m", INTEGER_REQUEST, [*rows, {"small": 128, "unsigned": 1}])
    columns, _ = rows_to_columns(
        "m", INTEGER_REQUEST, [*rows, {"small": 127, "unsigned": 1}]
    )

    assert raised.value.detail["row"] == count - 1
    assert raised.value.detail["column"] == "small"
    assert columns["small"][-1] == 127.0
    assert math.isnan(columns["small"][0])


def test_integer_type_bounds_accepted() -> None:
    rows = [{"small": -128, "unsigned": 2**64 - 1}, {"small": 127, "unsigned": None}]

    columns, _ = rows_to_columns("m", INTEGER_REQUEST, rows)

    assert columns["small"].tolist() == [-128.0, 127.0]
    assert columns["unsigned"][0] == float(2**64)
    assert math.isnan(columns["unsigned"][1])
