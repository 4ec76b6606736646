"""Invalid ``[models.NAME.params]`` reach training as 422 and a CLI error."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_support import MODEL, run_cli, write_config

VALID_PARAMS = "min_child_samples = 5"
CASES = [
    (
        "num_leaves = -5",
        f"[models.{MODEL}.params] num_leaves = -5 is invalid for lightgbm: Check "
        "failed: (num_leaves) > (1); fix the value in the config file",
    ),
    (
        'learning_rate = "fast"',
        f"[models.{MODEL}.params] learning_rate = 'fast' is invalid for lightgbm: "
        "Unknown token fast in data file; fix the value in the config file",
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


def reload(daemon: Any) -> None:
    """Send SIGHUP and wait for the daemon to log one more ``config reloaded``."""
    before = daemon.log().count("config reloaded")
    os.kill(daemon.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while daemon.log().count("config reloaded") == before:
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.1)


def test_reloaded_bad_params_rejected_422(start_daemon: Any) -> None:
    daemon = start_daemon()
    for line, expected in CASES:
        write_params(daemon.config, daemon.home, line)
        reload(daemon)

        response = httpx.post(
            daemon.base + "/v1/admin/train", json={"model": MODEL}, timeout=120
        )
        trained = run_cli(daemon.config, "train", MODEL)

        assert response.status_code == 422, line
        assert response.json()["error"].startswith(expected)
        assert trained.returncode == 1, line
        assert expected in trained.stderr
        assert "(HTTP 422)" in trained.stderr
    served = httpx.get(daemon.base + "/v1/models").json()["models"]
    assert [(m["name"], m["version"]) for m in served] == [(MODEL, 1)]
    assert daemon.stop() == 0


@pytest.mark.parametrize(("line", "expected"), CASES[:3])
def test_bad_params_fail_cli_train(
    home: Path, tmp_path: Path, line: str, expected: str
) -> None:
    config = tmp_path / "config.toml"
    write_params(config, home, line)

    trained = run_cli(config, "train", MODEL)

    assert trained.returncode == 1
    assert expected in trained.stderr
    assert "Traceback" not in trained.stderr
