"""Feature views: point-in-time joins for training and the online fill."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
import pytest
from support import load_config_text

from appliance.config import Config
from appliance.errors import RequestError, StorageError, TrainingError
from appliance.features import FeatureServer, model_views, open_store
from appliance.storage import Catalog, ingest

FLIGHTS = """flight,origin,tailnum,time_hour,late
1,EWR,N1,2013-01-01T10:00:00Z,true
2,JFK,N2,2013-01-01T10:00:00Z,false
3,EWR,N9,2013-01-01T14:00:00Z,true
"""
# EWR has a row one hour after flight 1 (11:00) that must never reach it.
WEATHER = """origin,time_hour,temp
EWR,2013-01-01T09:00:00Z,30.0
EWR,2013-01-01T11:00:00Z,99.0
JFK,2013-01-01T05:00:00Z,20.0
EWR,2013-01-01T13:00:00Z,40.0
"""
PLANES = "tailnum,year,seats\nN1,2003,150\nN2,2010,200\n"

CONFIG = """
[storage]
home = "home"

[feature_views.weather]
sql = "SELECT origin, time_hour, temp FROM weather"
entities = ["origin"]
timestamp = "time_hour"
{weather_extra}

[feature_views.planes]
sql = "SELECT tailnum, year AS year_built, seats FROM planes"
entities = ["tailnum"]

[feature_views.planes.derive]
plane_age = "year(time_hour) - year_built"

[models.late]
dataset = "flights"
target = "late"
task = "classification"
features = ["temp", "plane_age", "seats"]
feature_views = ["weather", "planes"]
event_timestamp = "time_hour"
"""


def make_home(tmp_path: Path, weather_extra: str = "") -> Config:
    config = load_config_text(tmp_path, CONFIG.format(weather_extra=weather_extra))
    with Catalog(config.storage.home) as catalog:
        for name, text in (
            ("flights", FLIGHTS),
            ("weather", WEATHER),
            ("planes", PLANES),
        ):
            path = tmp_path / f"{name}.csv"
            path.write_text(text)
            ingest(catalog, name, [path])
    return config


def training_rows(config: Config) -> list[tuple]:
    views = model_views(["weather", "planes"], config.feature_views)
    with Catalog(config.storage.home) as catalog:
        store = open_store(catalog)
    try:
        sql = store.joined_sql("SELECT * FROM flights", views, "time_hour")
        return store.db.execute(
            f"SELECT flight, temp, year_built, seats, plane_age FROM ({sql}) "
            "ORDER BY flight"
        ).fetchall()
    finally:
        store.close()


def test_later_weather_row_not_joined(tmp_path: Path) -> None:
    config = make_home(tmp_path)

    rows = training_rows(config)

    # Flight 1 at 10:00 sees 09:00 (30.0), not 11:00 (99.0); flight 3 at
    # 14:00 sees 13:00 (40.0); N9 has no plane row.
    assert rows == [
        (1, 30.0, 2003, 150, 10),
        (2, 20.0, 2010, 200, 3),
        (3, 40.0, None, None, None),
    ]


def test_ttl_hides_stale_values(tmp_path: Path) -> None:
    config = make_home(tmp_path, 'ttl = "3h"')

    rows = training_rows(config)

    # JFK's only reading is 5 hours before flight 2, older than the TTL.
    assert [(flight, temp) for flight, temp, *_ in rows] == [
        (1, 30.0),
        (2, None),
        (3, 40.0),
    ]


def test_delay_shifts_availability(tmp_path: Path) -> None:
    config = make_home(tmp_path, 'delay = "2h"')

    rows = training_rows(config)

    # With a 2 hour delay, flight 3 at 14:00 sees 11:00 (99.0) because the
    # 13:00 reading is available only at 15:00. Flight 1 at 10:00 sees
    # nothing because the 09:00 reading is available only at 11:00.
    assert [(flight, temp) for flight, temp, *_ in rows] == [
        (1, None),
        (2, 20.0),
        (3, 99.0),
    ]


def test_frame_joins_model_views(tmp_path: Path) -> None:
    from appliance.training._frame import load_frame

    config = make_home(tmp_path)
    flights = tmp_path / "more.csv"
    # Enough rows to hold out 20% of them.
    flights.write_text(
        FLIGHTS
        + "".join(
            f"{i},EWR,N1,2013-01-01T10:00:00Z,{'true' if i % 2 else 'false'}\n"
            for i in range(4, 14)
        )
    )
    with Catalog(config.storage.home) as catalog:
        version = ingest(catalog, "flights", [flights]).version.version
        frame = load_frame(catalog, config.model("late"), config.feature_views)

    assert frame.features == ["temp", "plane_age", "seats"]
    x = pd.concat([frame.x_train, frame.x_test])
    assert sorted(x["temp"].dropna().unique().tolist()) == [20.0, 30.0, 40.0]
    assert 99.0 not in x["temp"].tolist()
    assert frame.dataset_version == version
    assert set(frame.feature_versions) == {"weather", "planes"}


def test_frame_view_derive_error_named(tmp_path: Path) -> None:
    from appliance.training._frame import load_frame

    # The expression parses, but no origin code casts to an integer.
    config = make_home(tmp_path, 'derive = { origin_code = "CAST(origin AS INTEGER)" }')

    with (
        Catalog(config.storage.home) as catalog,
        pytest.raises(TrainingError) as raised,
    ):
        load_frame(catalog, config.model("late"), config.feature_views)

    assert str(raised.value) == (
        "cannot join feature views weather, planes to the rows of model 'late': "
        "derived column 'origin_code' = 'CAST(origin AS INTEGER)' of feature view "
        "'weather' failed: Conversion Error: Could not convert string 'EWR' to "
        "INT32 when casting from source column origin; fix the expression "
        "(TRY_CAST gives NULL for a value that does not convert) or the rows it "
        "reads"
    )


def test_fill_latest_value_per_entity(tmp_path: Path) -> None:
    config = make_home(tmp_path)
    server = FeatureServer(config)

    filled = server.fill("late", [{"origin": "EWR", "tailnum": "N2", "carrier": "UA"}])

    assert filled == [
        {
            "origin": "EWR",
            "tailnum": "N2",
            "carrier": "UA",
            "temp": 40.0,
            "year_built": 2010,
            "seats": 200,
            "plane_age": dt.datetime.now(dt.timezone.utc).year - 2010,
        }
    ]


def test_fill_as_of_request_time(tmp_path: Path) -> None:
    config = make_home(tmp_path)
    server = FeatureServer(config)
    rows = [
        {"origin": "EWR", "tailnum": "N1", "time_hour": "2013-01-01T10:00:00Z"},
        {"origin": "EWR", "tailnum": "N1", "time_hour": "2013-01-01 11:30:00+00"},
        {"origin": "LGA", "tailnum": None, "time_hour": "2013-01-01T10:00:00Z"},
    ]

    filled = server.fill("late", rows)

    assert [(r["temp"], r["plane_age"], r["seats"]) for r in filled] == [
        (30.0, 10, 150),
        (99.0, 10, 150),
        (None, None, None),
    ]
    assert filled[0]["time_hour"] == "2013-01-01T10:00:00Z"


def test_fill_keeps_request_values(tmp_path: Path) -> None:
    config = make_home(tmp_path)
    server = FeatureServer(config)

    filled = server.fill("late", [{"origin": "EWR", "tailnum": "N1", "temp": 1.5}])

    assert filled[0]["temp"] == 1.5
    assert filled[0]["seats"] == 150


def test_fill_missing_entity_key_rejected(tmp_path: Path) -> None:
    config = make_home(tmp_path)
    server = FeatureServer(config)

    with pytest.raises(RequestError, match="row 1 .* missing entity key 'tailnum'"):
        server.fill("late", [{"origin": "EWR", "tailnum": "N1"}, {"origin": "EWR"}])


def test_fill_table_joins_batch(tmp_path: Path) -> None:
    import pyarrow as pa

    config = make_home(tmp_path)
    server = FeatureServer(config)
    table = pa.table(
        {
            "origin": ["EWR", "JFK"],
            "tailnum": ["N1", "N2"],
            "time_hour": ["2013-01-01T10:00:00Z", "2013-01-01T10:00:00Z"],
            "seats": [1, 2],
        }
    )

    filled = server.fill_table("late", table)

    assert filled.column("temp").to_pylist() == [30.0, 20.0]
    assert filled.column("plane_age").to_pylist() == [10, 3]
    assert filled.column("seats").to_pylist() == [1, 2]
    assert (
        filled.column("time_hour").to_pylist() == table.column("time_hour").to_pylist()
    )


def test_frame_row_order_repeats(tmp_path: Path) -> None:
    from appliance.training._frame import load_frame

    config = make_home(tmp_path)
    flights = tmp_path / "many.csv"
    # Enough rows and distinct hours for DuckDB to run the joins on several
    # threads, where a hash join's output order varies between runs.
    origins, tails = ("EWR", "JFK"), ("N1", "N2", "N9")
    flights.write_text(
        "flight,origin,tailnum,time_hour,late\n"
        + "".join(
            f"{i},{origins[i % 2]},{tails[i % 3]},"
            f"2013-01-{1 + i % 28:02d}T{i % 24:02d}:00:00Z,{str(i % 5 == 0).lower()}\n"
            for i in range(200_000)
        )
    )
    model = config.model("late")
    model = type(model)(**{**model.__dict__, "features": ("flight", "seats")})
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "flights", [flights])
        first, second = (
            load_frame(catalog, model, config.feature_views) for _ in range(2)
        )

    assert first.x_train["flight"].tolist() == second.x_train["flight"].tolist()
    assert first.x_test["flight"].tolist() == second.x_test["flight"].tolist()
    seen = first.x_train["flight"].tolist() + first.x_test["flight"].tolist()
    assert sorted(seen) == list(range(200_000))


def test_store_rejects_case_clashing_datasets() -> None:
    from types import SimpleNamespace

    from appliance.errors import StorageError
    from appliance.features._store import store_of

    versions = [SimpleNamespace(dataset="planes"), SimpleNamespace(dataset="Planes")]

    with pytest.raises(StorageError) as raised:
        store_of(versions)

    assert "datasets 'planes' and 'Planes' differ only in case" in str(raised.value)
    assert "'appliance datasets remove Planes' (or planes)" in str(raised.value)


def test_lost_lake_folder_spares_other_views(tmp_path: Path) -> None:
    config = make_home(tmp_path)
    extra = tmp_path / "extra.csv"
    extra.write_text("id,value\n1,2.5\n")
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "extra", [extra])
    shutil.rmtree(config.storage.home / "lake" / "extra")

    server = FeatureServer(config)
    filled = server.fill("late", [{"origin": "EWR", "tailnum": "N2"}])

    assert filled[0]["seats"] == 200


def test_view_of_lost_lake_folder_named(tmp_path: Path) -> None:
    config = make_home(tmp_path)
    shutil.rmtree(config.storage.home / "lake" / "planes")

    with pytest.raises(StorageError) as raised:
        FeatureServer(config).load()

    message = str(raised.value)
    assert "feature view 'planes' of model late cannot read its data" in message
    assert "dataset 'planes' version" in message
    assert "has no readable files in" in message
    assert "restore that folder from a backup" in message
    assert "weather" not in message
    assert "IO Error" not in message
