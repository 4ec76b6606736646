"""A replace that drops the column a feature view's key is read from is rejected."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.config import FeatureViewConfig
from appliance.errors import IngestError
from appliance.storage import Catalog, ingest, list_versions
from appliance.storage._view_keys import key_sources

WriteFile = Callable[[str, bytes | str], Path]

WEATHER = FeatureViewConfig(
    name="weather",
    sql="SELECT origin, CAST(time_hour AS TIMESTAMPTZ) AS time_hour, temp FROM weather",
    entities=("origin",),
    timestamp="time_hour",
)
FIRST = "origin,time_hour,temp\nEWR,2013-01-01 05:00:00,39.0\n"


def _first(catalog: Catalog, write_file: WriteFile) -> str:
    return ingest(catalog, "weather", [write_file("a.csv", FIRST)]).version.version


@pytest.mark.parametrize(
    ("header", "column", "role", "key"),
    [
        ("time_hour,temp", "origin", "entity key", "origin"),
        ("origin,temp", "time_hour", "timestamp", "time_hour"),
    ],
)
def test_replace_dropping_key_rejected(
    catalog: Catalog,
    write_file: WriteFile,
    header: str,
    column: str,
    role: str,
    key: str,
) -> None:
    first = _first(catalog, write_file)
    value = {"origin": "JFK", "time_hour": "2013-01-01 06:00:00", "temp": "40.0"}
    row = ",".join(value[name] for name in header.split(","))
    dropped = write_file("b.csv", f"{header}\n{row}\n")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "weather", [dropped], views=[WEATHER])

    assert str(raised.value) == (
        f"replace of dataset 'weather' drops column {column!r}, which feature view "
        f"'weather' reads its {role} {key!r} from, so the view would match no row; "
        "keep the column in the files, change [feature_views.weather] in the "
        "configuration, or ingest with --force to replace anyway"
    )
    assert [v.version for v in list_versions(catalog, "weather")] == [first]
    assert sorted(p.name for p in (catalog.lake / "weather").iterdir()) == [
        f"version={first}"
    ]


def test_forced_replace_warns(catalog: Catalog, write_file: WriteFile) -> None:
    _first(catalog, write_file)
    dropped = write_file("b.csv", "time_hour,temp\n2013-01-01 06:00:00,40.0\n")

    result = ingest(catalog, "weather", [dropped], views=[WEATHER], force=True)

    assert result.created
    assert (
        "column 'origin' is missing, so feature view 'weather', which reads its "
        "entity key 'origin' from it, matches no row until it is back"
    ) in result.warnings


def test_replace_dropping_feature_column_allowed(
    catalog: Catalog, write_file: WriteFile
) -> None:
    _first(catalog, write_file)
    no_temp = write_file("b.csv", "origin,time_hour\nJFK,2013-01-01 06:00:00\n")

    result = ingest(catalog, "weather", [no_temp], views=[WEATHER])

    assert result.created
    assert "missing column 'temp'; its values are read as missing" in result.warnings


def test_append_without_key_not_checked(
    catalog: Catalog, write_file: WriteFile
) -> None:
    _first(catalog, write_file)
    rows = write_file("b.csv", "time_hour,temp\n2013-01-01 06:00:00,40.0\n")

    result = ingest(catalog, "weather", [rows], "append", views=[WEATHER])

    assert result.created


def test_key_sources_follow_aliases_and_casts(catalog: Catalog) -> None:
    views = [
        FeatureViewConfig(
            name="airports",
            sql="SELECT w.origin AS airport, CAST(time_hour AS TIMESTAMPTZ) AS t, "
            "temp FROM weather w",
            entities=("airport",),
            timestamp="t",
        ),
        FeatureViewConfig(
            name="planes",
            sql="SELECT tailnum, seats FROM planes",
            entities=("tailnum",),
        ),
        FeatureViewConfig(
            name="all", sql="SELECT * FROM weather", entities=("origin",)
        ),
    ]

    found = key_sources(catalog.db, views, "weather")

    assert {c: [(u.view, u.key) for u in uses] for c, uses in found.items()} == {
        "origin": [("airports", "airport"), ("all", "origin")],
        "time_hour": [("airports", "t")],
    }
