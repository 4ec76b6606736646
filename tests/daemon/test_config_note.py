"""Commands sent to the daemon warn when its configuration is not theirs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from daemon_support import run_cli, write_config

RUNS_WITH = "carries out this command with its settings"
CHANGED = "changed after the daemon"


def _models_list(config: Path) -> str:
    done = run_cli(config, "models", "list")
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_same_config_gives_no_warning(start_daemon: Any) -> None:
    daemon = start_daemon()

    stderr = _models_list(daemon.config)

    assert RUNS_WITH not in stderr
    assert CHANGED not in stderr


def test_other_config_file_warns(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon()
    other = write_config(tmp_path / "other.toml", daemon.home, server={"max_rows": 3})

    stderr = _models_list(other)

    assert RUNS_WITH in stderr
    assert str(other) in stderr
    assert f"kill -HUP {daemon.process.pid}" in stderr


def test_edited_config_warns_until_reload(start_daemon: Any) -> None:
    daemon = start_daemon()
    write_config(daemon.config, daemon.home, server={"max_rows": 3})

    assert CHANGED in _models_list(daemon.config)

    os.kill(daemon.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "config reloaded" not in daemon.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "config reloaded" in daemon.log()
    assert CHANGED not in _models_list(daemon.config)
