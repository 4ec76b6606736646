"""Helpers and fixtures of the daemon tests; conftest.py re-exports the fixtures.

A small binary classifier is trained once per session. Each test copies its
home, so the prediction logs of two tests never mix, and starts the daemon as
``python -m appliance serve`` in a subprocess that it stops by its pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
MODEL = "demo"
FEATURES = ["x1", "x2", "color"]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def write_dataset(path: Path, rows: int, seed: int) -> None:
    """Write a CSV whose label depends on x1, x2 and color."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=rows)
    x2 = rng.normal(size=rows)
    colors = rng.choice(["red", "green", "blue"], size=rows)
    label = (x1 + 0.5 * x2 + (colors == "red") > 0.3).astype(int)
    lines = ["x1,x2,color,label"]
    lines += [f"{a:.6f},{b:.6f},{c},{y}" for a, b, c, y in zip(x1, x2, colors, label)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_config(path: Path, home: Path, **sections: dict[str, Any]) -> Path:
    """Write a config file for model `MODEL`, with extra ``[server]`` or
    ``[predictions]`` keys from `sections`."""
    lines = ['log_level = "INFO"', "", "[storage]", f"home = {json.dumps(str(home))}"]
    for table, values in sections.items():
        lines.append(f"[{table}]")
        for key, value in values.items():
            text = (
                json.dumps(value) if not isinstance(value, bool) else str(value).lower()
            )
            lines.append(f"{key} = {text}")
    lines += [
        f"[models.{MODEL}]",
        'dataset = "points"',
        'target = "label"',
        'task = "classification"',
        'algorithm = "lightgbm"',
        f"features = {json.dumps(FEATURES)}",
        'categorical = ["color"]',
        f"[models.{MODEL}.params]",
        "n_estimators = 20",
        "min_child_samples = 5",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


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


def row(index: int) -> dict[str, Any]:
    """Return a distinct input row for `MODEL`."""
    return {
        "x1": round(-2.0 + index * 0.037, 4),
        "x2": round(1.5 - index * 0.021, 4),
        "color": ["red", "green", "blue"][index % 3],
    }


class Daemon:
    """A daemon subprocess on 127.0.0.1 and the paths it uses."""

    def __init__(self, config: Path, home: Path, port: int) -> None:
        self.config = config
        self.home = home
        self.port = port
        self.base = f"http://{HOST}:{port}"
        self.log_path = home.parent / f"daemon-{port}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appliance",
                "--config",
                str(config),
                "serve",
                "--port",
                str(port),
            ],
            env=appliance_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_ready(self) -> None:
        """Wait until ``/health/ready`` returns 200."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited early:\n{self.log()}")
            try:
                if httpx.get(self.base + "/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"daemon not ready in time:\n{self.log()}")

    def stop(self) -> int:
        """Send SIGTERM to the daemon's pid and return its exit status."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT_SECONDS)
        finally:
            self._log.close()

    def log(self) -> str:
        """Return what the daemon wrote to stdout and stderr."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8")

    def kill(self) -> None:
        """Stop a daemon left running by a failed test."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT_SECONDS)
        self._log.close()


def appliance_env() -> dict[str, str]:
    """Return the environment of a subprocess, without APPLIANCE_ overrides."""
    return {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}


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


def run_cli(
    config: Path, *args: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m appliance --config CONFIG ARGS...``, with `key` in
    APPLIANCE_API_KEY when given."""
    env = appliance_env()
    if key is not None:
        env["APPLIANCE_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "appliance", "--config", str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def logged_rows(home: Path, request_ids: set[str] | None = None) -> list[tuple]:
    """Return ``(request_id, row_index)`` of every logged prediction (daemon
    stopped)."""
    from appliance.predictions import query
    from appliance.storage import Catalog

    with Catalog(home, read_only=True) as catalog:
        rows = query(catalog, limit=10_000_000)
    return [(r["request_id"], r["row_index"]) for r in rows]


ROLES = ("reader", "predictor", "operator", "admin")


def make_keys(home: Path, roles: tuple[str, ...] = ROLES) -> dict[str, str]:
    """Create a key named ROLE-key per role on the stopped daemon's catalog;
    return the token of each role."""
    from appliance.access import create_key
    from appliance.storage import Catalog

    with Catalog(home) as catalog:
        return {role: create_key(catalog, f"{role}-key", role)[1] for role in roles}


def bearer(token: str) -> dict[str, str]:
    """Return the Authorization header that sends `token`."""
    return {"Authorization": f"Bearer {token}"}
