"""An ingest whose files lack the column a feature view's key reads is rejected."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from support import WriteFile, start_daemon, stop_daemon

from appliance.config import (
    ColumnRule,
    ContractConfig,
    DatasetConfig,
    FeatureViewConfig,
    load_config,
)
from appliance.errors import IngestError
from appliance.storage import Catalog, IngestBuffer, ingest, list_versions
from appliance.storage._view_keys import key_sources

WEATHER = FeatureViewConfig(
    name="weather",
    sql="SELECT origin, CAST(time_hour AS TIMESTAMPTZ) AS time_hour, temp FROM weather",
    entities=("origin",),
    timestamp="time_hour",
)
FIRST = "origin,time_hour,temp\nEWR,2013-01-01 05:00:00,39.0\n"
FLUSH_TIMEOUT_SECONDS = 30.0


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


def test_append_without_key_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    first = _first(catalog, write_file)
    rows = write_file("b.csv", "time_hour,temp\n2013-01-01 06:00:00,40.0\n")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "weather", [rows], "append", views=[WEATHER])

    assert str(raised.value) == (
        "append to dataset 'weather' lacks column 'origin', which feature view "
        "'weather' reads its entity key 'origin' from, so the view would match none "
        "of the appended rows; add the column to the files, change "
        "[feature_views.weather] in the configuration, or ingest with --force to "
        "append anyway"
    )
    assert [v.version for v in list_versions(catalog, "weather")] == [first]


def test_forced_append_warns(catalog: Catalog, write_file: WriteFile) -> None:
    _first(catalog, write_file)
    rows = write_file("b.csv", "origin,temp\nJFK,40.0\n")

    result = ingest(catalog, "weather", [rows], "append", views=[WEATHER], force=True)

    assert result.created
    assert (
        "column 'time_hour' is missing, so feature view 'weather', which reads its "
        "timestamp 'time_hour' from it, matches none of the appended rows"
    ) in result.warnings


TEMP_ONLY = DatasetConfig(
    name="weather",
    contract=ContractConfig(columns={"temp": ColumnRule(type="DOUBLE")}),
)
"""A declared contract that leaves out the view's key columns."""


@pytest.mark.parametrize("mode", ["replace", "append"])
def test_key_outside_contract_checked(
    catalog: Catalog, write_file: WriteFile, mode: str
) -> None:
    first = ingest(
        catalog, "weather", [write_file("a.csv", FIRST)], settings=TEMP_ONLY
    ).version.version
    rows = write_file("b.csv", "time_hour,temp\n2013-01-01 06:00:00,40.0\n")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "weather", [rows], mode, TEMP_ONLY, views=[WEATHER])
    forced = ingest(
        catalog, "weather", [rows], mode, TEMP_ONLY, views=[WEATHER], force=True
    )

    start = "append to" if mode == "append" else "replace of"
    verb = "lacks" if mode == "append" else "drops"
    assert str(raised.value).startswith(
        f"{start} dataset 'weather' {verb} column 'origin', which feature view "
        "'weather' reads its entity key 'origin' from"
    )
    assert forced.created
    assert forced.version.parent == first
    assert any("column 'origin' is missing" in w for w in forced.warnings)


def test_first_version_key_outside_contract_checked(
    catalog: Catalog, write_file: WriteFile
) -> None:
    rows = write_file("a.csv", "time_hour,temp\n2013-01-01 05:00:00,39.0\n")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "weather", [rows], settings=TEMP_ONLY, views=[WEATHER])

    assert str(raised.value).startswith(
        "first version of dataset 'weather' lacks column 'origin'"
    )
    assert list_versions(catalog, "weather") == []


def test_buffer_rows_without_key_rejected(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[storage]\nhome = "home"\n\n[feature_views.weather]\n'
        f"sql = {WEATHER.sql!r}\n"
        'entities = ["origin"]\ntimestamp = "time_hour"\n'
    )
    config = load_config(path)
    with Catalog(config.storage.home) as catalog:
        first = _first(catalog, lambda name, text: write_text(tmp_path / name, text))
    buffer = IngestBuffer(config)

    buffer.append("weather", [{"time_hour": "2013-01-01 06:00:00", "temp": 40.0}])
    buffer.flush("weather")

    folder = config.storage.home / "buffer" / "weather"
    assert [p.parent.name for p in folder.glob("*/segment-*.jsonl")] == ["rejected"]
    with Catalog(config.storage.home) as catalog:
        assert [v.version for v in list_versions(catalog, "weather")] == [first]


def write_text(path: Path, text: bytes | str) -> Path:
    path.write_text(text if isinstance(text, str) else text.decode())
    return path


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


def test_key_sources_owned_only(catalog: Catalog) -> None:
    views = [
        FeatureViewConfig(
            name="joined",
            sql="SELECT w.origin, faa AS airport, time_hour, temp FROM weather w "
            "JOIN airports a ON w.origin = a.faa",
            entities=("origin", "airport"),
            timestamp="time_hour",
        ),
        FeatureViewConfig(
            name="alone", sql="SELECT * FROM weather", entities=("station",)
        ),
        FeatureViewConfig(
            name="broken", sql="SELECT origin FROM no_such_table", entities=("x",)
        ),
    ]

    every = key_sources(catalog.db, views, "weather")
    owned = key_sources(catalog.db, views, "weather", owned_only=True)

    assert sorted(every) == ["faa", "origin", "station", "time_hour"]
    assert {c: [u.view for u in uses] for c, uses in owned.items()} == {
        "origin": ["joined"],
        "station": ["alone"],
    }


def test_first_version_without_key_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    rows = write_file("a.csv", "time_hour,temp\n2013-01-01 05:00:00,39.0\n")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "weather", [rows], views=[WEATHER])

    assert str(raised.value) == (
        "first version of dataset 'weather' lacks column 'origin', which feature "
        "view 'weather' reads its entity key 'origin' from, so the view would match "
        "no row; add the column to the files, change [feature_views.weather] in the "
        "configuration, or ingest with --force to create the version anyway"
    )
    assert list_versions(catalog, "weather") == []
    assert list((catalog.lake / "weather").glob("version=*")) == []


def test_forced_first_version_warns(catalog: Catalog, write_file: WriteFile) -> None:
    rows = write_file("a.csv", "origin,temp\nEWR,39.0\n")

    result = ingest(catalog, "weather", [rows], views=[WEATHER], force=True)

    assert result.created
    assert result.warnings == [
        "column 'time_hour' is missing, so feature view 'weather', which reads its "
        "timestamp 'time_hour' from it, matches no row until a version has the "
        "column"
    ]


def test_first_version_key_case_ignored(
    catalog: Catalog, write_file: WriteFile
) -> None:
    rows = write_file("a.csv", "ORIGIN,Time_Hour,temp\nEWR,2013-01-01 05:00:00,39.0\n")

    result = ingest(catalog, "weather", [rows], views=[WEATHER])

    assert result.created
    assert result.warnings == []


def test_first_version_join_key_unchecked(
    catalog: Catalog, write_file: WriteFile
) -> None:
    # 'faa' may be a column of airports, so weather may lack it.
    joined = FeatureViewConfig(
        name="joined",
        sql="SELECT faa AS airport, temp FROM weather JOIN airports ON origin = faa",
        entities=("airport",),
    )
    rows = write_file("a.csv", "origin,temp\nEWR,39.0\n")

    result = ingest(catalog, "weather", [rows], views=[joined])

    assert result.created
    assert result.warnings == []


def test_first_rows_without_key_422(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[storage]\nhome = "home"\n\n[ingest]\nflush_rows = 2\n\n'
        "[datasets.weather]\nkeep_versions = 5\n\n[feature_views.weather]\n"
        f"sql = {WEATHER.sql!r}\n"
        'entities = ["origin"]\ntimestamp = "time_hour"\n'
    )
    home = load_config(path).storage.home
    without_key = [{"time_hour": "2013-01-01 06:00:00", "temp": 40.0}] * 2
    one_key = [{"origin": "EWR", **without_key[0]}, without_key[0]]
    daemon = start_daemon(path, home, tmp_path / "log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            rejected = client.post(
                "/v1/datasets/weather/rows", json={"rows": without_key}
            )
            accepted = client.post("/v1/datasets/weather/rows", json={"rows": one_key})
            flushes = wait_for_flush(client)
    finally:
        stop_daemon(daemon)

    assert rejected.status_code == 422
    assert rejected.json()["error"] == (
        "rows sent to dataset 'weather' lack column 'origin', which feature view "
        "'weather' reads its entity key 'origin' from, so the view would match none "
        "of them; send the column in the rows (null where a value is missing), or "
        "change [feature_views.weather] in the configuration"
    )
    assert accepted.status_code == 202, accepted.text
    assert flushes == {"flushes": 1, "rejected_segments": 0}
    with Catalog(home) as catalog:
        (version,) = list_versions(catalog, "weather")
    assert version.row_count == 2


def test_rows_without_key_outside_contract_422(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[storage]\nhome = "home"\n\n'
        '[datasets.weather.contract.columns.temp]\ntype = "DOUBLE"\n\n'
        f"[feature_views.weather]\nsql = {WEATHER.sql!r}\n"
        'entities = ["origin"]\ntimestamp = "time_hour"\n'
    )
    config = load_config(path)
    with Catalog(config.storage.home) as catalog:
        first = tmp_path / "a.csv"
        first.write_text(FIRST)
        ingest(catalog, "weather", [first], settings=config.dataset("weather"))
    daemon = start_daemon(path, config.storage.home, tmp_path / "log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            rejected = client.post(
                "/v1/datasets/weather/rows",
                json={"rows": [{"time_hour": "2013-01-01 06:00:00", "temp": 1.0}]},
            )
    finally:
        stop_daemon(daemon)

    assert rejected.status_code == 422
    assert rejected.json()["columns"] == ["origin"]


def wait_for_flush(client: httpx.Client) -> dict[str, int]:
    """Return the flush and rejection counts of weather's buffer after a flush."""
    deadline = time.monotonic() + FLUSH_TIMEOUT_SECONDS
    while True:
        status = client.get("/v1/datasets/weather/rows").json()
        counts = {k: status[k] for k in ("flushes", "rejected_segments")}
        if any(counts.values()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def test_key_sources_column_read_twice(catalog: Catalog) -> None:
    view = FeatureViewConfig(
        name="weather",
        sql="SELECT coalesce(w.origin, origin) AS origin, temp FROM weather w",
        entities=("origin",),
    )

    found = key_sources(catalog.db, [view], "weather")

    assert {c: [u.view for u in uses] for c, uses in found.items()} == {
        "origin": ["weather"]
    }
