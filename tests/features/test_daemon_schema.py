"""The published input schema of a model with feature views, from a real daemon.

A request sends the entity keys, which the model does not take as inputs, and
may leave out the event time and every column the views fill.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from support import load_config_text, start_daemon, stop_daemon

from appliance.config import load_config
from appliance.storage import Catalog, ingest
from appliance.training import train_model

CONFIG = """
[storage]
home = "home"

[feature_views.weather]
sql = "SELECT origin, time_hour, temp FROM weather"
entities = ["origin"]
timestamp = "time_hour"

[feature_views.planes]
sql = "SELECT tailnum, year AS year_built, seats FROM planes"
entities = ["tailnum"]

[feature_views.planes.derive]
plane_age = "year(time_hour) - year_built"

[models.late]
dataset = "flights"
target = "late"
task = "classification"
algorithm = "random_forest"
features = ["distance", "carrier", "temp", "seats", "plane_age"]
categorical = ["carrier"]
feature_views = ["weather", "planes"]
event_timestamp = "time_hour"

[models.late.params]
n_estimators = 10
"""
FILLED = {"temp": "weather", "seats": "planes", "plane_age": "planes"}


def write_home(tmp_path: Path) -> Path:
    """Ingest the datasets and train model ``late``, then return the config path."""
    config = load_config_text(tmp_path, CONFIG)
    flights = ["origin,tailnum,carrier,time_hour,distance,late"]
    weather = ["origin,time_hour,temp"]
    for day in range(1, 29):
        for hour in range(0, 24, 6):
            stamp = f"2013-02-{day:02d}T{hour:02d}:00:00Z"
            temp = float((day * 7 + hour) % 40)
            weather.append(f"EWR,{stamp},{temp}")
            tail, carrier = ("N1", "UA") if day % 2 else ("N2", "AA")
            late = str(temp > 20).lower()
            flights.append(f"EWR,{tail},{carrier},{stamp},{100 + hour * 10},{late}")
    files = {
        "flights": "\n".join(flights) + "\n",
        "weather": "\n".join(weather) + "\n",
        "planes": "tailnum,year,seats\nN1,2003,150\nN2,2010,200\n",
    }
    with Catalog(config.storage.home) as catalog:
        for name, text in files.items():
            path = tmp_path / f"{name}.csv"
            path.write_text(text)
            ingest(catalog, name, [path])
    train_model(config, "late")
    return tmp_path / "config.toml"


def test_schema_requires_keys_not_view_columns(tmp_path: Path) -> None:
    config_path = write_home(tmp_path)
    home = load_config(config_path).storage.home
    daemon = start_daemon(config_path, home, tmp_path / "daemon.log")
    try:
        listed = httpx.get(f"{daemon.base_url}/v1/models", trust_env=False)
        document = httpx.get(
            f"{daemon.base_url}/schema/openapi.json", trust_env=False
        ).json()
        keys_only = httpx.post(
            f"{daemon.base_url}/v1/models/late/predict",
            json={"rows": [row_of_required(listed.json())]},
            trust_env=False,
        )
        without_key = row_of_required(listed.json())
        del without_key["tailnum"]
        no_key = httpx.post(
            f"{daemon.base_url}/v1/models/late/predict",
            json={"rows": [without_key]},
            trust_env=False,
        )
    finally:
        stop_daemon(daemon)

    assert listed.status_code == 200, listed.text
    (model,) = listed.json()["models"]
    fields = {field["name"]: field for field in model["request"]}
    assert [field["name"] for field in model["inputs"]] == [
        "distance",
        "temp",
        "seats",
        "plane_age",
        "carrier",
    ]
    assert sorted(fields) == sorted(
        ["distance", "carrier", "temp", "seats", "plane_age", "origin", "tailnum"]
        + ["time_hour"]
    )
    required = sorted(name for name, field in fields.items() if field["required"])
    assert required == ["carrier", "distance", "origin", "tailnum"]
    assert fields["time_hour"]["required"] is False
    for name, view in FILLED.items():
        assert fields[name]["required"] is False
        assert fields[name]["filled_from"] == view
        assert fields[name]["description"] == (
            f"Filled from feature view {view!r} when absent."
        )
    assert fields["origin"]["description"] == "Entity key of feature view 'weather'."
    assert fields["tailnum"]["type"] == "string"
    assert fields["time_hour"]["format"] == "date-time"

    row = document["components"]["schemas"]["lateRow"]
    assert row["required"] == required
    assert set(row["properties"]) == set(fields)
    assert row["properties"]["seats"]["description"] == (
        "Filled from feature view 'planes' when absent."
    )
    assert row["properties"]["time_hour"]["format"] == "date-time"
    assert row["properties"]["time_hour"]["type"] == ["string", "null"]
    assert row["properties"]["tailnum"]["type"] == ["string", "null"]
    assert row["properties"]["distance"]["type"] == ["integer", "null"]

    # The examples name this configuration's model, dataset and classes.
    paths = document["paths"]
    train = body_properties(paths["/v1/admin/train"]["post"])
    ingest = body_properties(paths["/v1/admin/ingest"]["post"])
    feedback = body_properties(paths["/v1/models/{name}/feedback"]["post"])
    label = feedback["labels"]["items"]["properties"]["label"]
    assert train["model"]["examples"] == ["late"]
    assert ingest["dataset"]["examples"] == ["flights"]
    assert label["examples"][0] in model["classes"]

    # A row of only the required columns is one the daemon predicts, and a
    # row without an entity key is not.
    assert keys_only.status_code == 200, keys_only.text
    assert no_key.status_code == 422, no_key.text
    assert no_key.json()["column"] == "tailnum"


def body_properties(operation: dict[str, Any]) -> dict[str, Any]:
    """Return the properties of an operation's JSON request body."""
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    return body["properties"]


def row_of_required(listed: dict[str, Any]) -> dict[str, Any]:
    """Return a request row with a value for each required column of ``late``."""
    values = {
        "carrier": "UA",
        "distance": 150,
        "origin": "EWR",
        "tailnum": "N1",
    }
    (model,) = listed["models"]
    return {f["name"]: values[f["name"]] for f in model["request"] if f["required"]}
