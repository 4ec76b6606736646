"""A feature view key repeated by an append: every join uses the last row."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from test_point_in_time import make_home, training_rows

from appliance.config import Config
from appliance.features import FeatureServer
from appliance.features._online import _INDEXED_ROWS
from appliance.storage import Catalog, get_dataset_version, ingest, scan_sql
from appliance.training._frame import load_frame

MORE_FLIGHTS = "flight,origin,tailnum,time_hour,late\n" + "".join(
    f"{i},EWR,N1,2013-01-01T10:00:00Z,{'true' if i % 2 else 'false'}\n"
    for i in range(4, 14)
)
"""Flights of N1 from EWR at 10:00, enough to hold out 20% of the rows."""
N1 = {"origin": "EWR", "tailnum": "N1", "time_hour": "2013-01-01T10:00:00Z"}


def append(config: Config, tmp_path: Path, dataset: str, text: str) -> None:
    path = tmp_path / f"{dataset}-append.csv"
    path.write_text(text)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, dataset, [path], mode="append")


def home_with_repeats(tmp_path: Path) -> Config:
    """Return a home whose planes and weather repeat a key in a later append.

    N1 gets a second planes row (built 2005, 999 seats), and EWR a second
    09:00 weather row (35.0); the first rows have 2003, 150 and 30.0.
    """
    config = make_home(tmp_path)
    append(config, tmp_path, "flights", MORE_FLIGHTS)
    append(config, tmp_path, "planes", "tailnum,year,seats\nN1,2005,999\n")
    weather = "origin,time_hour,temp\nEWR,2013-01-01T09:00:00Z,35.0\n"
    append(config, tmp_path, "weather", weather)
    return config


def test_training_sql_uses_last_row(tmp_path: Path) -> None:
    config = home_with_repeats(tmp_path)

    rows = training_rows(config)

    assert len(rows) == 3 + 10
    assert rows[0] == (1, 35.0, 2005, 999, 8)
    assert [row[0] for row in rows] == sorted({row[0] for row in rows})


def test_frame_keeps_one_row_per_label(tmp_path: Path) -> None:
    config = home_with_repeats(tmp_path)

    with Catalog(config.storage.home) as catalog:
        flights = scan_sql(get_dataset_version(catalog, "flights"))
        ((labelled,),) = catalog.db.execute(
            f"SELECT count(*) FROM ({flights}) WHERE late IS NOT NULL"
        ).fetchall()
        frame = load_frame(catalog, config.model("late"), config.feature_views)

    x = pd.concat([frame.x_train, frame.x_test])
    n1 = x[x["seats"].notna() & (x["plane_age"] == 8)]
    assert labelled == 3 + 10
    assert len(frame.y_train) + len(frame.y_test) == labelled
    assert len(x) == labelled
    assert len(n1) == 11
    assert set(n1["seats"]) == {999}
    assert 150 not in x["seats"].tolist()
    assert set(x["temp"].dropna()) == {20.0, 35.0, 40.0}


def test_frame_warns_of_repeated_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = home_with_repeats(tmp_path)

    with (
        Catalog(config.storage.home) as catalog,
        caplog.at_level(logging.WARNING, "appliance.training._frame"),
    ):
        frame = load_frame(catalog, config.model("late"), config.feature_views)

    weather, planes = frame.warnings
    assert "feature view 'weather' has 1 repeated origin and time_hour" in weather
    assert "'EWR'" in weather
    assert "feature view 'planes' has 1 repeated tailnum values" in planes
    assert "for example 'N1'" in planes
    assert "leave out 1 earlier rows" in planes
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(logged) == 2
    assert "view=planes keys=tailnum repeated=1 dropped_rows=1" in logged[1]


def test_frame_without_repeats_has_no_warnings(tmp_path: Path) -> None:
    config = make_home(tmp_path)
    append(config, tmp_path, "flights", MORE_FLIGHTS)

    with Catalog(config.storage.home) as catalog:
        frame = load_frame(catalog, config.model("late"), config.feature_views)

    assert frame.warnings == []


def test_fill_uses_last_row(tmp_path: Path) -> None:
    config = home_with_repeats(tmp_path)
    server = FeatureServer(config)

    (indexed,) = server.fill("late", [N1])
    joined = server.fill("late", [N1] * (_INDEXED_ROWS + 1))
    table = server.fill_table("late", pa.table({k: [v, v] for k, v in N1.items()}))

    expected = {**N1, "temp": 35.0, "year_built": 2005, "seats": 999, "plane_age": 8}
    assert indexed == expected
    assert len(joined) == _INDEXED_ROWS + 1
    assert joined[0] == expected
    assert table.num_rows == 2
    assert table.column("seats").to_pylist() == [999, 999]
    assert table.column("temp").to_pylist() == [35.0, 35.0]


def test_fill_warns_once_per_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = home_with_repeats(tmp_path)
    server = FeatureServer(config)

    with caplog.at_level(logging.INFO, "appliance.features._online"):
        server.load()
        server.load()
        append(config, tmp_path, "planes", "tailnum,year,seats\nN2,2011,201\n")
        server.load()

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert "view=weather keys=origin repeated=1 dropped_rows=1" in warnings[0]
    assert "view=planes keys=tailnum repeated=1 dropped_rows=1" in warnings[1]
    assert "view=planes keys=tailnum repeated=2 dropped_rows=2" in warnings[2]
    assert server.fill("late", [{**N1, "tailnum": "N2"}])[0]["seats"] == 201
