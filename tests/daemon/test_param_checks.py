"""Invalid ``[models.NAME.params]`` are rejected when the config loads.

A CLI command and ``appliance serve`` exit with the error, and a SIGHUP
reload keeps the old config.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_support import MODEL, free_port, run_cli, write_config

VALID_PARAMS = "min_child_samples = 5"
CASES = [
    (
        "num_leaves = -5",
        f"[models.{MODEL}.params] num_leaves = -5 is invalid for lightgbm: it must "
        "be an integer in the range (1, 131072]; fix the value in the config file",
    ),
    (
        'learning_rate = "fast"',
        f"[models.{MODEL}.params] learning_rate = 'fast' is invalid for lightgbm: "
        "it must be a number in the range (0, inf); fix the value in the config file",
    ),
    (
        "bogus_param = 3",
        f"[models.{MODEL}.params] bogus_param is not a parameter of LGBMClassifier; "
        "known parameters (LightGBM also takes their aliases): ",
    ),
    (
        "n_estimator = 3",
        f"[models.{MODEL}.params] n_estimator is not a parameter of LGBMClassifier; "
        "did you mean 'n_estimators'? known parameters (LightGBM also takes their "
        "aliases): ",
    ),
]


def write_params(config: Path, home: Path, line: str) -> None:
    """Write the daemon's config with `line` added to ``[models.demo.params]``."""
    write_config(config, home)
    text = config.read_text(encoding="utf-8")
    assert VALID_PARAMS in text
    config.write_text(text.replace(VALID_PARAMS, f"{VALID_PARAMS}\n{line}"))


def reload(daemon: Any, outcome: str) -> str:
    """Send SIGHUP and return the daemon's next log line that contains `outcome`."""
    before = daemon.log().count(outcome)
    os.kill(daemon.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while daemon.log().count(outcome) == before:
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.1)
    return [line for line in daemon.log().splitlines() if outcome in line][before]


def test_reload_with_bad_params_rejected(start_daemon: Any) -> None:
    daemon = start_daemon()
    for line, expected in CASES:
        write_params(daemon.config, daemon.home, line)

        logged = reload(daemon, "config reload rejected")

        assert expected in logged, line
        assert "old config kept" in logged
    # Training with the rejected params would fail, so a version trained now
    # shows that the old config is in force.
    response = httpx.post(
        daemon.base + "/v1/admin/train", json={"model": MODEL}, timeout=120
    )
    assert response.status_code == 200, response.text
    served = httpx.get(daemon.base + "/v1/models").json()["models"]
    assert [(m["name"], m["version"]) for m in served] == [(MODEL, 2)]
    assert daemon.stop() == 0


@pytest.mark.parametrize(("line", "expected"), CASES)
def test_bad_params_fail_cli(
    home: Path, tmp_path: Path, line: str, expected: str
) -> None:
    config = tmp_path / "config.toml"
    write_params(config, home, line)

    trained = run_cli(config, "train", MODEL)
    listed = run_cli(config, "models", "list")

    assert trained.returncode == 1
    assert f"error: invalid 'models.{MODEL}' in {config}: {expected}" in (
        trained.stderr
    )
    assert "Traceback" not in trained.stderr
    assert listed.returncode == 1
    assert expected in listed.stderr


def test_bad_params_stop_serve_start(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    line, expected = CASES[0]
    write_params(config, home, line)

    started = run_cli(config, "serve", "--port", str(free_port()))

    assert started.returncode == 1
    assert expected in started.stderr
    assert "Traceback" not in started.stderr
