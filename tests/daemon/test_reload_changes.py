"""A SIGHUP reload logs and audits what it changed, and warns about a model
whose dataset has no version."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from daemon_support import Daemon, write_config

from appliance.access import list_entries
from appliance.storage import Catalog

EXTRA = {
    "dataset": "nope",
    "target": "label",
    "task": "classification",
    "algorithm": "lightgbm",
}
WEBHOOK = "https://hooks.example.invalid/secret-token"


def _reloaded(daemon: Daemon) -> list[str]:
    return [line for line in daemon.log().splitlines() if "config reloaded" in line]


def test_sighup_logs_changed_settings(start_daemon: Any, home: Path) -> None:
    daemon = start_daemon()
    assert "model dataset not found" not in daemon.log()

    sections = {
        "server": {"max_rows": 7},
        "monitoring": {"webhook_url": WEBHOOK},
        "models.extra": EXTRA,
    }
    write_config(daemon.config, home, **sections)
    os.kill(daemon.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 30
    while not _reloaded(daemon) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    log = daemon.log()
    assert daemon.stop() == 0

    (line,) = _reloaded(daemon)
    assert "changed=server.max_rows,monitoring.webhook_url" in line
    assert "added=models.extra removed=-" in line
    assert "WARNING appliance._reload_checks model dataset not found " in log
    assert "model=extra dataset=nope" in log
    assert WEBHOOK not in log
    with Catalog(home, read_only=True) as catalog:
        (entry,) = list_entries(catalog, action="config.reload")
    assert json.loads(entry.details) == {
        "changed": ["server.max_rows", "monitoring.webhook_url"],
        "added": ["models.extra"],
    }


def test_start_warns_missing_dataset(start_daemon: Any) -> None:
    daemon = start_daemon(**{"models.extra": EXTRA})
    log = daemon.log()
    assert daemon.stop() == 0

    warnings = [line for line in log.splitlines() if "dataset not found" in line]
    assert len(warnings) == 1
    assert "model dataset not found model=extra dataset=nope" in warnings[0]
