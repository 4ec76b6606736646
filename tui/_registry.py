"""Model versions with their aliases, promotion and rollback, and training runs."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from typing import Any

from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable, Static

from tui._dialogs import ConfirmScreen, DocumentScreen, TableScreen
from tui._format import (
    NONE,
    flatten,
    metrics_line,
    number,
    short_id,
    short_time,
)
from tui._pane import Pane, Unavailable, fill_table, optional, selected_key


def _actor() -> str:
    """Return the name recorded as who changed an alias: the operator's login."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class ModelsPane(Pane):
    """Registered versions of every model, with aliases, metrics and parity."""

    TITLE = "Models"
    KEY = "2"
    SUMMARY = "versions with aliases, metrics, parity and created time"
    BINDINGS = [
        Binding("p", "promote", "Promote"),
        Binding("b", "rollback", "Roll back"),
        Binding("c,enter", "card", "Model card"),
    ]

    def compose_body(self) -> Iterator[Widget]:
        yield Static("", id="aliases-note", classes="section")
        yield DataTable(id="versions", cursor_type="row", zebra_stripes=True)

    def fetch(self) -> dict[str, Any]:
        registry = optional(self.client.registry_versions)
        if isinstance(registry, Unavailable):
            versions = [
                {**record, "aliases": []} for record in self.client.model_versions()
            ]
        else:
            versions = registry
        return {
            "versions": versions,
            "registry": not isinstance(registry, Unavailable),
            "served": {m["name"]: m["version"] for m in self.client.served_models()},
            "runs": self.client.runs(),
        }

    def show(self, data: dict[str, Any]) -> None:
        self.query_one("#aliases-note", Static).update(
            ""
            if data["registry"]
            else "Aliases, promote and rollback: not available on this daemon"
        )
        metrics = {
            (run["model"], run["model_version"]): run.get("metrics")
            for run in data["runs"]
        }
        rows, keys = [], []
        for version in data["versions"]:
            name, number_ = version["model"], version["version"]
            names = list(version.get("aliases") or [])
            if data["served"].get(name) == number_:
                names.append("serving")
            rows.append(
                [
                    name,
                    str(number_),
                    ",".join(names) or NONE,
                    metrics_line(metrics.get((name, number_)), 2),
                    number(version.get("parity"), 6),
                    short_time(version.get("created_at")),
                ]
            )
            keys.append(f"{name}\t{number_}")
        columns = ["Model", "Ver", "Aliases", "Metrics", "Parity", "Created"]
        fill_table(self.query_one(DataTable), columns, rows, keys)

    def _selected(self) -> tuple[str, int] | None:
        key = selected_key(self.query_one(DataTable))
        if key is None:
            self.app.notify("No model version selected.", severity="warning")
            return None
        name, version = key.split("\t")
        return name, int(version)

    def _champion(self, name: str) -> int | None:
        """Return the champion of `name`, else the version the daemon serves."""
        if not self.data:
            return None
        for version in self.data["versions"]:
            if version["model"] == name and "champion" in version["aliases"]:
                return int(version["version"])
        served = self.data["served"].get(name)
        return None if served is None else int(served)

    def action_promote(self) -> None:
        selected = self._selected()
        if selected is None:
            return
        name, version = selected
        current = self._champion(name)
        if current == version:
            self.app.notify(f"{name} version {version} is already the champion.")
            return
        detail = (
            f"The champion of {name} moves from version {current or NONE} to "
            f"version {version}. The daemon then serves every prediction request "
            f"for {name} with version {version}; requests already running finish "
            f"on the old one. Roll back (b) returns to version {current or NONE}."
        )

        def confirmed(answer: bool | None) -> None:
            if not answer:
                return
            self.call_daemon(
                lambda: self.client.promote(name, version, _actor()),
                lambda event: self.app.notify(
                    f"{name}: champion is now version {event.get('version', version)}."
                ),
                busy=f"Promoting {name} version {version}…",
            )

        self.app.push_screen(
            ConfirmScreen(f"Promote {name} version {version}?", detail), confirmed
        )

    def action_rollback(self) -> None:
        selected = self._selected()
        if selected is None:
            return
        name, _ = selected
        current = self._champion(name)
        detail = (
            f"The champion of {name} moves from version {current or NONE} back to "
            "the version it had before, as recorded in the alias history. The "
            f"daemon then serves that version for every request to {name}."
        )

        def confirmed(answer: bool | None) -> None:
            if not answer:
                return
            self.call_daemon(
                lambda: self.client.rollback(name, _actor()),
                lambda event: self.app.notify(
                    f"{name}: champion rolled back to version "
                    f"{event.get('version', NONE)}."
                ),
                busy=f"Rolling back {name}…",
            )

        self.app.push_screen(
            ConfirmScreen(f"Roll back the champion of {name}?", detail), confirmed
        )

    def action_card(self) -> None:
        selected = self._selected()
        if selected is None:
            return
        name, version = selected
        self.call_daemon(
            lambda: self.client.model_card(name, version),
            lambda markdown: self.app.push_screen(
                DocumentScreen(f"Model card: {name} version {version}", markdown)
            ),
        )


class RunsPane(Pane):
    """Training runs, filtered by model, two of them compared side by side."""

    TITLE = "Runs"
    KEY = "3"
    SUMMARY = "training runs; filter by model, compare two side by side"
    BINDINGS = [
        Binding("f", "filter", "Filter model"),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model: str | None = None
        """Model the list is filtered to; None for every model."""
        self.marked: list[str] = []
        """Run ids marked for comparison, at most two."""

    def compose_body(self) -> Iterator[Widget]:
        yield Static("", id="filter", classes="section")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)

    def fetch(self) -> dict[str, Any]:
        runs = self.client.runs()
        return {"runs": runs, "models": sorted({run["model"] for run in runs})}

    def show(self, data: dict[str, Any]) -> None:
        runs = [r for r in data["runs"] if self.model in (None, r["model"])]
        self.query_one("#filter", Static).update(
            f"Model: [b]{self.model or 'all'}[/] (f: next model) · "
            f"marked: {len(self.marked)}/2 (space: mark, c: compare)"
        )
        rows = [
            [
                ("● " if run["run_id"] in self.marked else "  ")
                + short_id(run["run_id"]),
                run["model"],
                run["status"],
                str(run.get("model_version") or NONE),
                metrics_line(run.get("metrics"), 2),
                short_time(run.get("started_at")),
            ]
            for run in runs
        ]
        columns = ["Run", "Model", "Status", "Ver", "Metrics", "Started"]
        keys = [run["run_id"] for run in runs]
        fill_table(self.query_one(DataTable), columns, rows, keys)

    def action_filter(self) -> None:
        models = self.data["models"] if self.data else []
        choices: list[str | None] = [None, *models]
        index = choices.index(self.model) if self.model in choices else 0
        self.model = choices[(index + 1) % len(choices)]
        if self.data is not None:
            self.show(self.data)

    def action_mark(self) -> None:
        run_id = selected_key(self.query_one(DataTable))
        if run_id is None:
            return
        if run_id in self.marked:
            self.marked.remove(run_id)
        else:
            self.marked = [*self.marked, run_id][-2:]
        if self.data is not None:
            self.show(self.data)

    def action_compare(self) -> None:
        picked = list(self.marked)
        current = selected_key(self.query_one(DataTable))
        if len(picked) < 2 and current and current not in picked:
            picked.append(current)
        if len(picked) != 2:
            self.app.notify(
                "Mark two runs with space, or mark one and move the cursor to "
                "the other, then press c.",
                severity="warning",
            )
            return
        first, second = picked
        self.call_daemon(
            lambda: (self.client.run(first), self.client.run(second)),
            lambda pair: self.app.push_screen(_compare_screen(*pair)),
        )


def _compare_screen(first: dict[str, Any], second: dict[str, Any]) -> TableScreen:
    left, right = flatten(first), flatten(second)
    differ, same = [], []
    for key in [*left, *(k for k in right if k not in left)]:
        a, b = _cell(left.get(key)), _cell(right.get(key))
        if a != b:
            differ.append(["≠", key, a, b])
        else:
            same.append(["", key, a, b])
    columns = ["", "Field", short_id(first["run_id"]), short_id(second["run_id"])]
    return TableScreen(
        "Runs side by side",
        columns,
        differ + same,
        note=f"{len(differ)} fields differ (≠, listed first)",
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return number(value, 4)
    if isinstance(value, list):
        return str(value)
    return NONE if value is None else str(value)
