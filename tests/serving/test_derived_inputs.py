"""Request columns that the derived SQL of a model's feature views reads.

Column ``distance`` is not a model input, but the view's derived columns read
it. An infinite number in it, or one beyond the float64 range, is rejected
before the lookup, because SQL would compute ``temp / distance`` as 0.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from support import Daemon, run_appliance, serve_flights_week

from appliance.config import load_config

CONFIG = """
[storage]
home = "home"

[feature_views.weather]
sql = "SELECT origin, time_hour, temp FROM weather"
entities = ["origin"]
timestamp = "time_hour"

[feature_views.weather.derive]
temp_per_mile = "temp / distance"
trip = "CASE WHEN distance > 150 THEN 'long' ELSE 'short' END"

[models.late]
dataset = "flights"
target = "late"
task = "classification"
algorithm = "random_forest"
features = ["temp", "temp_per_mile", "trip"]
categorical = ["trip"]
feature_views = ["weather"]
event_timestamp = "time_hour"

[models.late.params]
n_estimators = 20
"""
ARROW_STREAM = "application/vnd.apache.arrow.stream"
FLOAT64_RANGE = "beyond the float64 range (±1.798e+308)"
LOG_TIMEOUT_SECONDS = 10.0


@pytest.fixture(scope="module")
def derived_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """Train model ``late`` over the weather view's derived columns and serve it."""
    yield from serve_flights_week(tmp_path_factory.mktemp("derived"), CONFIG)


@pytest.fixture
def client(derived_daemon: Daemon) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=derived_daemon.base_url, trust_env=False, timeout=30.0
    ) as http:
        yield http


def flight_json(distance: str) -> str:
    """Return a JSON row with `distance` written as raw JSON text."""
    return (
        '{"origin": "EWR", "time_hour": "2013-02-03T09:30:00Z", '
        f'"distance": {distance}}}'
    )


def post_rows(client: httpx.Client, rows: list[str]) -> httpx.Response:
    return client.post(
        "/v1/models/late/predict",
        content=f'{{"rows": [{", ".join(rows)}]}}'.encode(),
        headers={"content-type": "application/json"},
    )


def distance_error(row: int, problem: str) -> str:
    return f"row {row}, column 'distance' of model 'late' {problem}"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("1e999", f"is 1e999, {FLOAT64_RANGE}"),
        ("-1E400", f"is -1E400, {FLOAT64_RANGE}"),
        (
            "1" + "0" * 400,
            f"is 10000000000000000000... (401 characters), {FLOAT64_RANGE}",
        ),
        ("Infinity", "must be finite, got inf"),
    ],
)
def test_derived_input_infinite_422(
    client: httpx.Client, value: str, problem: str
) -> None:
    response = post_rows(client, [flight_json("190"), flight_json(value)])

    assert response.status_code == 422
    body = response.json()
    assert body["row"] == 1
    assert body["column"] == "distance"
    assert body["error"].startswith(distance_error(1, problem))


def test_derived_input_finite_200(client: httpx.Client) -> None:
    # 10**19 is beyond int64, so Arrow reads the column as float64.
    rows = [flight_json("190"), flight_json("10000000000000000000"), flight_json("NaN")]

    response = post_rows(client, rows)

    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 3


def test_derived_input_arrow_infinite_422(client: httpx.Client) -> None:
    table = pa.table(
        {
            "origin": ["EWR", "EWR"],
            "time_hour": ["2013-02-03T09:30:00Z"] * 2,
            "distance": pa.array([190.0, -float("inf")]),
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)

    response = client.post(
        "/v1/models/late/predict",
        content=sink.getvalue().to_pybytes(),
        headers={"content-type": ARROW_STREAM},
    )

    assert response.status_code == 422
    body = response.json()
    assert (body["row"], body["column"]) == (1, "distance")
    assert body["error"].startswith(distance_error(1, "must be finite, got -inf"))


def test_cli_predict_derived_input_rejected(
    derived_daemon: Daemon, tmp_path: Path
) -> None:
    source = tmp_path / "rows.csv"
    source.write_text(
        "origin,time_hour,distance\n"
        "EWR,2013-02-03T09:30:00Z,190\n"
        "EWR,2013-02-03T09:30:00Z,1e999\n"
    )
    output = tmp_path / "scored.parquet"
    config_path = derived_daemon.log.parent / "config.toml"
    home = load_config(config_path).storage.home

    result = run_appliance(
        config_path, home, "predict", "late", str(source), str(output)
    )

    assert result.returncode != 0
    assert (
        f"{source}, line 3, column 'distance' of model 'late' must be finite, got inf"
    ) in result.stderr
    assert not output.exists()


def test_derived_input_first_row_named(client: httpx.Client) -> None:
    response = post_rows(client, [flight_json("1e999"), flight_json("1e999")])

    assert response.status_code == 422
    assert response.json()["row"] == 0


def test_ignored_overflowed_number_logged(client: httpx.Client) -> None:
    row = flight_json("190")[:-1] + ', "note": 1e999}'

    response = post_rows(client, [row])
    logged = logged_inputs(client, response.json()["request_id"])

    assert response.status_code == 200, response.text
    assert response.json()["warnings"] == [
        "columns 'note' are not inputs of model 'late' and were ignored"
    ]
    assert logged["note"] == "1e999"


def logged_inputs(client: httpx.Client, request_id: str) -> dict[str, Any]:
    """Return the logged inputs of a request's first row, waiting for the log."""
    deadline = time.monotonic() + LOG_TIMEOUT_SECONDS
    while True:
        response = client.get(
            "/v1/predictions", params={"model": "late", "limit": 1000}
        )
        assert response.status_code == 200, response.text
        for row in response.json()["predictions"]:
            if row["request_id"] == request_id:
                return row["input"]
        assert time.monotonic() < deadline, f"request {request_id} not logged"
        time.sleep(0.2)
