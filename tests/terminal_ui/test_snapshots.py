"""Text snapshots of the main screens at 80x24 and 120x40, so layout changes show
in review.

Each screen is rendered as plain text against a real daemon, then times, ids,
ports, durations and measured numbers are masked (see `ui_support.mask`).
Snapshots live in ``snapshots/`` beside this file. To accept a change, run
``TUI_SNAPSHOT_UPDATE=1 scripts/test.sh tests/terminal_ui/test_snapshots.py``
and review the diff of the text files. Colours are not compared.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import Daemon, json_rows, stop_daemon
from textual.widgets import DataTable
from ui_support import (
    MODEL,
    SIZES,
    UiHome,
    mask,
    run_app,
    serve,
    shared_home,
    shown_text,
    wait_for,
)

SNAPSHOT_DIR = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("TUI_SNAPSHOT_UPDATE") == "1"
ROWS = 3
REQUESTS = 2


@pytest.fixture(scope="module")
def snapshot_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """Run a daemon with a few logged predictions, read only by the snapshots."""
    ui_home: UiHome = shared_home(tmp_path_factory)
    running = serve(ui_home, tmp_path_factory.mktemp("snapshot-daemon"))
    rows = json_rows(ui_home.frame.drop(columns=["malignant"]).head(ROWS))
    url = f"{running.base_url}/v1/models/{MODEL}/predict"
    try:
        with httpx.Client(trust_env=False, timeout=30.0) as http:
            for _ in range(REQUESTS):
                http.post(url, json={"rows": rows}).raise_for_status()
        yield running
    finally:
        stop_daemon(running)


def _ready(app: Any, key: str) -> bool:
    """Return whether the pane shown by `key` has drawn its data."""
    pane = app.active_pane()
    if pane.fetched_at is None:
        return False
    if key == "8":
        return app.query_one("#predictions", DataTable).row_count == ROWS * REQUESTS
    return True


SCREENS = {"1": "overview", "2": "models", "3": "runs", "4": "datasets", "8": "tail"}
"""Key of each snapshotted screen and its file name."""


@pytest.mark.parametrize("size_name", list(SIZES))
def test_main_screens_match_snapshots(snapshot_daemon: Daemon, size_name: str) -> None:
    size = SIZES[size_name]
    rendered: dict[str, str] = {}

    async def scenario(app: Any, pilot: Any) -> None:
        for key, name in SCREENS.items():
            await pilot.press(key)
            await wait_for(pilot, lambda k=key: _ready(app, k), f"{name} data")
            rendered[name] = mask(await shown_text(pilot))
        await pilot.press("question_mark")
        rendered["help"] = mask(await shown_text(pilot))

    run_app(snapshot_daemon.base_url, scenario, size=size, refresh_seconds=60.0)

    mismatches = []
    for name, text in rendered.items():
        path = SNAPSHOT_DIR / f"{name}_{size[0]}x{size[1]}.txt"
        if UPDATE:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
            continue
        if not path.exists():
            mismatches.append(f"{path} is missing; run with TUI_SNAPSHOT_UPDATE=1")
            continue
        expected = path.read_text(encoding="utf-8")
        if text != expected:
            diff = difflib.unified_diff(
                expected.splitlines(),
                text.splitlines(),
                str(path),
                "rendered",
                lineterm="",
            )
            mismatches.append("\n".join(diff))
    assert not mismatches, "screens differ from their snapshots:\n" + "\n".join(
        mismatches
    )
