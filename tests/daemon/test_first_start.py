"""The first start of a daemon on an empty home, with models declared.

Nothing is ingested or trained yet, which is the normal state of a new box:
the daemon starts, logs one warning about the feature views, and its 404 for
a declared model names the command that trains it.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from support import start_daemon, stop_daemon

CONFIG = """
[storage]
home = "home"

[feature_views.weather]
sql = "SELECT origin, time_hour, temp FROM weather"
entities = ["origin"]
timestamp = "time_hour"

[feature_views.recent]
sql = '''WITH readings AS (SELECT * FROM weather)
SELECT origin, time_hour, temp AS recent_temp FROM readings'''
entities = ["origin"]
timestamp = "time_hour"

[models.late]
dataset = "flights"
target = "late"
task = "classification"
algorithm = "random_forest"
features = ["distance", "temp", "recent_temp"]
feature_views = ["weather", "recent"]
event_timestamp = "time_hour"
"""


def test_empty_home_warns_once(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, tmp_path / "home", log)
    try:
        declared = httpx.post(
            f"{daemon.base_url}/v1/models/late/predict",
            json={"rows": [{"origin": "EWR", "distance": 200}]},
            trust_env=False,
        )
        unknown = httpx.post(
            f"{daemon.base_url}/v1/models/nope/predict",
            json={"rows": [{"x": 1}]},
            trust_env=False,
        )
    finally:
        status = stop_daemon(daemon)
    text = log.read_text(encoding="utf-8")
    startup = text.partition(" daemon ready ")[0]
    warnings = [line for line in startup.splitlines() if " WARNING " in line]

    assert status == 0, text
    assert " daemon ready " in text
    assert "Traceback" not in text
    assert " ERROR " not in text
    assert len(warnings) == 1, text
    for view in ("weather", "recent"):
        assert (
            f"feature view '{view}' of model late reads dataset 'weather', which "
            "has no version yet; ingest it with 'appliance ingest weather FILE'"
        ) in warnings[0]
    assert "readings" not in warnings[0]
    assert declared.status_code == 404
    assert declared.json()["error"] == (
        f"model 'late' is not served: it is declared in {config} but has no "
        "version yet; run 'appliance train late'; served models: none"
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"] == (
        "model 'nope' is not served; served models: none"
    )
