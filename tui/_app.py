"""The operator's terminal UI: one tab per screen over the daemon's HTTP API.

The app polls the pane on show every `refresh_seconds`. The top line shows
whether the daemon responds, whether it accepts the API key, and whether the
address serves the appliance daemon at all. While the daemon does not respond,
every pane keeps its last data marked stale and the timer keeps retrying.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.widgets import Footer, Static, TabbedContent, TabPane

from tui._client import UiClient
from tui._connection import FAULTS, Connection, connection_after, top_line
from tui._data import DatasetsPane, PredictionsPane
from tui._dialogs import HelpScreen
from tui._monitoring import AlertsPane, DriftPane, JobsPane
from tui._overview import OverviewPane
from tui._pane import Pane
from tui._registry import ModelsPane, RunsPane

logger = logging.getLogger(__name__)

PANES: tuple[type[Pane], ...] = (
    OverviewPane,
    ModelsPane,
    RunsPane,
    DatasetsPane,
    DriftPane,
    AlertsPane,
    JobsPane,
    PredictionsPane,
)
"""Screens in tab order; each is shown by its `KEY`."""

DARK_THEME = "textual-dark"
LIGHT_THEME = "textual-light"
DEFAULT_REFRESH_SECONDS = 2.0


def _tab_id(pane: type[Pane]) -> str:
    return f"tab-{pane.TITLE.lower()}"


class ApplianceApp(App[None]):
    """Terminal UI of one appliance daemon.

    Args:
        client: Client of the daemon.
        refresh_seconds: Interval between two fetches of the pane on show.
        light: Start with the light theme.
    """

    TITLE = "edge-appliance"
    CSS = """
    #connection { height: 1; padding: 0 1; background: $panel; }
    #connection.down { background: $error; color: $text; text-style: bold; }
    #connection.key { height: auto; background: $warning; color: $text; }
    TabPane { padding: 0; }
    """
    BINDINGS = [
        *(
            Binding(pane.KEY, f"show_pane('{_tab_id(pane)}')", pane.TITLE, show=False)
            for pane in PANES
        ),
        Binding("question_mark,f1", "help", "Help"),
        Binding("ctrl+r,f5", "refresh", "Refresh", show=False),
        Binding("t", "toggle_theme", "Light/dark", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        client: UiClient,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        light: bool = False,
    ) -> None:
        super().__init__()
        self.client = client
        self.refresh_seconds = refresh_seconds
        self.connection = Connection.CONNECTING
        self.down_since: float | None = None
        """When the daemon stopped responding; None while it responds."""
        self.last_error = ""
        self.theme = LIGHT_THEME if light else DARK_THEME

    def compose(self) -> ComposeResult:
        yield Static(self._connection_text(), id="connection", markup=False)
        with TabbedContent(id="tabs"):
            for pane in PANES:
                with TabPane(f"{pane.KEY} {pane.TAB or pane.TITLE}", id=_tab_id(pane)):
                    yield pane(self.client, id=f"pane-{pane.TITLE.lower()}")
        yield Footer()

    def on_mount(self) -> None:
        # Kept because `query_one` on the app searches the screen on top, which
        # is a dialog while one is open.
        self._tabs = self.query_one(TabbedContent)
        self._connection = self.query_one("#connection", Static)
        self.set_interval(self.refresh_seconds, self.refresh_active)
        self.refresh_active()

    # --- connection state ------------------------------------------------------------

    def connection_ok(self) -> None:
        """Record that the daemon responded."""
        if self.down_since is not None:
            logger.info("daemon responds again url=%s", self.client.base_url)
        self._set_connection(Connection.CONNECTED, "")

    def connection_failed(self, exc: BaseException) -> None:
        """Record what the failed call `exc` shows about the daemon."""
        state = connection_after(exc)
        if state is None:
            return
        if state is Connection.CONNECTED:
            self.connection_ok()
            return
        if state is Connection.DOWN and self.down_since is None:
            self.down_since = time.time()
        if state is not self.connection:
            logger.warning(
                "daemon connection state=%s url=%s error=%s",
                state.value,
                self.client.base_url,
                exc,
            )
        self._set_connection(state, str(exc))

    def _set_connection(self, state: Connection, error: str) -> None:
        if state is not Connection.DOWN:
            self.down_since = None
        self.connection = state
        self.last_error = error
        self._show_connection()

    def _connection_text(self) -> str:
        return top_line(
            self.connection,
            self.client.base_url,
            self.down_since,
            self.refresh_seconds,
            self.client.key_sent,
        )

    def _show_connection(self) -> None:
        line = self._connection
        line.update(self._connection_text())
        line.set_class(self.connection in FAULTS, "down")
        line.set_class(self.connection is Connection.KEY_REJECTED, "key")
        line.tooltip = self.last_error or None

    # --- panes ---------------------------------------------------------------------

    def active_pane(self) -> Pane:
        """Return the pane of the tab on show."""
        tabs = self._tabs
        return tabs.get_pane(tabs.active).query_one(Pane)

    def refresh_active(self) -> None:
        """Fetch the data of the pane on show, also while a dialog is open."""
        if not self._tabs.is_attached:
            return
        try:
            pane = self.active_pane()
        except NoMatches:
            # The timer can fire while a tab's pane is still mounting or already
            # removed at exit; the next tick refreshes it.
            logger.debug("refresh skipped: no pane mounted yet")
            return
        pane.reload()

    def on_tabbed_content_tab_activated(
        self, event: TabbedContent.TabActivated
    ) -> None:
        self.refresh_active()

    def action_show_pane(self, tab_id: str) -> None:
        try:
            self._tabs.active = tab_id
            pane = self._tabs.get_pane(tab_id).query_one(Pane)
        except NoMatches:
            # A key pressed while the tabs are still mounting; the tab shows
            # once they are.
            logger.debug("tab not mounted yet tab=%s", tab_id)
            return
        tables = pane.query("DataTable")
        if tables:
            tables.first().focus()

    def action_refresh(self) -> None:
        self.refresh_active()

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT_THEME if self.theme == DARK_THEME else DARK_THEME

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(help_markdown()))


def help_markdown() -> str:
    """Return the help text: every screen with its key, then each screen's keys."""
    lines = ["# Screens", "", "| Key | Screen | Shows |", "| --- | --- | --- |"]
    for pane in PANES:
        lines.append(f"| {pane.KEY} | {pane.TITLE} | {pane.SUMMARY} |")
    lines += [
        "",
        "# Keys on every screen",
        "",
        "| Key | Does |",
        "| --- | --- |",
        "| 1-8 | show a screen (or click its tab) |",
        "| ? or F1 | this help |",
        "| ctrl+r or F5 | refresh now |",
        "| t | switch between the light and the dark theme |",
        "| tab | move between tables |",
        "| q | quit |",
    ]
    for pane in PANES:
        bindings: list[Any] = [b for b in pane.BINDINGS if isinstance(b, Binding)]
        if not bindings:
            continue
        lines += ["", f"# {pane.TITLE}", "", "| Key | Does |", "| --- | --- |"]
        for binding in bindings:
            keys = binding.key.replace(",", " or ")
            lines.append(f"| {keys} | {binding.description} |")
    lines += [
        "",
        (
            "When the daemon does not respond, the top line turns red, every "
            "screen keeps its last data marked STALE, and the app retries on its own."
        ),
    ]
    return "\n".join(lines)
