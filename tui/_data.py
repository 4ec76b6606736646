"""Dataset versions with their quality reports, and the live prediction log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import DataTable, Static

from tui._format import (
    NONE,
    flatten,
    number,
    padded,
    short_id,
    short_time,
    timestamp,
)
from tui._pane import Pane, Unavailable, fill_table, optional, selected_key

PREDICTION_ROWS = 50
"""Newest predictions shown in the tail."""


class DatasetsPane(Pane):
    """Dataset versions; enter shows the quality report and quarantined rows."""

    TITLE = "Datasets"
    TAB = "Data"
    KEY = "4"
    SUMMARY = "dataset versions and row counts; enter: quality report, quarantine"
    BINDINGS = [Binding("enter", "details", "Quality and quarantine")]

    DEFAULT_CSS = """
    DatasetsPane #datasets { height: 1fr; }
    DatasetsPane #details { height: 1fr; border-top: solid $primary; }
    """

    def compose_body(self) -> Iterator[Widget]:
        yield DataTable(id="datasets", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="details"):
            yield Static(
                "Select a version and press enter for its quality report and "
                "quarantined rows.",
                id="report",
                classes="section",
                markup=False,
            )

    def fetch(self) -> list[dict[str, Any]]:
        return self.client.datasets()

    def show(self, data: list[dict[str, Any]]) -> None:
        rows = [
            [
                version["dataset"],
                short_id(version["version"], 12),
                str(version["row_count"]),
                str(len(version.get("schema") or {})),
                short_time(version.get("created_at")),
                short_id(version.get("parent"), 12),
            ]
            for version in data
        ]
        keys = [f"{v['dataset']}\t{v['version']}" for v in data]
        columns = ["Dataset", "Version", "Rows", "Cols", "Created", "Parent"]
        fill_table(self.query_one(DataTable), columns, rows, keys)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_details()

    def action_details(self) -> None:
        key = selected_key(self.query_one(DataTable))
        if key is None:
            return
        dataset, version = key.split("\t")
        self.call_daemon(
            lambda: (
                optional(self.client.dataset_quality, dataset, version),
                optional(self.client.quarantine, dataset, version),
            ),
            lambda pair: self._show_report(dataset, version, *pair),
        )

    def _show_report(self, dataset: str, version: str, quality: Any, held: Any) -> None:
        lines = [f"{dataset}@{short_id(version, 12)}", "", "Quality report:"]
        if isinstance(quality, Unavailable):
            lines.append("  not available on this daemon")
        else:
            for key, value in flatten(quality).items():
                lines.append(f"  {key}: {number(value, 4)}")
        lines += ["", "Quarantined rows:"]
        if isinstance(held, Unavailable):
            lines.append("  not available on this daemon")
        else:
            rows = held.get("rows") or []
            lines.append(f"  {held.get('count', len(rows))} rows")
            lines += [f"  {json.dumps(row, default=str)}" for row in rows]
        self.query_one("#report", Static).update("\n".join(lines))


class PredictionsPane(Pane):
    """The newest logged predictions of one model, refreshed live."""

    TITLE = "Predictions"
    TAB = "Tail"
    KEY = "8"
    SUMMARY = "live tail of the prediction log for one model"
    BINDINGS = [Binding("f", "next_model", "Next model")]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model: str | None = None
        self.models: list[str] = []

    def compose_body(self) -> Iterator[Widget]:
        yield Static("", id="model", classes="section")
        yield DataTable(id="predictions", cursor_type="row", zebra_stripes=True)

    def fetch(self) -> dict[str, Any]:
        models = [m["name"] for m in self.client.served_models()]
        model = self.model if self.model in models else (models or [None])[0]
        rows = self.client.predictions(model, PREDICTION_ROWS) if model else []
        return {"models": models, "model": model, "rows": rows}

    def show(self, data: dict[str, Any]) -> None:
        self.models = data["models"]
        self.model = data["model"]
        label = self.model or "no model is served"
        self.query_one("#model", Static).update(
            f"Model: [b]{label}[/] (f: next model) · newest {PREDICTION_ROWS}, "
            "newest first"
        )
        rows = [
            [
                timestamp(row.get("predicted_at")),
                str(row.get("version", NONE)),
                f"{short_id(row.get('request_id'))}/{row.get('row_index', NONE)}",
                _output(row.get("output")),
                padded(row.get("latency_ms"), 8, 2),
            ]
            for row in data["rows"]
        ]
        keys = [str(row.get("log_id", i)) for i, row in enumerate(data["rows"])]
        columns = ["Time", "Ver", "Request/row", "Output", "ms"]
        fill_table(self.query_one(DataTable), columns, rows, keys)

    def action_next_model(self) -> None:
        if not self.models:
            return
        index = self.models.index(self.model) if self.model in self.models else -1
        self.model = self.models[(index + 1) % len(self.models)]
        self.reload()


def _output(text: Any) -> str:
    """Return the label or value of a logged output, without probabilities."""
    try:
        output = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return str(text)
    if isinstance(output, dict):
        for key in ("label", "value", "prediction"):
            if key in output:
                return str(output[key])
    return str(output)
