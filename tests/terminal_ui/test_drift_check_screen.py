"""The drift screen's line on the scheduled batch drift check, against real
daemons on 127.0.0.1 whose check runs every second."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import Daemon, json_rows, start_daemon, stop_daemon
from textual.widgets import Static
from ui_support import (
    DATASET,
    MODEL,
    SIZES,
    UiHome,
    copy_home,
    run_app,
    shared_home,
    wait_for,
)

from tui import UiClient
from tui._format import timestamp

CHECK_EVERY_SECOND = "\n[monitoring]\ndrift_interval_seconds = 1\n"
ROWS = 150
"""Logged rows: more than `min_samples`, so the check tests every feature."""
WAIT_SECONDS = 60.0


@pytest.fixture(scope="module")
def ui_home(tmp_path_factory: pytest.TempPathFactory) -> UiHome:
    """Return the home with two versions of the model."""
    return shared_home(tmp_path_factory)


def start_checked(ui_home: UiHome, root: Path) -> tuple[Daemon, UiHome]:
    """Start a daemon on a copy of the home that checks drift every second,
    after logging `ROWS` predictions for the check to score."""
    copy = copy_home(ui_home, root)
    with copy.config_path.open("a", encoding="utf-8") as config:
        config.write(CHECK_EVERY_SECOND)
    daemon = start_daemon(copy.config_path, copy.home, root / "daemon.log")
    rows = json_rows(ui_home.frame.drop(columns=["malignant"]).head(ROWS))
    url = f"{daemon.base_url}/v1/models/{MODEL}/predict"
    with httpx.Client(trust_env=False, timeout=30.0) as http:
        http.post(url, json={"rows": rows}).raise_for_status()
    return daemon, copy


def wait_for_check(
    daemon: Daemon, condition: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Poll the drift report until `condition` holds for its scheduled check."""
    client = UiClient(daemon.base_url)
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        report = client.drift(MODEL)
        if condition(report["scheduled_check"]):
            return report
        time.sleep(0.2)
    raise AssertionError(f"timed out after {WAIT_SECONDS} s waiting for {what}")


def scored(check: dict[str, Any]) -> bool:
    """Whether the newest run finished and scored logged rows."""
    last = check["last_run"] or {}
    return last.get("outcome") == "finished" and bool(
        (last.get("detail") or {}).get("rows")
    )


def check_line(app: Any) -> str:
    """Return the text of the drift screen's scheduled check line."""
    return str(app.query_one("#check", Static).render())


def test_drift_screen_shows_succeeded_check(ui_home: UiHome, tmp_path: Path) -> None:
    daemon, _ = start_checked(ui_home, tmp_path)
    try:
        report = wait_for_check(daemon, scored, "a scheduled check that scored")
        lines: list[str] = []

        async def scenario(app: Any, pilot: Any) -> None:
            await pilot.press("5")
            await wait_for(
                pilot, lambda: "succeeded" in check_line(app), "the check line"
            )
            lines.append(check_line(app))

        run_app(daemon.base_url, scenario, size=SIZES["large"])
    finally:
        stop_daemon(daemon)

    detail = report["scheduled_check"]["last_run"]["detail"]
    (line,) = lines
    assert line.startswith("Scheduled drift check: succeeded at ")
    assert f"rows against version 2, {detail['tested']} features tested" in line
    assert "next run " in line
    assert "FAILED" not in line
    assert "failing since" not in line


def test_drift_screen_shows_failing_check(ui_home: UiHome, tmp_path: Path) -> None:
    daemon, copy = start_checked(ui_home, tmp_path / "served")
    lake = copy.home / "lake" / DATASET
    moved = tmp_path / "moved-dataset"
    try:
        wait_for_check(daemon, scored, "a scheduled check that scored")
        lake.rename(moved)
        report = wait_for_check(
            daemon, lambda check: check["failed_runs"] >= 2, "two failed checks"
        )
        seen: dict[str, str] = {}

        async def scenario(app: Any, pilot: Any) -> None:
            await pilot.press("5")
            await wait_for(pilot, lambda: "FAILED" in check_line(app), "a failure")
            seen["failed"] = check_line(app)
            moved.rename(lake)
            await wait_for(
                pilot, lambda: "succeeded" in check_line(app), "a good check"
            )
            seen["recovered"] = check_line(app)

        run_app(daemon.base_url, scenario, size=SIZES["large"], refresh_seconds=0.5)
        after = UiClient(daemon.base_url).drift(MODEL)["scheduled_check"]
    finally:
        if moved.exists():
            moved.rename(lake)
        stop_daemon(daemon)

    check = report["scheduled_check"]
    first, second, third = seen["failed"].splitlines()
    assert first.startswith("Scheduled drift check: FAILED at ")
    since = re.search(r"failing since (\S+ \S+) \((\d+) failed runs in a row", first)
    assert since is not None, first
    assert since.group(1) == timestamp(check["failing_since"])
    assert int(since.group(2)) >= 2
    assert f"job alert {check['alert']['id']} open (screen 6)" in first
    assert second.startswith("Error: TrainingError: cannot read the training rows")
    assert f"no readable files in {lake}/version=" in second
    scores_at = timestamp(report["latest"][0]["checked_at"])
    assert f"The charts end at the last stored scores: {scores_at}." in third
    assert f"run 'appliance drift {MODEL} --check'" in third
    assert "next scheduled run that succeeds resolves the alert" in third
    assert seen["recovered"].startswith("Scheduled drift check: succeeded at ")
    assert "failing since" not in seen["recovered"]
    assert after["failed_runs"] == 0
    assert after["alert"] is None
