"""The datasets screen lists the orphan folders of the daemon's home.

The home's catalog is restored from a backup taken before its newest
version, so the daemon's start moves that version's folder to
``HOME/orphans``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
from support import start_daemon, stop_daemon
from textual.widgets import Static
from ui_support import run_app, screen_text, wait_for

from appliance.storage import Catalog, ingest
from tui import UiClient


def _write_csv(path: Path, ids: range) -> Path:
    path.write_text("id,value\n" + "".join(f"{i},{i * 0.5}\n" for i in ids))
    return path


def _restored_home(root: Path) -> Path:
    """Return a config whose home's catalog lacks the newest version of events."""
    home = root / "home"
    config = root / "config.toml"
    config.write_text(f'[storage]\nhome = "{home}"\n')
    backup = root / "catalog-backup.duckdb"
    with Catalog(home) as catalog:
        ingest(catalog, "events", [_write_csv(root / "a.csv", range(3))])
    shutil.copy(home / "catalog.duckdb", backup)
    with Catalog(home) as catalog:
        ingest(catalog, "events", [_write_csv(root / "b.csv", range(3, 9))], "append")
    shutil.copy(backup, home / "catalog.duckdb")
    return config


def _orphans_shown(app: Any) -> str:
    return str(app.query_one("#orphans", Static).content)


def test_datasets_screen_lists_orphan_folders(tmp_path: Path) -> None:
    config = _restored_home(tmp_path)
    home = tmp_path / "home"
    daemon = start_daemon(config, home, tmp_path / "daemon.log")
    try:
        (folder,) = (home / "orphans" / "events").iterdir()
        listing = UiClient(daemon.base_url).orphans()
        seen: dict[str, str] = {}

        async def scenario(app: Any, pilot: Any) -> None:
            await pilot.press("4")
            await wait_for(
                pilot, lambda: "Orphan folders: 1," in screen_text(app), "orphans"
            )
            seen["listed"] = _orphans_shown(app)
            seen["screen"] = screen_text(app)
            with httpx.Client(trust_env=False, timeout=30) as http:
                removed = http.post(
                    f"{daemon.base_url}/v1/admin/orphans/remove",
                    json={"dataset": "events"},
                )
            assert removed.status_code == 200, removed.text
            await wait_for(
                pilot,
                lambda: _orphans_shown(app) == "Orphan folders: none",
                "the orphan folders gone after their removal",
            )

        run_app(daemon.base_url, scenario, size=(120, 40))
    finally:
        stop_daemon(daemon)

    (orphan,) = listing["orphans"]
    assert listing["path"] == str(home / "orphans")
    assert orphan["folder"] == folder.name
    assert orphan["files"] >= 1
    assert f"in {home / 'orphans'}." in seen["listed"]
    assert "then run 'appliance orphans remove'" in seen["listed"]
    assert f"events/{folder.name}" in seen["screen"]
    assert f"files {orphan['files']}" in seen["screen"]
