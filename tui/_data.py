"""Dataset versions with their quality reports, and the live prediction log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import DataTable, Static

from appliance.disk_use import size_text
from tui._format import (
    NONE,
    number,
    padded,
    percent,
    short_id,
    short_time,
    timestamp,
)
from tui._pane import Pane, Unavailable, fill_table, optional, selected_key

PREDICTION_ROWS = 50
"""Newest predictions shown in the tail."""


class DatasetsPane(Pane):
    """Dataset versions and orphan folders; enter shows the quality report and
    quarantined rows of a version."""

    TITLE = "Datasets"
    TAB = "Data"
    KEY = "4"
    SUMMARY = (
        "dataset versions and row counts, orphan folders; enter: quality "
        "report, quarantine"
    )
    BINDINGS = [Binding("enter", "details", "Quality and quarantine")]

    DEFAULT_CSS = """
    DatasetsPane #datasets { height: 1fr; }
    DatasetsPane #orphans { max-height: 8; }
    DatasetsPane #details { height: 1fr; border-top: solid $primary; }
    """

    def compose_body(self) -> Iterator[Widget]:
        yield DataTable(id="datasets", cursor_type="row", zebra_stripes=True)
        yield Static("", id="orphans", classes="section", markup=False)
        with VerticalScroll(id="details"):
            yield Static(
                "Select a version and press enter for its quality report and "
                "quarantined rows.",
                id="report",
                classes="section",
                markup=False,
            )

    def fetch(self) -> dict[str, Any]:
        return {
            "versions": self.client.datasets(),
            "orphans": optional(self.client.orphans),
        }

    def show(self, data: dict[str, Any]) -> None:
        self._show_versions(data["versions"])
        self.query_one("#orphans", Static).update(orphans_text(data["orphans"]))

    def _show_versions(self, data: list[dict[str, Any]]) -> None:
        rows = [
            [
                version["dataset"],
                short_id(version["version"], 12),
                str(version["row_count"]),
                str((version.get("report") or {}).get("quarantined", NONE)),
                str(len(version.get("schema") or {})),
                short_time(version.get("created_at")),
                short_id(version.get("parent"), 12),
            ]
            for version in data
        ]
        keys = [f"{v['dataset']}\t{v['version']}" for v in data]
        columns = ["Dataset", "Version", "Rows", "Held", "Cols", "Created", "Parent"]
        fill_table(self.query_one(DataTable), columns, rows, keys)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_details()

    def action_details(self) -> None:
        key = selected_key(self.query_one(DataTable))
        if key is None or not self.data:
            return
        dataset, version = key.split("\t")
        record = next(
            v
            for v in self.data["versions"]
            if v["dataset"] == dataset and v["version"] == version
        )
        self.call_daemon(
            lambda: (
                self._completed(record),
                optional(self.client.quarantine, dataset, version),
            ),
            lambda found: self._show_report(*found),
        )

    def _completed(self, record: dict[str, Any]) -> dict[str, Any]:
        """Return `record`, or the daemon's copy with the full quality report
        when its report is still pending (a flush of the HTTP ingest buffer)."""
        quality = (record.get("report") or {}).get("quality") or {}
        if "pending" not in quality:
            return record
        found = optional(
            self.client.dataset_version, record["dataset"], record["version"]
        )
        return record if isinstance(found, Unavailable) else found

    def _show_report(self, record: dict[str, Any], held: Any) -> None:
        lines = [f"{record['dataset']}@{record['version']}", "", "Quality report:"]
        if "report" not in record:
            lines.append("  not available on this daemon")
        else:
            lines += quality_lines(record["report"], record.get("schema") or {})
        lines += ["", "Quarantined rows (newest 50):"]
        if isinstance(held, Unavailable):
            lines.append("  not available on this daemon")
        elif not held:
            lines.append("  none")
        else:
            lines += [
                f"  {row.get('source', '')}:{row.get('line', '')} "
                f"{row.get('column_name', '')}={row.get('value', '')!r}: "
                f"{row.get('reason', '')}"
                for row in held
            ]
        self.query_one("#report", Static).update("\n".join(lines))


ORPHAN_LINES = 5
"""Orphan folders listed by name; the count and total size cover them all."""


def orphans_text(listing: Any) -> str:
    """Format the orphan folders: a summary line, then one line per folder.

    >>> orphans_text({"path": "/h/orphans", "orphans": [{"dataset": "a",
    ...     "folder": "version=01", "bytes": 2048, "files": 1,
    ...     "modified_at": "2026-12-04T17:02:57+00:00"}]}).splitlines()[1]
    '  a/version=01  2.0 KiB  files 1  modified 12-04 17:02'
    """
    if isinstance(listing, Unavailable):
        return "Orphan folders: not available on this daemon"
    found = listing["orphans"]
    if not found:
        return "Orphan folders: none"
    total = sum(folder.get("bytes", 0) for folder in found)
    lines = [
        f"Orphan folders: {len(found)}, {size_text(total)} in {listing['path']}. "
        "No catalog version reads their rows: ingest the rows to keep, then run "
        "'appliance orphans remove'."
    ]
    lines += [
        f"  {folder['dataset']}/{folder['folder']}  "
        f"{size_text(folder.get('bytes', 0))}  files {folder.get('files', NONE)}  "
        f"modified {short_time(folder.get('modified_at'))}"
        for folder in found[:ORPHAN_LINES]
    ]
    if len(found) > ORPHAN_LINES:
        lines.append(
            f"  and {len(found) - ORPHAN_LINES} more: 'appliance orphans list' "
            "shows them all"
        )
    return "\n".join(lines)


def quality_lines(report: dict[str, Any], schema: dict[str, str]) -> list[str]:
    """Format an ingest report: counts, warnings, then one line per column.

    >>> quality_lines(
    ...     {"accepted": 9, "quarantined": 1, "quality": {"duplicate_rows": 0,
    ...      "columns": {"x": {"null_rate": 0.1, "distinct": 9, "min": 1.0,
    ...                        "max": 9.0, "outliers_iqr": 0}}}},
    ...     {"x": "DOUBLE"},
    ... )[1]
    '  x  DOUBLE  nulls 10.0%  distinct 9  min 1.000  max 9.000  outliers 0'
    """
    quality = report.get("quality") or {}
    lines = [
        f"  accepted {report.get('accepted', NONE)}, quarantined "
        f"{report.get('quarantined', NONE)}, duplicate rows "
        f"{quality.get('duplicate_rows', NONE)}"
    ]
    if "pending" in quality:
        lines.append(f"  pending: {quality['pending']}")
    for name, kind in schema.items():
        stats = (quality.get("columns") or {}).get(name, {})
        null_rate = stats.get("null_rate")
        lines.append(
            f"  {name}  {kind}  nulls {percent(null_rate)}  distinct "
            f"{stats.get('distinct', NONE)}  min {number(stats.get('min'))}  "
            f"max {number(stats.get('max'))}  outliers "
            f"{stats.get('outliers_iqr', NONE)}"
        )
    lines += [f"  warning: {warning}" for warning in report.get("warnings", [])]
    return lines


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
