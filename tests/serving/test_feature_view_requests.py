"""Requests to a daemon whose model reads a feature view by entity key."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import (
    Daemon,
    load_config_text,
    run_appliance,
    serve_flights_week,
    write_flights_week,
)

from appliance.config import load_config
from appliance.storage import Catalog, ingest
from appliance.training import train_model

CONFIG = """
[storage]
home = "home"

[ingest]
flush_rows = 2
flush_seconds = 3600

[feature_views.weather]
sql = "SELECT origin, time_hour, temp FROM weather"
entities = ["origin"]
timestamp = "time_hour"

[models.late]
dataset = "flights"
target = "late"
task = "classification"
algorithm = "random_forest"
features = ["distance", "temp"]
feature_views = ["weather"]
event_timestamp = "time_hour"

[models.late.params]
n_estimators = 20
"""
ARROW_STREAM = "application/vnd.apache.arrow.stream"
FLUSH_TIMEOUT_SECONDS = 30.0


@pytest.fixture(scope="module")
def late_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """Train model ``late`` over the weather view and serve it."""
    yield from serve_flights_week(tmp_path_factory.mktemp("late"), CONFIG)


@pytest.fixture
def client(late_daemon: Daemon) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=late_daemon.base_url, trust_env=False, timeout=30.0
    ) as http:
        yield http


def flight(**values: Any) -> dict[str, Any]:
    return {
        "origin": "EWR",
        "time_hour": "2013-02-03T09:30:00Z",
        "distance": 190,
        **values,
    }


def arrow_body(rows: list[dict[str, Any]]) -> bytes:
    table = pa.Table.from_pylist(rows)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def write_rows(source: Path, rows: list[dict[str, Any]]) -> None:
    """Write `rows` as Parquet or, for a ``.csv`` name, as CSV with a header."""
    if source.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), source)
        return
    lines = [",".join(rows[0])] + [",".join(map(str, r.values())) for r in rows]
    source.write_text("\n".join(lines) + "\n")


NUL_KEY_ERROR = (
    "row 1, column 'origin' of model 'late' is the text 'EW\\0R', which contains "
    "a NUL byte (0x00) at character 3; remove NUL bytes from the text"
)


@pytest.mark.parametrize(
    "second",
    [flight(origin="EW\0R"), flight(origin="EW\0R", temp=12.0)],
    ids=["looked-up", "carried"],
)
def test_predict_nul_entity_key_422(
    client: httpx.Client, second: dict[str, Any]
) -> None:
    response = client.post("/v1/models/late/predict", json={"rows": [flight(), second]})

    assert response.status_code == 422
    body = response.json()
    assert (body["row"], body["column"]) == (1, "origin")
    assert body["error"] == NUL_KEY_ERROR


def test_predict_arrow_nul_entity_key_422(client: httpx.Client) -> None:
    response = client.post(
        "/v1/models/late/predict",
        content=arrow_body([flight(), flight(origin="EW\0R")]),
        headers={"content-type": ARROW_STREAM},
    )

    assert response.status_code == 422
    body = response.json()
    assert (body["row"], body["column"]) == (1, "origin")
    assert body["error"] == NUL_KEY_ERROR


def test_predict_entity_key_without_nul_200(client: httpx.Client) -> None:
    json_response = client.post(
        "/v1/models/late/predict", json={"rows": [flight(), flight(origin="JFK")]}
    )
    arrow_response = client.post(
        "/v1/models/late/predict",
        content=arrow_body([flight()]),
        headers={"content-type": ARROW_STREAM},
    )

    assert json_response.status_code == 200, json_response.text
    assert arrow_response.status_code == 200, arrow_response.text


@pytest.mark.parametrize("key", [["EWR"], {"code": "EWR"}], ids=["array", "object"])
def test_predict_nested_entity_key_422(client: httpx.Client, key: Any) -> None:
    rows = [flight(), flight(origin=key)]

    response = client.post("/v1/models/late/predict", json={"rows": rows})

    assert response.status_code == 422
    body = response.json()
    assert (body["row"], body["column"]) == (1, "origin")
    assert body["error"] == (
        "row 1, column 'origin' of model 'late' is an entity key of its feature "
        f"views and must be text, an integer or null, got {key!r}; send the "
        "key's value itself"
    )


def test_predict_arrow_list_entity_key_422(client: httpx.Client) -> None:
    table = pa.table({"origin": [["EWR"]], "time_hour": ["2013-02-03T09:30:00Z"]})
    table = table.append_column("distance", pa.array([190]))
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
    assert body["column"] == "origin"
    assert "row" not in body
    assert "got list<item: string>" in body["error"]


UNKNOWN_ORIGIN_WARNING = (
    "feature view 'weather' has no values for 1 of 2 rows, first row 1 "
    "(origin='XXX'), so its columns temp were missing values; check the entity "
    "keys and the event time against the view's rows and its ttl"
)


def test_predict_unknown_entity_key_warns(client: httpx.Client) -> None:
    rows = [flight(), flight(origin="XXX")]

    response = client.post("/v1/models/late/predict", json={"rows": rows})

    assert response.status_code == 200, response.text
    assert response.json()["warnings"] == [UNKNOWN_ORIGIN_WARNING]


def test_predict_arrow_unknown_entity_key_warns(client: httpx.Client) -> None:
    response = client.post(
        "/v1/models/late/predict",
        content=arrow_body([flight(), flight(origin="XXX")]),
        headers={"content-type": ARROW_STREAM},
    )

    assert response.status_code == 200, response.text
    header = response.headers["x-appliance-warnings"]
    assert json.loads(header) == [UNKNOWN_ORIGIN_WARNING]


def test_predict_null_entity_key_warns(client: httpx.Client) -> None:
    response = client.post(
        "/v1/models/late/predict", json={"rows": [flight(origin=None)]}
    )

    assert response.status_code == 200, response.text
    [warning] = response.json()["warnings"]
    assert warning.startswith(
        "feature view 'weather' has no values for 1 of 1 rows, first row 0 "
        "(origin=null), "
    )


def test_predict_known_entity_keys_no_warning(client: httpx.Client) -> None:
    response = client.post("/v1/models/late/predict", json={"rows": [flight()]})

    assert response.status_code == 200, response.text
    assert "warnings" not in response.json()


@pytest.mark.parametrize(("suffix", "place"), [("parquet", "row 2"), ("csv", "line 3")])
def test_cli_predict_nul_entity_key_rejected(
    late_daemon: Daemon, tmp_path: Path, suffix: str, place: str
) -> None:
    rows = [flight(), flight(origin="EW\0R"), flight()]
    source = tmp_path / f"rows.{suffix}"
    write_rows(source, rows)
    output = tmp_path / "scored.parquet"
    config_path = late_daemon.log.parent / "config.toml"
    home = load_config(config_path).storage.home

    result = run_appliance(
        config_path, home, "predict", "late", str(source), str(output)
    )

    assert result.returncode != 0
    assert f"{source}, {place}, {NUL_KEY_ERROR[len('row 1, ') :]}" in result.stderr
    assert not output.exists()
    assert not output.with_name(output.name + ".partial").exists()


@pytest.fixture(scope="module")
def late_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the config path of a home with model ``late`` and no daemon."""
    root = tmp_path_factory.mktemp("late_home")
    config = load_config_text(root, CONFIG)
    flights_csv, weather_csv = write_flights_week(root)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "flights", [flights_csv])
        ingest(catalog, "weather", [weather_csv])
    train_model(config, "late")
    return root / "config.toml"


@pytest.mark.parametrize("daemon", [True, False], ids=["daemon", "no_daemon"])
@pytest.mark.parametrize(("suffix", "place"), [("parquet", "row 2"), ("csv", "line 3")])
def test_cli_predict_prints_row_warnings(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    daemon: bool,
    suffix: str,
    place: str,
) -> None:
    if daemon:
        config_path = request.getfixturevalue("late_daemon").log.parent / "config.toml"
    else:
        config_path = request.getfixturevalue("late_home")
    rows = [flight(note="a"), flight(origin="XXX", note="b"), flight(note="c")]
    source = tmp_path / f"rows.{suffix}"
    write_rows(source, rows)
    output = tmp_path / "scored.parquet"
    home = load_config(config_path).storage.home

    result = run_appliance(
        config_path, home, "predict", "late", str(source), str(output)
    )

    assert result.returncode == 0, result.stderr
    warnings = [
        line.removeprefix("warning: ")
        for line in result.stdout.splitlines()
        if line.startswith("warning: ")
    ]
    assert warnings == [
        "columns 'note' are not inputs of model 'late' and were ignored",
        "feature view 'weather' has no values for 1 of 3 rows, first "
        f"{place} (origin='XXX'), so its columns temp were missing values; check "
        "the entity keys and the event time against the view's rows and its ttl",
    ]
    assert "scored 3 rows with late version 1" in result.stdout
    assert pq.read_table(output).num_rows == 3


def test_cli_predict_known_keys_no_warning(late_home: Path, tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    write_rows(source, [flight(), flight()])
    output = tmp_path / "scored.csv"
    home = load_config(late_home).storage.home

    result = run_appliance(late_home, home, "predict", "late", str(source), str(output))

    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stdout
    assert result.stderr.count("WARNING") == 0


def buffer_status(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/v1/datasets/weather/rows")
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_flushes(client: httpx.Client, count: int) -> dict[str, Any]:
    """Return the weather buffer's status once it has `count` flushes."""
    deadline = time.monotonic() + FLUSH_TIMEOUT_SECONDS
    status = buffer_status(client)
    while status["flushes"] < count and time.monotonic() < deadline:
        time.sleep(0.2)
        status = buffer_status(client)
    return status


def reading(**values: Any) -> dict[str, Any]:
    return {"origin": "EWR", "time_hour": "2013-02-08T00:00:00Z", "temp": 5.0, **values}


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        (
            [{"time_hour": "2013-02-08T00:00:00Z", "temp": 5.0}] * 2,
            "rows sent to dataset 'weather' lack column 'origin', which feature "
            "view 'weather' reads its entity key 'origin' from, so the view would "
            "match none of them; send the column in the rows (null where a value "
            "is missing), or change [feature_views.weather] in the configuration",
        ),
        (
            [{"temp": 5.0}],
            "rows sent to dataset 'weather' lack column 'origin', which feature "
            "view 'weather' reads its entity key 'origin' from, and column "
            "'time_hour', which feature view 'weather' reads its timestamp "
            "'time_hour' from, so the view would match none of them; send the "
            "columns in the rows (null where a value is missing), or change "
            "[feature_views.weather] in the configuration",
        ),
    ],
    ids=["entity-key", "entity-key-and-timestamp"],
)
def test_rows_without_view_key_422(
    client: httpx.Client, rows: list[dict[str, Any]], error: str
) -> None:
    before = buffer_status(client)

    response = client.post("/v1/datasets/weather/rows", json={"rows": rows})

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == error
    assert body["dataset"] == "weather"
    assert body["columns"] == sorted({"origin", "time_hour"} - set(rows[0]))
    assert body["views"] == ["weather"]
    assert buffer_status(client) == before


def test_rows_with_view_key_flushed(client: httpx.Client) -> None:
    flushes = buffer_status(client)["flushes"]
    # One row carries the key, so the flushed segment has the column, as a
    # file with some empty values in it would.
    rows = [reading(), {"time_hour": "2013-02-08T03:00:00Z", "temp": 6.0}]

    response = client.post("/v1/datasets/weather/rows", json={"rows": rows})
    status = wait_for_flushes(client, flushes + 1)

    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 2
    assert status["flushes"] == flushes + 1
    assert status["buffered"] == 0
    assert status["rejected_segments"] == 0
    assert status["last_rejection"] is None


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        ([], "no rows sent to dataset 'weather'"),
        ([{"temp": 1.0}, 5], "row 1 sent to dataset 'weather' is not a JSON object"),
    ],
)
def test_rows_shape_error_comes_first(
    client: httpx.Client, rows: list[Any], error: str
) -> None:
    response = client.post("/v1/datasets/weather/rows", json={"rows": rows})

    assert response.status_code == 422
    assert response.json()["error"].startswith(error)


def test_rows_overflowing_number_quarantined(client: httpx.Client) -> None:
    flushes = buffer_status(client)["flushes"]
    huge = "1" + "0" * 5000
    values = ["7.0", "1e999", "-1E400", huge, "Infinity"]
    rows = ", ".join(
        f'{{"origin": "EWR", "time_hour": "2013-02-08T{hour:02d}:00:00Z", '
        f'"temp": {value}}}'
        for hour, value in enumerate(values)
    )

    response = client.post(
        "/v1/datasets/weather/rows",
        content=f'{{"rows": [{rows}]}}'.encode(),
        headers={"content-type": "application/json"},
    )
    status = wait_for_flushes(client, flushes + 1)
    listed = client.get("/v1/admin/quarantine", params={"dataset": "weather"})

    assert response.status_code == 202, response.text
    assert status["flushes"] == flushes + 1
    assert status["rejected_segments"] == 0
    assert listed.status_code == 200, listed.text
    quarantined = listed.json()["rows"]
    # Each value is shown as the client wrote it, as for a file.
    assert [(row["line"], row["value"]) for row in quarantined] == [
        (2, "1e999"),
        (3, "-1E400"),
        (4, huge),
        (5, "Infinity"),
    ]
    assert all("is not a finite number" in row["reason"] for row in quarantined)


NOPE_ORIGIN_WARNING = (
    "feature view 'weather' has no values for 1 of 1 rows, first row 0 "
    "(origin='NOPE'), so its columns temp were missing values; check the entity "
    "keys and the event time against the view's rows and its ttl"
)


def arrow_times(time_hour: pa.Array) -> bytes:
    """Return an Arrow stream of one flight from an unknown origin at `time_hour`."""
    table = pa.table(
        {
            "origin": pa.array(["NOPE"]),
            "time_hour": time_hour,
            "distance": pa.array([190], pa.int64()),
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize(
    "time_hour",
    [
        pa.array([1_364_806_800_000_000_001], pa.timestamp("ns", tz="UTC")),
        pa.array([2**62], pa.timestamp("ns")),
        pa.array([600_000_000_000], pa.timestamp("s")),
    ],
    ids=["ns-fraction", "ns-2e62", "s-year-20000"],
)
def test_predict_arrow_view_miss_odd_time(
    client: httpx.Client, time_hour: pa.Array
) -> None:
    response = client.post(
        "/v1/models/late/predict",
        content=arrow_times(time_hour),
        headers={"content-type": ARROW_STREAM},
    )

    assert response.status_code == 200, response.text
    header = response.headers["x-appliance-warnings"]
    assert json.loads(header) == [NOPE_ORIGIN_WARNING]


@pytest.mark.parametrize(
    ("origin", "expected_key"),
    [
        (
            pa.array([1_364_806_800_000_000_001], pa.timestamp("ns", tz="UTC")),
            "2013-04-01 09:00:00.000000001Z",
        ),
        (pa.array([2**62], pa.timestamp("ns")), "2116-02-20 23:53:38.427387904"),
        (pa.array([600_000_000_000], pa.timestamp("s")), "20983-03-30 10:40:00"),
    ],
    ids=["ns-fraction", "ns-2e62", "s-year-20000"],
)
def test_predict_arrow_time_entity_key_warns(
    client: httpx.Client, origin: pa.Array, expected_key: str
) -> None:
    table = pa.table(
        {
            "origin": origin,
            "time_hour": pa.array(["2013-02-03T09:30:00Z"]),
            "distance": pa.array([190], pa.int64()),
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

    assert response.status_code == 200, response.text
    header = response.headers["x-appliance-warnings"]
    # Python has no value for these times, so the key is shown as Arrow's text.
    expected = NOPE_ORIGIN_WARNING.replace("'NOPE'", repr(expected_key))
    assert json.loads(header) == [expected]


@pytest.mark.parametrize("daemon", [True, False], ids=["daemon", "no_daemon"])
def test_cli_predict_view_miss_year_20000(
    request: pytest.FixtureRequest, tmp_path: Path, daemon: bool
) -> None:
    if daemon:
        config_path = request.getfixturevalue("late_daemon").log.parent / "config.toml"
    else:
        config_path = request.getfixturevalue("late_home")
    source = tmp_path / "rows.parquet"
    table = pa.table(
        {
            "origin": pa.array(["NOPE"]),
            "time_hour": pa.array([600_000_000_000], pa.timestamp("s")),
            "distance": pa.array([190], pa.int64()),
        }
    )
    pq.write_table(table, source)
    output = tmp_path / "scored.parquet"
    home = load_config(config_path).storage.home

    result = run_appliance(
        config_path, home, "predict", "late", str(source), str(output)
    )

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    # The CLI counts Parquet rows from 1.
    warning = NOPE_ORIGIN_WARNING.replace("first row 0", "first row 1")
    assert f"warning: {warning}" in result.stdout.splitlines()
    assert pq.read_table(output).num_rows == 1


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("distance", True, "must be a number or null, got true"),
        ("distance", False, "must be a number or null, got false"),
        (
            "distance",
            5.5,
            "must be a whole number, got 5.5, because the column is an integer "
            "in the training dataset; send a whole number, or null for a missing "
            "value",
        ),
        (
            "temp",
            1e39,
            "is 1e+39, beyond the float32 range the model reads (±3.403e+38); "
            "send a number within that range, or null for a missing value",
        ),
    ],
    ids=["true", "false", "fraction", "beyond-float32"],
)
def test_predict_bad_number_422(
    client: httpx.Client, column: str, value: Any, problem: str
) -> None:
    response = client.post(
        "/v1/models/late/predict", json={"rows": [flight(**{column: value})]}
    )

    assert response.status_code == 422
    body = response.json()
    assert (body["row"], body["column"]) == (0, column)
    assert body["error"] == f"row 0, column {column!r} of model 'late' {problem}"


def test_metrics_quarantined_rows_help(client: httpx.Client) -> None:
    response = client.get("/metrics")

    assert response.status_code == 200
    assert (
        "# HELP appliance_ingest_quarantined_rows_total Buffered rows that flushes "
        "quarantined because they break the contract or a feature view cannot "
        "read them." in response.text.splitlines()
    )
