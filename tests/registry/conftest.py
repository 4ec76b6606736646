"""Fixtures of the registry tests: a small trips dataset and config writers."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from trips_data import TRIPS_CONFIG, trips_frame

from appliance.config import Config, load_config
from appliance.storage import Catalog, ingest


@pytest.fixture
def trips(tmp_path: Path) -> Callable[[str], Config]:
    """Return a function that writes the trips config plus extra TOML and loads it.

    The home of the configuration holds one version of dataset ``trips``.
    """
    source = tmp_path / "trips.csv"
    trips_frame().to_csv(source, index=False)

    def make(extra: str = "") -> Config:
        path = tmp_path / "config.toml"
        path.write_text(TRIPS_CONFIG + textwrap.dedent(extra), encoding="utf-8")
        config = load_config(path)
        with Catalog(config.storage.home) as catalog:
            ingest(catalog, "trips", [source])
        return config

    return make
