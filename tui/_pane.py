"""The base of every screen: loads its data off the UI thread, keeps it when stale.

A pane fetches everything it shows in one worker thread through `UiClient`,
then renders on the UI thread. When a fetch fails the pane keeps what it
showed and marks it stale (daemon down) or shows the daemon's message (any
other error). The app calls `reload` on its timer, so a stopped daemon is
retried without the operator doing anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import DataTable, Static
from textual.widgets.data_table import CellDoesNotExist

from appliance.errors import DaemonError
from tui._client import DaemonUnreachableError, EndpointMissingError, UiClient

if TYPE_CHECKING:
    from tui._app import ApplianceApp

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unavailable:
    """Stands for data of an endpoint this daemon does not have."""

    message: str

    def __str__(self) -> str:
        return self.message


def optional(call: Callable[..., Any], *args: Any) -> Any:
    """Return ``call(*args)``, or `Unavailable` when the daemon lacks the route."""
    try:
        return call(*args)
    except EndpointMissingError as exc:
        return Unavailable(str(exc))


def failure_text(exc: BaseException) -> str:
    """Return the message shown for a failed call: the daemon's own for its errors.

    Any other exception is a fault of the UI; it is logged with its traceback
    and shown as one line.
    """
    if isinstance(exc, DaemonError):
        return str(exc)
    return (
        f"the terminal UI failed to show this data ({type(exc).__name__}: {exc}); "
        "run with --log-file to record the details and report it"
    )


class Pane(Vertical):
    """One screen of the app, shown in a tab and refreshed by the app's timer.

    Subclasses set `TITLE` and `KEY`, compose their widgets in `compose_body`,
    fetch in `fetch` (worker thread, may block) and render in `show` (UI
    thread).
    """

    TITLE: ClassVar[str] = ""
    TAB: ClassVar[str] = ""
    """Label of the tab when shorter than `TITLE`, to fit 80 columns."""
    KEY: ClassVar[str] = ""
    """Key that shows this pane."""
    SUMMARY: ClassVar[str] = ""
    """One line in the help screen on what the pane shows."""

    DEFAULT_CSS = """
    Pane { height: 1fr; }
    Pane > .notice { height: auto; display: none; padding: 0 1; }
    Pane > .notice.stale { display: block; background: $warning-muted; }
    Pane > .notice.failed { display: block; background: $error-muted; }
    Pane DataTable { height: 1fr; }
    Pane .section { height: auto; padding: 0 1; }
    """

    def __init__(self, client: UiClient, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client
        self.data: Any = None
        self.fetched_at: float | None = None
        """Wall-clock time of the last successful fetch."""
        self.stale = False
        self._loading = False

    @property
    def appliance(self) -> ApplianceApp:
        """The app, typed."""
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static("", classes="notice")
        yield from self.compose_body()

    def compose_body(self) -> Iterator[Widget]:
        """Yield the widgets of the pane."""
        return iter(())

    def fetch(self) -> Any:
        """Return the data of the pane; runs in a worker thread."""
        return None

    def show(self, data: Any) -> None:
        """Render `data` returned by `fetch`."""

    # --- loading -------------------------------------------------------------------

    def reload(self) -> None:
        """Fetch again unless a fetch is already running."""
        if self._loading or not self.is_mounted:
            return
        self._loading = True
        self.run_worker(self._fetch_in_thread, thread=True, exit_on_error=False)

    def _fetch_in_thread(self) -> None:
        try:
            data = self.fetch()
        except Exception as exc:
            if not isinstance(exc, DaemonError):
                logger.exception("pane fetch failed pane=%s", self.id)
            self.app.call_from_thread(self._failed, exc)
            return
        self.app.call_from_thread(self._loaded, data)

    def _loaded(self, data: Any) -> None:
        self._loading = False
        self.data = data
        self.fetched_at = time.time()
        self.stale = False
        try:
            self.show(data)
        except Exception as exc:
            logger.exception("pane render failed pane=%s", self.id)
            self._set_notice(failure_text(exc), "failed")
            return
        self._set_notice("", None)
        self.appliance.connection_ok()

    def _failed(self, exc: BaseException) -> None:
        self._loading = False
        if isinstance(exc, DaemonUnreachableError):
            self.stale = self.data is not None
            since = self.fetched_at
            when = time.strftime("%H:%M:%S", time.localtime(since)) if since else None
            shown = f"data from {when}" if when else "no data yet"
            self._set_notice(
                f"STALE: {shown}; no response from the daemon, retrying", "stale"
            )
            self.appliance.connection_failed(exc)
            return
        self._set_notice(failure_text(exc), "failed")
        self.appliance.connection_failed(exc)

    def _set_notice(self, text: str, kind: str | None) -> None:
        notice = self.query_one(".notice", Static)
        notice.update(text)
        notice.set_class(kind == "stale", "stale")
        notice.set_class(kind == "failed", "failed")

    # --- actions -------------------------------------------------------------------

    def call_daemon(
        self,
        call: Callable[[], Any],
        done: Callable[[Any], object],
        busy: str | None = None,
    ) -> None:
        """Run a command on the daemon in a worker thread, then `done(result)`.

        A failure is shown as a notification with the daemon's message.
        """
        if busy:
            self.app.notify(busy, timeout=3)

        def run() -> None:
            try:
                result = call()
            except Exception as exc:
                if not isinstance(exc, DaemonError):
                    logger.exception("daemon command failed pane=%s", self.id)
                self.app.call_from_thread(self._command_failed, exc)
                return
            self.app.call_from_thread(self._command_done, done, result)

        self.run_worker(run, thread=True, exit_on_error=False)

    def _command_failed(self, exc: BaseException) -> None:
        self.app.notify(failure_text(exc), severity="error", timeout=10)

    def _command_done(self, done: Callable[[Any], object], result: Any) -> None:
        try:
            done(result)
        except Exception as exc:
            logger.exception("command result not shown pane=%s", self.id)
            self.app.notify(failure_text(exc), severity="error", timeout=10)
        self.reload()


def fill_table(
    table: DataTable[Any], columns: list[str], rows: list[list[Any]], keys: list[str]
) -> None:
    """Replace the rows of `table`, keeping the cursor on the same key if it stays.

    Column widths are computed here from the labels and cells. Auto-width
    columns are measured only when the table next goes idle, which may wait for
    the next key press, and until then they show at the width of their labels.
    """
    selected = selected_key(table)
    widths = [
        max([cell_len(label), *(cell_len(str(row[i])) for row in rows)])
        for i, label in enumerate(columns)
    ]
    shown = [(str(c.label), c.width) for c in table.columns.values()]
    if shown != list(zip(columns, widths, strict=True)):
        table.clear(columns=True)
        for label, width in zip(columns, widths, strict=True):
            table.add_column(label, width=width)
    else:
        table.clear()
    for key, row in zip(keys, rows, strict=True):
        table.add_row(*row, key=key)
    if selected in keys:
        table.move_cursor(row=keys.index(selected))


def selected_key(table: DataTable[Any]) -> str | None:
    """Return the key of the row under the cursor, or None for an empty table."""
    if table.row_count == 0:
        return None
    try:
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
    except CellDoesNotExist:
        return None
    return key.value
