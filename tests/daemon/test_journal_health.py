"""A prediction journal that cannot write makes the daemon not ready, and its
errors are logged at a limited rate."""

from __future__ import annotations

import time
from typing import Any

import httpx
from daemon_support import MODEL, row

PREDICT = f"/v1/models/{MODEL}/predict"


def _ready(daemon: Any) -> httpx.Response:
    return httpx.get(daemon.base + "/health/ready", timeout=5)


def _wait_status(daemon: Any, status: int, seconds: float = 20.0) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        httpx.post(daemon.base + PREDICT, json={"rows": [row(1)]}, timeout=5)
        response = _ready(daemon)
        if response.status_code == status:
            return response
        time.sleep(0.2)
    raise AssertionError(f"ready never returned {status}:\n{daemon.log()}")


def test_journal_failure_not_ready(start_daemon: Any) -> None:
    daemon = start_daemon()
    journal = daemon.home / "predictions" / "journal"
    aside = journal.with_name("journal.aside")
    assert _ready(daemon).json()["prediction_journal_writing"] is True

    journal.rename(aside)
    journal.write_text("not a folder")
    failing = _wait_status(daemon, 503)
    for index in range(40):
        httpx.post(daemon.base + PREDICT, json={"rows": [row(index)]}, timeout=5)
        time.sleep(0.05)
    journal.unlink()
    aside.rename(journal)
    recovered = _wait_status(daemon, 200)
    log = daemon.log()
    assert daemon.stop() == 0

    assert failing.json()["prediction_journal_writing"] is False
    assert failing.json()["status"] == "not ready"
    assert recovered.json()["prediction_journal_writing"] is True
    errors = [line for line in log.splitlines() if " ERROR " in line]
    # One line each for the failed create, write and delete.
    assert 1 <= len(errors) <= 3, "\n".join(errors)
    assert log.count("Traceback") == len(errors)
    assert "journal segment create recovered" in log or "journal write recovered" in log
