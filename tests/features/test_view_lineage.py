"""A run records the versions of only the datasets its feature views read."""

from __future__ import annotations

import json
from pathlib import Path

from support import load_config_text, run_appliance, write_tail_flights

from appliance.storage import Catalog, get_run, ingest, list_versions
from appliance.training import train_model

CONFIG = """
[storage]
home = "home"

[feature_views.planes]
sql = \"\"\"
WITH built AS (SELECT tailnum, year AS year_built, seats FROM planes)
SELECT tailnum, year_built, seats, maker FROM built JOIN "Makers" USING (tailnum)
\"\"\"
entities = ["tailnum"]

[models.late]
dataset = "flights"
target = "late"
task = "classification"
algorithm = "random_forest"
features = ["distance", "seats"]
feature_views = ["planes"]

[models.late.params]
n_estimators = 10
"""


def test_run_lineage_names_view_datasets(tmp_path: Path) -> None:
    config = load_config_text(tmp_path, CONFIG)
    flights_csv, planes_csv = write_tail_flights(tmp_path)
    makers_csv, other_csv = tmp_path / "makers.csv", tmp_path / "s_bom.csv"
    makers_csv.write_text("tailnum,maker\nN1,Airbus\nN2,Boeing\n")
    other_csv.write_text("id,note\n1,unrelated\n")
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "flights", [flights_csv])
        planes = ingest(catalog, "planes", [planes_csv]).version.version
        makers = ingest(catalog, "makers", [makers_csv]).version.version
        ingest(catalog, "s_bom", [other_csv])

    result = train_model(config, "late")
    with Catalog(config.storage.home) as catalog:
        run = get_run(catalog, result.run_id)
        used_by = {v.dataset: v.used_by for v in list_versions(catalog)}
    listed = run_appliance(
        tmp_path / "config.toml", config.storage.home, "datasets", "list", "--json"
    )

    assert run.feature_views == {"planes": planes, "makers": makers}
    assert used_by == {
        "flights": ["late v1"],
        "makers": ["late v1"],
        "planes": ["late v1"],
        "s_bom": [],
    }
    assert listed.returncode == 0, listed.stderr
    lines = [json.loads(line) for line in listed.stdout.splitlines()]
    rows = {row["dataset"]: row["used_by"] for row in lines}
    assert rows["s_bom"] == []
    assert rows["makers"] == ["late v1"]
