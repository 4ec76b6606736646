"""The datasets pane completes a pending quality report when it shows it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from support import start_daemon, stop_daemon
from textual.widgets import DataTable
from ui_support import run_app, screen_text, wait_for

CONFIG = """
[storage]
home = "home"

[ingest]
flush_rows = 1000
flush_seconds = 0.2

[datasets.events.contract.columns.value]
type = "DOUBLE"
"""


def _latest_rows(client: httpx.Client) -> int | None:
    listed = client.get("/v1/admin/datasets").json()["datasets"]
    return listed[0]["row_count"] if listed else None


def _send_two_flushes(base_url: str) -> None:
    """Send one row, then two equal rows, each flushed as its own version."""
    with httpx.Client(base_url=base_url, trust_env=False, timeout=30) as client:
        for rows, total in ([[{"id": 1, "value": 0.5}], 1], [[{"id": 2}] * 2, 3]):
            response = client.post("/v1/datasets/events/rows", json={"rows": rows})
            assert response.status_code in (200, 202), response.text
            deadline = time.monotonic() + 30
            while _latest_rows(client) != total:
                assert time.monotonic() < deadline, f"no version of {total} rows"
                time.sleep(0.2)


def test_datasets_pane_completes_pending_report(tmp_path: Path) -> None:
    config_path = tmp_path / "config.toml"
    config_path.write_text(CONFIG)
    daemon = start_daemon(config_path, tmp_path / "home", tmp_path / "daemon.log")
    try:
        _send_two_flushes(daemon.base_url)

        async def scenario(app: Any, pilot: Any) -> None:
            await pilot.press("4")
            table = app.query_one("#datasets", DataTable)
            await wait_for(pilot, lambda: table.row_count == 2, "two versions")
            await pilot.press("enter")
            await wait_for(
                pilot, lambda: "Quality report:" in screen_text(app), "quality report"
            )
            text = screen_text(app)
            assert "duplicate rows 1" in text
            assert "pending:" not in text

        run_app(daemon.base_url, scenario)
    finally:
        stop_daemon(daemon)
