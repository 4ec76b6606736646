"""Fixtures of the daemon tests, loaded by ``pytest_plugins = ["daemon_fixtures"]``.

The helpers they use live in daemon_support, which the test modules import.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_support import MODEL, Daemon, free_port, write_config, write_dataset


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a home holding dataset ``points`` and model ``demo`` version 1."""
    from appliance.config import load_config
    from appliance.storage import Catalog, ingest
    from appliance.training import train_model

    root = tmp_path_factory.mktemp("trained")
    home = root / "home"
    data = root / "points.csv"
    write_dataset(data, 400, seed=1)
    config = load_config(write_config(root / "config.toml", home))
    with Catalog(home) as catalog:
        ingest(catalog, "points", [data])
    train_model(config, MODEL)
    return home


@pytest.fixture
def home(trained_home: Path, tmp_path: Path) -> Path:
    """Return a private copy of the trained home."""
    target = tmp_path / "home"
    shutil.copytree(trained_home, target)
    return target


@pytest.fixture
def start_daemon(home: Path, tmp_path: Path) -> Iterator[Any]:
    """Return a function that starts a ready daemon on the copied home."""
    started: list[Daemon] = []

    def start(**sections: dict[str, Any]) -> Daemon:
        config = write_config(tmp_path / "config.toml", home, **sections)
        daemon = Daemon(config, home, free_port())
        started.append(daemon)
        daemon.wait_ready()
        return daemon

    yield start
    for daemon in started:
        daemon.kill()
