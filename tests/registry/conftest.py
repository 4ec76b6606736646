"""Fixtures of the registry tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from trips_data import make_trips_config

from appliance.config import Config


@pytest.fixture
def trips(tmp_path: Path) -> Callable[[str], Config]:
    """Return `make_trips_config` bound to this test's temporary folder."""

    def make(extra: str = "") -> Config:
        return make_trips_config(tmp_path, extra)

    return make
