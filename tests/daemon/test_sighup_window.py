"""SIGHUP while the daemon starts or stops, outside its reload handler.

``systemctl reload`` may send SIGHUP at any time, and the signal's default
action would end the process.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
from daemon_support import MODEL, Daemon, free_port, row, write_config

WAIT_SECONDS = 30


def _wait_for_line(daemon: Daemon, text: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while text not in daemon.log():
        assert daemon.process.poll() is None, daemon.log()
        assert time.monotonic() < deadline, f"no {text!r} in:\n{daemon.log()}"
        time.sleep(0.005)


def test_sighup_during_start_reloads(home: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", home)
    daemon = Daemon(config, home, free_port())
    try:
        _wait_for_line(daemon, "home locked")
        write_config(config, home, server={"max_rows": 1})
        os.kill(daemon.process.pid, signal.SIGHUP)

        daemon.wait_ready()
        _wait_for_line(daemon, "config reloaded")
        response = httpx.post(
            f"{daemon.base}/v1/models/{MODEL}/predict",
            json={"rows": [row(0), row(1)]},
            timeout=10,
        )
        assert response.status_code == 413
        assert response.json()["limit"] == 1
        assert "config reload requested during start" in daemon.log()
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_sighup_during_stop_ignored(home: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", home)
    daemon = Daemon(config, home, free_port())
    try:
        daemon.wait_ready()
        os.kill(daemon.process.pid, signal.SIGTERM)
        _wait_for_line(daemon, "daemon stopping")
        os.kill(daemon.process.pid, signal.SIGHUP)

        assert daemon.stop() == 0
        assert "daemon stopped" in daemon.log()
    finally:
        daemon.kill()
