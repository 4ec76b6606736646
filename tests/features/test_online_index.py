"""Small requests are filled from in-memory view indexes, as the DuckDB join fills them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from support import load_config_text

from appliance.errors import RequestError
from appliance.features import FeatureServer
from appliance.features._online import _INDEXED_ROWS
from appliance.storage import Catalog, ingest

CONFIG = """
[storage]
home = "home"

[feature_views.weather]
sql = "SELECT station, CAST(ts AS TIMESTAMPTZ) AS ts, temp, note FROM weather"
entities = ["station"]
timestamp = "ts"
ttl = "3h"
delay = "30m"

[feature_views.units]
sql = "SELECT unit, built, seats FROM units"
entities = ["unit"]

[feature_views.units.derive]
age = "year(ts) - built"

[models.m]
dataset = "rides"
target = "y"
task = "regression"
algorithm = "linear_regression"
features = ["temp"]
feature_views = ["weather", "units"]
event_timestamp = "ts"
"""

WEATHER = """station,ts,temp,note
1,2024-05-01T00:00:00Z,10.5,calm
1,2024-05-01T01:00:00Z,11.0,
1,2024-05-01T06:00:00Z,14.25,windy
2,2024-05-01T00:00:00Z,-3.0,cold
2,2024-05-01T02:00:00Z,,missing temp
2,2024-05-01T04:00:00Z,7.5,first of two
2,2024-05-01T04:00:00Z,2.5,second of two
"""

UNITS = """unit,built,seats
A7,2001,180
B2,,90
"""

REQUESTS: list[dict[str, Any]] = [
    {"station": 1, "unit": "A7", "ts": "2024-05-01T00:29:00Z"},
    {"station": 1, "unit": "A7", "ts": "2024-05-01T00:30:00Z"},
    {"station": 1, "unit": "B2", "ts": "2024-05-01T04:00:00+02:00"},
    {"station": 1, "unit": "A7", "ts": "2024-05-01T05:00:00Z"},
    {"station": 1, "unit": "A7", "ts": "2024-05-01 06:30:00"},
    {"station": "1", "unit": "ZZ", "ts": "2024-05-01T07:00:00.250000Z"},
    {"station": 2, "unit": "A7", "ts": "2024-05-01T03:00:00Z"},
    {"station": 2, "unit": "A7", "ts": "2024-05-01"},
    {"station": 3, "unit": "A7", "ts": "2024-05-01T03:00:00Z"},
    {"station": None, "unit": None, "ts": "2024-05-01T03:00:00Z"},
    {"station": 1, "unit": "A7", "ts": None},
    {"station": 1, "unit": "A7"},
    {"station": 1.0, "unit": "A7", "ts": "2024-05-01T03:00:00Z"},
    {"station": 1, "unit": "A7", "ts": "2024-05-01T03:00:00Z", "temp": 99.0},
]
TIE = {"station": 2, "unit": "A7", "ts": "2024-05-01T05:00:00Z"}
"""A row whose weather has two rows of one key and time. Every join takes the
last in the view's order."""


@pytest.fixture
def server(tmp_path: Path) -> FeatureServer:
    config = load_config_text(tmp_path, CONFIG)
    (tmp_path / "weather.csv").write_text(WEATHER)
    (tmp_path / "units.csv").write_text(UNITS)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "weather", [tmp_path / "weather.csv"])
        ingest(catalog, "units", [tmp_path / "units.csv"])
    server = FeatureServer(config)
    server.load()
    return server


def test_indexed_fill_equals_join(server: FeatureServer) -> None:
    padding = [REQUESTS[0]] * (_INDEXED_ROWS + 1 - len(REQUESTS))
    joined = server.fill("m", REQUESTS + padding)[: len(REQUESTS)]

    for request, expected in zip(REQUESTS, joined):
        assert server.fill("m", [request]) == [expected], request


def test_indexed_fill_values(server: FeatureServer) -> None:
    rows = server.fill("m", REQUESTS[:4])

    assert rows[0]["temp"] is None
    assert rows[1]["temp"] == 10.5
    assert rows[1]["note"] == "calm"
    assert rows[1]["age"] == 23
    assert rows[2]["temp"] == 11.0
    assert rows[2]["seats"] == 90
    assert rows[2]["age"] is None
    assert rows[3]["temp"] is None
    assert list(rows[1]) == ["station", "unit", "ts", "temp", "note"] + [
        "built",
        "seats",
        "age",
    ]


def test_indexed_fill_tie_takes_last_row(server: FeatureServer) -> None:
    (row,) = server.fill("m", [TIE])
    (joined,) = server.fill("m", [TIE] * (_INDEXED_ROWS + 1))[:1]

    assert row["temp"] == 2.5
    assert row["note"] == "second of two"
    assert joined == row


def test_indexed_fill_keeps_request_value(server: FeatureServer) -> None:
    (row,) = server.fill("m", [REQUESTS[-1]])

    assert row["temp"] == 99.0
    assert row["note"] is None


@pytest.mark.parametrize("value", ["20240501", "not a time", 12])
def test_fill_invalid_event_time_rejected(server: FeatureServer, value: Any) -> None:
    rows = [REQUESTS[1], {"station": 1, "unit": "A7", "ts": value}]

    with pytest.raises(RequestError, match=r"row 1 .* 'ts' is .* not a time") as err:
        server.fill("m", rows)

    assert err.value.detail == {"model": "m", "row": 1, "column": "ts"}
    with pytest.raises(RequestError, match=r"row 1 .* 'ts' is .* not a time"):
        server.fill_table("m", pa.Table.from_pylist([REQUESTS[-4], rows[1]]))


def test_fill_without_event_time_derives_at_now(server: FeatureServer) -> None:
    year = dt.datetime.now(dt.timezone.utc).year
    rows = [{"station": 1, "unit": "A7", "ts": None}, {"station": 1, "unit": "A7"}]
    padding = [REQUESTS[0]] * _INDEXED_ROWS

    indexed = server.fill("m", rows)
    joined = server.fill("m", rows + padding)[:2]
    table = server.fill_table("m", pa.table({"station": [1], "unit": ["A7"]}))

    assert [row["age"] for row in indexed] == [year - 2001] * 2
    assert [row["age"] for row in joined] == [year - 2001] * 2
    assert table.column("age").to_pylist() == [year - 2001]
    assert "ts" not in indexed[1]
    assert "ts" not in table.column_names
