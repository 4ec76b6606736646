"""The terminal UI against a daemon that requires API keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import start_daemon, stop_daemon
from textual.widgets import DataTable
from ui_support import (
    MODEL,
    UiHome,
    copy_home,
    notifications,
    run_app,
    screen_text,
    shared_home,
    shown_text,
    wait_for,
)

from appliance.access import create_key
from appliance.storage import Catalog
from tui import PANES, UiClient
from tui._connection import Connection
from tui._dialogs import ConfirmScreen


@pytest.fixture(scope="module")
def ui_home(tmp_path_factory: pytest.TempPathFactory) -> UiHome:
    return shared_home(tmp_path_factory)


def secured_copy(ui_home: UiHome, root: Path) -> tuple[UiHome, dict[str, str]]:
    """Copy the home, add a reader and an operator key, and require keys."""
    copy = copy_home(ui_home, root)
    with Catalog(copy.home) as catalog:
        tokens = {
            role: create_key(catalog, f"ui-{role}", role)[1]
            for role in ("reader", "operator")
        }
    with copy.config_path.open("a", encoding="utf-8") as config:
        config.write("\n[security]\nrequire_keys = true\n")
    return copy, tokens


async def top_line_text(pilot: Any) -> str:
    """Return the app's top line as shown, its wrapped rows joined by spaces."""
    text = await shown_text(pilot)
    line = pilot.app.query_one("#connection")
    return " ".join(row.strip() for row in text.splitlines()[: line.size.height])


def promote_version(target: int, outcome: str) -> Any:
    """Return a scenario that promotes `target` and waits for `outcome` shown."""

    async def scenario(app: Any, pilot: Any) -> None:
        await pilot.press("2")
        table = app.query_one("#versions", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2, "two versions")
        table.move_cursor(row=table.get_row_index(f"{MODEL}\t{target}"))
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "confirm")
        await pilot.press("y")
        await wait_for(
            pilot, lambda: any(outcome in n for n in notifications(app)), outcome
        )

    return scenario


def test_tui_with_keys_required(
    ui_home: UiHome, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("keys")
    copy, tokens = secured_copy(ui_home, root)
    daemon = start_daemon(copy.config_path, copy.home, root / "daemon.log")
    operator = UiClient(daemon.base_url, api_key=tokens["operator"])
    before = operator.served_models()[0]["version"]
    target = 1 if before != 1 else 2

    async def read_every_pane(app: Any, pilot: Any) -> None:
        for pane_type in PANES:
            await pilot.press(pane_type.KEY)
            shown = app.query_one(pane_type)
            await wait_for(
                pilot, lambda p=shown: p.fetched_at is not None, pane_type.TITLE
            )
        assert not any("401" in n or "403" in n for n in notifications(app))
        assert "Traceback" not in screen_text(app)

    async def rejected(app: Any, pilot: Any) -> None:
        await promote_version(target, "HTTP 403")(app, pilot)
        shown = " ".join(notifications(app))
        assert "the API key is valid, but its role lacks the permission" in shown
        assert "--api-key to a key with role 'operator' or higher" in shown
        assert "rejected the API key" not in shown

    async def without_key(app: Any, pilot: Any) -> None:
        await wait_for(
            pilot,
            lambda: (
                "HTTP 401" in screen_text(app)
                or any("HTTP 401" in n for n in notifications(app))
            ),
            "the 401 shown",
        )
        assert "APPLIANCE_API_KEY" in await shown_text(pilot) + " ".join(
            notifications(app)
        )
        top = await top_line_text(pilot)
        assert app.connection is Connection.KEY_REJECTED
        assert "connected, API key missing" in top
        assert "set APPLIANCE_API_KEY or pass --api-key" in top
        assert "the daemon requires an API key (HTTP 401)" in screen_text(app)

    async def unknown_key(app: Any, pilot: Any) -> None:
        await wait_for(
            pilot, lambda: app.connection is Connection.KEY_REJECTED, "key rejected"
        )
        top = await top_line_text(pilot)
        assert "connected, API key rejected" in top
        assert "set APPLIANCE_API_KEY or pass --api-key" in top

    try:
        run_app(daemon.base_url, read_every_pane, api_key=tokens["reader"])
        run_app(daemon.base_url, rejected, api_key=tokens["reader"])
        assert operator.served_models()[0]["version"] == before
        promoted = promote_version(target, f"now version {target}")
        run_app(daemon.base_url, promoted, api_key=tokens["operator"])
        assert operator.served_models()[0]["version"] == target
        run_app(daemon.base_url, without_key, size=(120, 30))
        run_app(daemon.base_url, unknown_key, size=(120, 30), api_key="no-such-key")
    finally:
        stop_daemon(daemon)
