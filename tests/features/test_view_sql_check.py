"""SQL of the configuration is checked to be one query or one expression."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import load_config_text, run_appliance, write_flights_week

from appliance.config import load_config
from appliance.errors import ConfigError
from appliance.features import open_store
from appliance.storage import Catalog, ingest

VIEW_SQL = "SELECT origin, time_hour, temp FROM weather"

CONFIG = """
[storage]
home = "home"

[feature_views.weather]
sql = {sql}
entities = ["origin"]
timestamp = "time_hour"

[feature_views.weather.derive]
temp_f = {view_derive}

[models.late]
dataset = "flights"
target = "late"
task = "classification"
algorithm = "random_forest"
features = ["distance", "temp"]
feature_views = ["weather"]
event_timestamp = "time_hour"
where = {where}

[models.late.derive]
long = {model_derive}

[models.late.params]
n_estimators = 20
"""


def config_text(
    sql: str = VIEW_SQL,
    view_derive: str = "temp * 9 / 5 + 32",
    model_derive: str = "distance > 500",
    where: str = "distance > 0",
) -> str:
    # A JSON string is also a TOML basic string.
    return CONFIG.format(
        sql=json.dumps(sql),
        view_derive=json.dumps(view_derive),
        model_derive=json.dumps(model_derive),
        where=json.dumps(where),
    )


def write_config(folder: Path, **sql: str) -> Path:
    path = folder / "config.toml"
    path.write_text(config_text(**sql))
    return path


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            VIEW_SQL + "; COPY (SELECT 42 AS x) TO 'out.csv'",
            "2 statements (SELECT, COPY)",
        ),
        (VIEW_SQL + "; DROP TABLE weather", "2 statements (SELECT, DROP)"),
        (VIEW_SQL + "; ATTACH 'other.duckdb'", "2 statements (SELECT, ATTACH)"),
        ("PRAGMA version", "not a PRAGMA statement"),
        ("SET threads = 1", "not a SET statement"),
        ("CALL pragma_version()", "not a CALL statement"),
        ("INSTALL httpfs", "not a"),
        ("LOAD httpfs", "not a"),
        ("", "0 statements"),
        (VIEW_SQL + ";", "remove a trailing ';'"),
        (VIEW_SQL + " -- hourly", "remove a trailing ';' or '--' comment"),
        (VIEW_SQL + " FROM", "does not parse"),
        (
            "SELECT origin, time_hour, temp FROM weather, checkpoint()",
            "table function 'checkpoint'",
        ),
        (
            "SELECT * FROM query('SELECT origin, time_hour, temp FROM weather')",
            "table function 'query'",
        ),
        ("SELECT *, setseed(0.5) AS s FROM weather", "calls 'setseed'"),
    ],
)
def test_view_sql_not_one_query_rejected(
    tmp_path: Path, sql: str, expected: str
) -> None:
    path = write_config(tmp_path, sql=sql)

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert "'feature_views.weather'" in str(raised.value)
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    "sql",
    [
        VIEW_SQL,
        "WITH w AS (SELECT * FROM weather) SELECT origin, time_hour, temp FROM w",
        "FROM weather SELECT origin, time_hour, temp",
        "SELECT origin, time_hour, temp -- the features\nFROM weather",
        "SELECT origin, time_hour, temp FROM weather UNION ALL "
        "SELECT origin, time_hour, temp FROM weather",
        "SELECT origin, time_hour, t.temp FROM weather, range(1) AS r(i), "
        "unnest([1]) AS u(j), weather AS t",
    ],
)
def test_view_sql_one_query_loads(tmp_path: Path, sql: str) -> None:
    config = load_config(write_config(tmp_path, sql=sql))

    assert config.feature_views["weather"].sql == sql


@pytest.mark.parametrize(
    ("key", "where"),
    [
        ("view_derive", "'feature_views.weather'"),
        ("model_derive", "'models.late'"),
        ("where", "'models.late'"),
    ],
)
@pytest.mark.parametrize(
    "expression",
    [
        "1) AS x FROM weather; COPY (SELECT 42) TO 'out.csv'; SELECT (1",
        "1); DROP TABLE weather; SELECT (1",
        "1) AS x, (2",
        "1) FROM weather WHERE (1",
        "1) ORDER BY (1",
        "1 -- comment",
        "(SELECT count(*) FROM checkpoint())",
        "setseed(0.5)",
    ],
)
def test_expression_with_clause_rejected(
    tmp_path: Path, key: str, where: str, expression: str
) -> None:
    path = write_config(tmp_path, **{key: expression})

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert where in str(raised.value)


def test_train_view_with_copy_writes_no_file(tmp_path: Path) -> None:
    good = load_config_text(tmp_path, config_text())
    flights_csv, weather_csv = write_flights_week(tmp_path, days=2)
    with Catalog(good.storage.home) as catalog:
        ingest(catalog, "flights", [flights_csv])
        ingest(catalog, "weather", [weather_csv])
    written = tmp_path / "copied.csv"
    path = write_config(
        tmp_path, sql=f"{VIEW_SQL}; COPY (SELECT 42 AS x) TO '{written}'"
    )

    result = run_appliance(path, good.storage.home, "train", "late")

    assert result.returncode != 0
    assert "'feature_views.weather'" in result.stderr
    assert "2 statements (SELECT, COPY)" in result.stderr
    assert not written.exists()


def test_store_installs_no_extension(tmp_path: Path) -> None:
    config = load_config_text(tmp_path, config_text())
    with Catalog(config.storage.home) as catalog:
        store = open_store(catalog)
    try:
        setting = store.execute(
            "SELECT current_setting('autoinstall_known_extensions')"
        ).fetchone()
    finally:
        store.close()

    assert setting == (False,)
