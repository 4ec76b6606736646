"""Rejected buffer segments on a running daemon: reasons, listing and retries.

Rows sent without the column that the contract's ``unique_key`` names fail
every flush the same way, so their segment is set aside in ``rejected/``. A
reload without that key fixes the cause, and a retry then appends the rows.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import httpx
from daemon_support import run_cli, write_config

ROWS = "/v1/datasets/events/rows"
KEY_ERROR = (
    "unique_key column 'id' of [datasets.events.contract] is not a column of "
    "the ingested rows; columns: value. Fix unique_key or add the column to the "
    "files"
)
SECTIONS: dict[str, dict[str, Any]] = {
    "ingest": {"flush_rows": 2, "flush_seconds": 3600},
    "datasets.events.contract": {"unique_key": ["id"]},
}


def wait_for_status(daemon: Any, key: str, value: Any) -> dict[str, Any]:
    """Poll the buffer status until `key` has `value`; return the status."""
    deadline = time.monotonic() + 30
    while True:
        status = httpx.get(daemon.base + ROWS).json()
        if status[key] == value:
            return status
        assert time.monotonic() < deadline, (status, daemon.log())
        time.sleep(0.1)


def reload(daemon: Any, unique_key: list[str]) -> None:
    """Write the config with `unique_key` and wait until the daemon reloads it."""
    sections = {**SECTIONS, "datasets.events.contract": {"unique_key": unique_key}}
    write_config(daemon.config, daemon.home, **sections)
    before = daemon.log().count("config reloaded")
    os.kill(daemon.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while daemon.log().count("config reloaded") == before:
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.1)


def test_rejected_segment_shown_and_retried(start_daemon: Any) -> None:
    daemon = start_daemon(**SECTIONS)
    sent = httpx.post(daemon.base + ROWS, json={"rows": [{"value": 1.5}, {}]})
    assert sent.status_code == 202, sent.text

    status = wait_for_status(daemon, "rejected_segments", 1)

    (listed,) = status["rejected"]
    folder = daemon.home / "buffer" / "events" / "rejected"
    (segment,) = folder.glob("segment-*.jsonl")
    assert listed["segment"] == segment.name
    assert listed["path"] == str(segment.resolve())
    assert listed["rows"] == 2
    assert listed["error"] == "IngestError"
    assert listed["message"] == KEY_ERROR
    assert listed["retries"] == 0
    assert status["last_rejection"] == KEY_ERROR

    # The reason survives a restart, which resets the counts since start.
    daemon.stop()
    daemon = start_daemon(**SECTIONS)
    status = httpx.get(daemon.base + ROWS).json()
    assert status["rejected_segments"] == 0
    assert status["rejected"] == [listed]

    shown = run_cli(daemon.config, "datasets", "rejected", "events")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        f"{segment.name} rows=2 error=IngestError "
        f"rejected_at={listed['rejected_at']} retries=0",
        f"  {KEY_ERROR}",
        f"  file {segment.resolve()}",
        "fix the rows or the contract, then run 'appliance datasets rejected "
        "events --retry SEGMENT'",
    ]

    failed = run_cli(
        daemon.config, "datasets", "rejected", "events", "--retry", segment.name
    )
    assert failed.returncode == 1
    assert (
        f"retry of rejected segment {segment.name} of dataset 'events' failed "
        f"again, so it stays in {segment.parent.resolve()}: {KEY_ERROR}"
    ) in failed.stderr
    assert "HTTP 422" not in failed.stderr
    (again,) = httpx.get(daemon.base + ROWS).json()["rejected"]
    assert again["retries"] == 1
    assert segment.exists()

    reload(daemon, [])
    retried = run_cli(
        daemon.config, "datasets", "rejected", "events", "--retry", segment.name
    )

    assert retried.returncode == 0, retried.stderr
    # The dataset's first version is a replace, as every first ingest is.
    assert "rows=2 mode=replace accepted=2 quarantined=0 (created)" in (
        retried.stdout
    ), retried.stdout
    assert list(folder.iterdir()) == []
    status = httpx.get(daemon.base + ROWS).json()
    assert status["rejected"] == []
    assert status["flushed_rows"] == 2
    versions = httpx.get(daemon.base + "/v1/admin/datasets").json()["datasets"]
    assert [
        (v["dataset"], v["row_count"]) for v in versions if v["dataset"] == "events"
    ] == [("events", 2)]


def test_retry_of_unknown_segment_is_404(start_daemon: Any) -> None:
    daemon = start_daemon(**SECTIONS)

    response = httpx.post(
        daemon.base + "/v1/datasets/events/rejected/segment-1.jsonl/retry"
    )

    assert response.status_code == 404
    assert response.json()["error"] == (
        "dataset 'events' has no rejected buffer segment 'segment-1.jsonl' "
        "(rejected segments: none); list them with 'appliance datasets "
        "rejected events'"
    )
