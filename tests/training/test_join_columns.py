"""Training names a missing event time or entity key column of the dataset."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from support import load_config_text, write_flights_week

from appliance.config import Config
from appliance.errors import TrainingError
from appliance.storage import Catalog, ingest
from appliance.training import train_model

VIEW = """
[feature_views.weather]
sql = "SELECT origin, time_hour, temp FROM weather"
entities = ["origin"]
timestamp = "time_hour"
"""

MODEL = """
[storage]
home = "home"

[models.late]
dataset = "flights"
target = "late"
task = "classification"
algorithm = "random_forest"
features = {features}
event_timestamp = "{event_time}"
{views}

[models.late.params]
n_estimators = 5
"""


def _home(
    tmp_path: Path, *, views: bool, event_time: str, drop: str | None = None
) -> Config:
    """Return the config of a home with flights (without column `drop`) and
    weather ingested."""
    text = MODEL.format(
        features='["distance", "temp"]' if views else '["distance"]',
        event_time=event_time,
        views='feature_views = ["weather"]' if views else "",
    )
    config = load_config_text(tmp_path, text + (VIEW if views else ""))
    flights_csv, weather_csv = write_flights_week(tmp_path, days=7)
    if drop is not None:
        _drop_column(flights_csv, drop)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "flights", [flights_csv])
        ingest(catalog, "weather", [weather_csv])
    return config


def _drop_column(path: Path, column: str) -> None:
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    kept = [name for name in rows[0] if name != column]
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, kept, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def test_train_missing_entity_key_named(tmp_path: Path) -> None:
    config = _home(tmp_path, views=True, event_time="time_hour", drop="origin")

    with pytest.raises(TrainingError) as raised:
        train_model(config, "late")

    message = str(raised.value)
    assert "model 'late' joins feature view 'weather'" in message
    assert "entity key 'origin'" in message
    assert "dataset 'flights'" in message
    assert "its columns: time_hour, distance, late." in message


@pytest.mark.parametrize("views", [True, False])
def test_train_missing_event_timestamp_named(tmp_path: Path, views: bool) -> None:
    config = _home(tmp_path, views=views, event_time="evt_time")

    with pytest.raises(TrainingError) as raised:
        train_model(config, "late")

    message = str(raised.value)
    assert "event_timestamp 'evt_time' of model 'late'" in message
    assert "dataset 'flights'" in message
    assert "its columns: origin, time_hour, distance, late." in message


def test_event_timestamp_case_ignored_without_views(tmp_path: Path) -> None:
    # Without views only SQL reads the column, and SQL names ignore case.
    config = _home(tmp_path, views=False, event_time="TIME_HOUR")

    result = train_model(config, "late")

    assert result.rows_train > 0
