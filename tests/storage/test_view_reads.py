"""An ingest quarantines the rows that a feature view reading the dataset fails on."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import WriteFile, run_appliance

from appliance.config import (
    ColumnRule,
    ContractConfig,
    DatasetConfig,
    FeatureViewConfig,
)
from appliance.errors import IngestError
from appliance.storage import (
    Catalog,
    ingest,
    latest_version,
    list_quarantine,
    list_versions,
    scan_sql,
)

WEATHER = FeatureViewConfig(
    name="weather",
    sql="SELECT origin, CAST(time_hour AS TIMESTAMPTZ) AS time_hour, temp FROM weather",
    entities=("origin",),
    timestamp="time_hour",
)
TEXT_TIMES = DatasetConfig(
    name="weather",
    contract=ContractConfig(columns={"time_hour": ColumnRule(type="VARCHAR")}),
)
"""Weather whose times are text, as an inferred contract of Parquet text has them."""
FIRST = "origin,time_hour,temp\nEWR,2013-05-01T10:00:00Z,50.0\n"
APPENDED = (
    "origin,time_hour,temp\n"
    "EWR,2013-05-01T11:00:00Z,51.0\n"
    "EWR,05/01/2013 11:00,51.0\n"
    "JFK,2013-05-01T11:00:00Z,52.0\n"
    "LGA,noon,53.0\n"
)


def _first(catalog: Catalog, write_file: WriteFile) -> None:
    ingest(catalog, "weather", [write_file("a.csv", FIRST)], settings=TEXT_TIMES)


def _times(catalog: Catalog) -> list[str]:
    version = latest_version(catalog, "weather")
    rows = catalog.db.execute(f"SELECT time_hour FROM ({scan_sql(version)})")
    return sorted(row[0] for row in rows.fetchall())


def test_append_quarantines_unreadable_rows(
    catalog: Catalog, write_file: WriteFile
) -> None:
    _first(catalog, write_file)
    rows = write_file("b.csv", APPENDED)

    result = ingest(
        catalog, "weather", [rows], "append", settings=TEXT_TIMES, views=[WEATHER]
    )

    assert result.created
    assert (result.accepted, result.quarantined) == (2, 2)
    assert _times(catalog) == [
        "2013-05-01T10:00:00Z",
        "2013-05-01T11:00:00Z",
        "2013-05-01T11:00:00Z",
    ]
    quarantined = list_quarantine(catalog, "weather")
    assert [(q.line, q.column, q.value) for q in quarantined] == [
        (3, "time_hour", "05/01/2013 11:00"),
        (5, "time_hour", "noon"),
    ]
    reason = quarantined[0].reason
    assert reason.startswith("feature view 'weather' cannot read this row: ")
    assert "Conversion Error" in reason
    assert quarantined[0].row == {
        "origin": "EWR",
        "time_hour": "05/01/2013 11:00",
        "temp": 51.0,
    }


def test_strict_append_names_view_row_value(
    catalog: Catalog, write_file: WriteFile
) -> None:
    _first(catalog, write_file)
    rows = write_file("b.csv", APPENDED)

    with pytest.raises(IngestError) as raised:
        ingest(
            catalog,
            "weather",
            [rows],
            "append",
            settings=TEXT_TIMES,
            strict=True,
            views=[WEATHER],
        )

    message = str(raised.value)
    assert "2 of 4 rows break the contract or feature view 'weather'" in message
    assert f"{rows}, line 3, column 'time_hour': feature view 'weather'" in message
    assert '"05/01/2013 11:00"' in message
    assert len(list_versions(catalog, "weather")) == 1


def test_first_version_quarantines_unreadable_rows(
    catalog: Catalog, write_file: WriteFile
) -> None:
    rows = write_file("a.csv", APPENDED)

    result = ingest(catalog, "weather", [rows], settings=TEXT_TIMES, views=[WEATHER])

    assert (result.accepted, result.quarantined) == (2, 2)
    assert _times(catalog) == ["2013-05-01T11:00:00Z", "2013-05-01T11:00:00Z"]


def test_readable_rows_pass_unchanged(catalog: Catalog, write_file: WriteFile) -> None:
    _first(catalog, write_file)
    rows = write_file("b.csv", "origin,time_hour,temp\nJFK,2013-05-01 12:00,1.0\n")

    result = ingest(
        catalog, "weather", [rows], "append", settings=TEXT_TIMES, views=[WEATHER]
    )

    assert (result.accepted, result.quarantined) == (1, 0)
    assert not [w for w in result.warnings if "feature view" in w]


def test_view_of_other_dataset_not_run(catalog: Catalog, write_file: WriteFile) -> None:
    other = FeatureViewConfig(
        name="planes",
        sql="SELECT tailnum, CAST(year AS INT) AS y FROM planes",
        entities=("tailnum",),
    )
    _first(catalog, write_file)
    rows = write_file("b.csv", APPENDED)

    result = ingest(
        catalog, "weather", [rows], "append", settings=TEXT_TIMES, views=[other]
    )

    assert (result.accepted, result.quarantined) == (4, 0)


def test_failure_of_no_single_row_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    # The view fails once the version has more than 3 rows, whichever they are.
    crowded = FeatureViewConfig(
        name="crowded",
        sql=(
            "SELECT origin, CAST(CASE WHEN count(*) OVER () > 3 THEN 'x' "
            "ELSE time_hour END AS TIMESTAMPTZ) AS time_hour FROM weather"
        ),
        entities=("origin",),
        timestamp="time_hour",
    )
    _first(catalog, write_file)
    rows = write_file(
        "b.csv",
        "origin,time_hour,temp\nEWR,2013-05-01T11:00:00Z,1\nJFK,2013-05-01T12:00Z,2\n"
        "LGA,2013-05-01T13:00:00Z,3\n",
    )

    with pytest.raises(IngestError, match="and on no single row alone: Conversion"):
        ingest(
            catalog, "weather", [rows], "append", settings=TEXT_TIMES, views=[crowded]
        )

    assert len(list_versions(catalog, "weather")) == 1


def test_view_failing_before_only_warns(
    catalog: Catalog, write_file: WriteFile
) -> None:
    # A version stored without the check, as before the check existed.
    bad = write_file("a.csv", "origin,time_hour,temp\nEWR,noon,1.0\n")
    ingest(catalog, "weather", [bad], settings=TEXT_TIMES)
    first = latest_version(catalog, "weather").version
    rows = write_file("b.csv", "origin,time_hour,temp\nJFK,2013-05-01 12:00,1.0\n")

    result = ingest(
        catalog, "weather", [rows], "append", settings=TEXT_TIMES, views=[WEATHER]
    )

    assert (result.accepted, result.quarantined) == (1, 0)
    expected = (
        f"feature view 'weather' already fails on the rows of weather@{first}, so "
        "the new rows were not checked against it: Conversion Error"
    )
    assert any(w.startswith(expected) for w in result.warnings)


def test_replace_breaking_view_sql_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    joined = FeatureViewConfig(
        name="weather",
        sql="SELECT origin, time_hour, temp * 2 AS doubled FROM weather",
        entities=("origin",),
    )
    ingest(catalog, "weather", [write_file("a.csv", FIRST)])
    # Text that is no number makes the inferred type VARCHAR: a new contract.
    no_temp = write_file("b.csv", "origin,time_hour,wind\nEWR,2013-05-01,3\n")
    settings = DatasetConfig(name="weather", contract=ContractConfig())

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "weather", [no_temp], settings=settings, views=[joined])
    result = ingest(
        catalog, "weather", [no_temp], settings=settings, views=[joined], force=True
    )

    assert str(raised.value).startswith(
        "feature view 'weather' cannot read the new version of dataset 'weather': "
        "Binder Error"
    )
    assert "or ingest with --force to store the version anyway" in str(raised.value)
    assert any(
        w.startswith("feature view 'weather' cannot read the new version")
        and w.endswith("stored because of --force")
        for w in result.warnings
    )


def test_cli_ingest_lists_view_rows_in_quarantine(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[storage]\nhome = "home"\n\n'
        '[datasets.weather.contract.columns.time_hour]\ntype = "VARCHAR"\n\n'
        f'[feature_views.weather]\nsql = "{WEATHER.sql}"\n'
        'entities = ["origin"]\ntimestamp = "time_hour"\n'
    )
    first, rows = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(FIRST)
    rows.write_text(APPENDED)
    home = tmp_path / "home"

    assert run_appliance(config, home, "ingest", "weather", str(first)).returncode == 0
    strict = run_appliance(
        config, home, "ingest", "weather", str(rows), "--mode", "append", "--strict"
    )
    appended = run_appliance(
        config, home, "ingest", "weather", str(rows), "--mode", "append"
    )
    listed = run_appliance(config, home, "datasets", "quarantine", "weather")

    assert strict.returncode == 1
    assert "line 3, column 'time_hour': feature view 'weather'" in strict.stderr
    assert appended.returncode == 0, appended.stderr
    assert "accepted=2 quarantined=2" in appended.stdout
    assert listed.stdout.count("feature view 'weather' cannot read this row") == 2


def test_too_many_unreadable_rows_rejected(
    catalog: Catalog, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("appliance.storage._view_reads.MAX_VIEW_RUNS", 5)
    _first(catalog, write_file)
    rows = write_file(
        "b.csv", "origin,time_hour,temp\n" + "EWR,noon,1.0\n" * 4 + FIRST.split("\n")[1]
    )

    with pytest.raises(IngestError) as raised:
        ingest(
            catalog, "weather", [rows], "append", settings=TEXT_TIMES, views=[WEATHER]
        )

    message = str(raised.value)
    assert message.startswith(
        "feature view 'weather' fails on many rows of this ingest of dataset "
        "'weather' (2 isolated in 5 runs of the view); the first found is "
        "{'origin': 'EWR', 'time_hour': 'noon', 'temp': 1.0}: Conversion Error"
    )
    assert len(list_versions(catalog, "weather")) == 1
