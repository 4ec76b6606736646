"""The trips dataset and configuration shared by the registry tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from appliance.config import Config, load_config
from appliance.storage import Catalog, ingest

TRIPS_CONFIG = """
log_level = "WARNING"

[storage]
home = "home"

[models.late]
dataset = "trips"
target = "late"
task = "classification"
algorithm = "lightgbm"
features = ["distance", "hour", "carrier"]
categorical = ["carrier"]
segments = ["carrier"]
intended_use = "Ranks trips by risk of arriving late; not for pricing."

[models.late.params]
n_estimators = 20
num_leaves = 7
n_jobs = 1

[models.late.split]
method = "stratified"
"""


def trips_frame(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """Return seeded trips whose lateness depends on hour, distance and carrier."""
    rng = np.random.default_rng(seed)
    carrier = rng.choice(["AA", "B6", "UA"], size=rows)
    hour = rng.integers(5, 23, size=rows)
    distance = rng.uniform(100, 2500, size=rows).round(1)
    logit = (hour - 14) / 3 + (carrier == "B6") * 1.2 - distance / 2000
    late = rng.random(rows) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {"distance": distance, "hour": hour, "carrier": carrier, "late": late}
    )


def make_trips_config(folder: Path, extra: str = "") -> Config:
    """Write the trips config plus `extra` TOML in `folder`, load it, ingest trips.

    The dataset version is created on the first call and found on later ones.
    """
    source = folder / "trips.csv"
    if not source.exists():
        trips_frame().to_csv(source, index=False)
    path = folder / "config.toml"
    path.write_text(TRIPS_CONFIG + textwrap.dedent(extra), encoding="utf-8")
    config = load_config(path)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "trips", [source])
    return config
