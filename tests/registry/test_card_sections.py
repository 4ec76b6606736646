"""Model card sections: the feature view datasets and the metrics by segment."""

from __future__ import annotations

import re
from pathlib import Path

from support import load_config_text

from appliance.registry import card_html
from appliance.signing import trusted_keys
from appliance.storage import Catalog, ingest
from appliance.training import train_model

CONFIG = """
log_level = "WARNING"

[storage]
home = "home"

[feature_views.planes]
sql = "SELECT tailnum, seats FROM planes"
entities = ["tailnum"]

[models.late]
dataset = "flights"
target = "late"
task = "classification"
algorithm = "random_forest"
features = ["distance", "seats", "carrier"]
categorical = ["carrier"]
segments = ["carrier"]
feature_views = ["planes"]

[models.late.params]
n_estimators = 10

[models.delay]
dataset = "flights"
target = "delay"
task = "regression"
algorithm = "random_forest"
features = ["distance", "carrier"]
categorical = ["carrier"]
segments = ["carrier"]

[models.delay.params]
n_estimators = 10
"""


def _write_data(folder: Path) -> tuple[Path, Path]:
    flights = ["tailnum,carrier,distance,delay,late"]
    for i in range(120):
        delay = (i * 13) % 50
        late = str(delay > 30).lower()
        flights.append(f"N{i % 3},{'AB'[i % 2]},{100 + (i * 37) % 900},{delay},{late}")
    flights_csv, planes_csv = folder / "flights.csv", folder / "planes.csv"
    flights_csv.write_text("\n".join(flights) + "\n")
    planes_csv.write_text("tailnum,seats\nN0,150\nN1,200\nN2,50\n")
    return flights_csv, planes_csv


def _segment_header(page: str) -> list[str]:
    table = page.split("<h3>By carrier</h3>", 1)[1]
    first_row = table.split("</tr>", 1)[0]
    return re.findall(r"<th>([^<]*)</th>", first_row)


def test_card_names_view_data_and_task_metrics(tmp_path: Path) -> None:
    config = load_config_text(tmp_path, CONFIG)
    flights_csv, planes_csv = _write_data(tmp_path)
    with Catalog(config.storage.home) as catalog:
        flights = ingest(catalog, "flights", [flights_csv]).version.version
        planes = ingest(catalog, "planes", [planes_csv]).version.version
    train_model(config, "late")
    train_model(config, "delay")

    with Catalog(config.storage.home, read_only=True) as catalog:
        trusted = trusted_keys(config)
        classifier = card_html(catalog, "late", None, trusted)
        regressor = card_html(catalog, "delay", None, trusted)

    assert f"<td>flights@{flights}</td>" in classifier
    assert f"<td>feature view datasets</td><td>planes@{planes}</td>" in classifier
    assert "<td>feature view datasets</td><td>none</td>" in regressor
    assert _segment_header(classifier) == ["carrier", "rows", "roc_auc", "accuracy"]
    assert _segment_header(regressor) == ["carrier", "rows", "rmse", "mae"]
