"""``runs list --json`` and ``runs show`` print the same text with and without
a running daemon."""

from __future__ import annotations

import json
from pathlib import Path

from support import TrainedHome, start_daemon, stop_daemon


def test_run_times_same_with_daemon(cli, trained: TrainedHome, tmp_path: Path) -> None:
    first = cli(trained.config_path, trained.home, "runs", "list", "--json")
    run_id = json.loads(first.stdout.splitlines()[0])["run_id"]
    commands = [["runs", "list", "--json"], ["runs", "show", run_id]]
    without = [cli(trained.config_path, trained.home, *c) for c in commands]

    daemon = start_daemon(trained.config_path, trained.home, tmp_path / "log")
    try:
        served = [cli(trained.config_path, trained.home, *c) for c in commands]
    finally:
        stop_daemon(daemon)

    for local, remote in zip(without, served):
        assert local.returncode == 0, local.stderr
        assert remote.returncode == 0, remote.stderr
        assert remote.stdout == local.stdout
    started = json.loads(without[1].stdout)["started_at"]
    assert "T" in started
    assert started.endswith("+00:00")
