"""Drift charts, detections and live performance; alerts; scheduled jobs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.markup import escape
from textual.notifications import SeverityLevel
from textual.widget import Widget
from textual.widgets import DataTable, Sparkline, Static

from tui._dialogs import ConfirmScreen
from tui._drift_check import scheduled_check_text
from tui._format import NONE, metrics_line, number, timestamp
from tui._pane import Pane, Unavailable, fill_table, optional, selected_key

CHART_POINTS = 60
"""Drift checks drawn per feature, the newest at the right."""


def feature_series(scores: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Group drift scores by feature as PSI series, oldest first.

    Scores arrive newest first; a check without a PSI counts as 0.

    >>> feature_series([
    ...     {"feature": "a", "psi": 0.3, "checked_at": "2"},
    ...     {"feature": "a", "psi": 0.1, "checked_at": "1"},
    ... ])
    {'a': [0.1, 0.3]}
    """
    series: dict[str, list[float]] = {}
    for score in sorted(scores, key=lambda s: str(s.get("checked_at"))):
        value = score.get("psi")
        series.setdefault(score["feature"], []).append(float(value or 0.0))
    return {name: values[-CHART_POINTS:] for name, values in sorted(series.items())}


class DriftPane(Pane):
    """Per-feature drift over time, the scheduled check, detections and live
    performance of one model."""

    TITLE = "Drift"
    KEY = "5"
    SUMMARY = (
        "per-feature drift (PSI) over time, the last scheduled drift check and "
        "its failures, detections of the streaming detectors, live performance "
        "against labels"
    )
    BINDINGS = [Binding("f", "next_model", "Next model")]

    DEFAULT_CSS = """
    DriftPane #charts { height: 1fr; }
    DriftPane .chart { height: 1; }
    DriftPane .chart .name { width: 18; }
    DriftPane .chart Sparkline { width: 1fr; }
    DriftPane .chart .value { width: 16; padding-left: 1; }
    DriftPane #detectors { height: auto; max-height: 7; border-top: solid $primary; }
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model: str | None = None
        self.models: list[str] = []

    def compose_body(self) -> Iterator[Widget]:
        yield Static("", id="model", classes="section")
        yield Static("", id="check", classes="section")
        yield Static("", id="performance", classes="section")
        yield VerticalScroll(id="charts")
        yield DataTable(id="detectors", cursor_type="row")

    def fetch(self) -> dict[str, Any]:
        models = [m["name"] for m in self.client.served_models()]
        model = self.model if self.model in models else (models or [None])[0]
        report: Any = None
        if model:
            report = optional(self.client.drift, model)
            if not isinstance(report, Unavailable):
                report["scores"] = optional(self.client.drift_scores, model)
        return {"models": models, "model": model, "report": report}

    def show(self, data: dict[str, Any]) -> None:
        self.models, self.model = data["models"], data["model"]
        report = data["report"]
        self.query_one("#model", Static).update(
            f"Model: [b]{escape(self.model or 'no model is served')}[/] (f: next model)"
        )
        check = self.query_one("#check", Static)
        performance = self.query_one("#performance", Static)
        charts = self.query_one("#charts", VerticalScroll)
        detectors = self.query_one("#detectors", DataTable)
        if not isinstance(report, dict):
            check.update("")
            text = str(report) if isinstance(report, Unavailable) else ""
            performance.update(
                "Drift and live performance: not available on this daemon"
                if text
                else ""
            )
            charts.remove_children()
            fill_table(detectors, ["Detector"], [], [])
            return
        latest = report.get("latest") or [{}]
        check.update(
            scheduled_check_text(
                str(self.model),
                report.get("scheduled_check"),
                latest[0].get("checked_at"),
            )
        )
        performance.update(_performance_text(report.get("stream")))
        scores: Any = report.get("scores")
        if isinstance(scores, Unavailable):
            # Without the chart route, draw the newest check alone.
            scores = report.get("latest") or []
        self._show_charts(charts, feature_series(scores))
        self._show_detectors(detectors, report.get("events") or [])

    def _show_charts(
        self, charts: VerticalScroll, series: dict[str, list[float]]
    ) -> None:
        charts.remove_children()
        if not series:
            charts.mount(Static("No drift check has run yet.", classes="section"))
            return
        for name, values in series.items():
            charts.mount(
                Horizontal(
                    Static(name[:17], classes="name", markup=False),
                    Sparkline(values, summary_function=max),
                    Static(f"PSI {number(values[-1], 3)}", classes="value"),
                    classes="chart",
                )
            )

    def _show_detectors(
        self, table: DataTable[Any], events: list[dict[str, Any]]
    ) -> None:
        rows = [
            [
                str(event.get("subject", NONE)),
                str(event.get("kind", NONE)),
                str(event.get("cause", NONE)),
                str(event.get("position", NONE)),
                timestamp(event.get("detected_at")),
            ]
            for event in events
        ]
        columns = ["Detected on", "Kind", "Cause", "Row", "At"]
        fill_table(table, columns, rows, [f"{i}" for i in range(len(rows))])
        table.border_title = f"Detections of the streaming detectors ({len(rows)})"

    def action_next_model(self) -> None:
        if not self.models:
            return
        index = self.models.index(self.model) if self.model in self.models else -1
        self.model = self.models[(index + 1) % len(self.models)]
        self.reload()


def _performance_text(stream: dict[str, Any] | None) -> str:
    if not stream or stream.get("version") is None:
        return "Streaming detectors: no prediction seen since the daemon started"
    live = stream.get("live") or {}
    return (
        f"Streaming detectors on version {stream['version']}: "
        f"{stream.get('rows', 0)} rows, {stream.get('labels', 0)} labels\n"
        f"Live performance: {escape(metrics_line(live, 3))}"
    )


class AlertsPane(Pane):
    """Alerts raised by monitoring; acknowledge or resolve the one under the
    cursor."""

    TITLE = "Alerts"
    KEY = "6"
    SUMMARY = "alerts, open or all; acknowledge or resolve one"
    BINDINGS = [
        Binding("a", "acknowledge", "Acknowledge"),
        Binding("r", "resolve", "Resolve"),
        Binding("o", "toggle_open", "Open/all"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.only_open = True

    def compose_body(self) -> Iterator[Widget]:
        yield Static("", id="scope", classes="section")
        yield DataTable(id="alerts", cursor_type="row", zebra_stripes=True)

    def fetch(self) -> Any:
        return optional(self.client.alerts, "open" if self.only_open else None)

    def show(self, data: Any) -> None:
        scope = "open" if self.only_open else "all"
        self.query_one("#scope", Static).update(
            f"Showing [b]{scope}[/] alerts (o: open/all, a: acknowledge, r: resolve)"
        )
        if isinstance(data, Unavailable):
            self.query_one("#scope", Static).update(
                "Alerts: not available on this daemon"
            )
            data = []
        rows = [
            [
                str(alert["id"]),
                str(alert.get("severity", NONE)),
                str(alert.get("status", NONE)),
                str(alert.get("model", NONE)),
                f"{alert.get('kind', '')} {alert.get('subject', '')}".strip(),
                str(alert.get("message", "")),
                str(alert.get("count", NONE)),
                timestamp(alert.get("opened_at")),
            ]
            for alert in data
        ]
        columns = [
            "Id",
            "Severity",
            "Status",
            "Model",
            "What",
            "Message",
            "×",
            "Opened",
        ]
        keys = [str(alert["id"]) for alert in data]
        fill_table(self.query_one(DataTable), columns, rows, keys)

    def action_toggle_open(self) -> None:
        self.only_open = not self.only_open
        self.reload()

    def action_acknowledge(self) -> None:
        key = selected_key(self.query_one(DataTable))
        if key is None:
            self.app.notify("No alert selected.", severity="warning")
            return
        self.call_daemon(
            lambda: self.client.acknowledge(int(key)),
            lambda alert: self.app.notify(
                f"Alert {key} acknowledged; a repeat opens a new alert."
            ),
        )

    def action_resolve(self) -> None:
        key = selected_key(self.query_one(DataTable))
        if key is None:
            self.app.notify("No alert selected.", severity="warning")
            return
        self.call_daemon(
            lambda: self.client.resolve(int(key)),
            lambda alert: self.app.notify(f"Alert {key} resolved."),
        )


class JobsPane(Pane):
    """Scheduled jobs with their next and last run; retrain a model now."""

    TITLE = "Jobs"
    KEY = "7"
    SUMMARY = "scheduled jobs with next and last run and outcome; retrain a model now"
    BINDINGS = [Binding("t", "retrain", "Retrain now")]

    DEFAULT_CSS = """
    JobsPane #jobs { height: 1fr; }
    JobsPane #targets { height: 1fr; }
    """

    def compose_body(self) -> Iterator[Widget]:
        jobs: DataTable[Any] = DataTable(id="jobs", cursor_type="row")
        jobs.border_title = "Scheduled jobs"
        yield jobs
        yield Static("Models (t: retrain the selected model now)", classes="section")
        yield DataTable(id="targets", cursor_type="row")

    def fetch(self) -> dict[str, Any]:
        return {"jobs": self.client.jobs(), "models": self.client.served_models()}

    def show(self, data: dict[str, Any]) -> None:
        rows = [
            [
                job["id"],
                timestamp(job.get("next_run_at")),
                timestamp(job.get("last_run_at")),
                str(job.get("last_outcome") or NONE),
                str(job.get("trigger", NONE)),
            ]
            for job in data["jobs"]
        ]
        columns = ["Job", "Next run", "Last run", "Outcome", "Trigger"]
        fill_table(
            self.query_one("#jobs", DataTable), columns, rows, [r[0] for r in rows]
        )
        models = [[m["name"], str(m["version"]), m["task"]] for m in data["models"]]
        fill_table(
            self.query_one("#targets", DataTable),
            ["Model", "Serving", "Task"],
            models,
            [m[0] for m in models],
        )

    def action_retrain(self) -> None:
        targets = self.query_one("#targets", DataTable)
        name = selected_key(targets)
        if name is None:
            self.app.notify(
                "No model selected in the models table.", severity="warning"
            )
            return
        detail = (
            f"The daemon trains a challenger of {name} now on the latest data, "
            "scores it against the served champion on the same recent holdout and "
            "serves it only when it is better by the policy's margin. Prediction "
            "requests keep being served meanwhile."
        )

        def confirmed(answer: bool | None) -> None:
            if not answer:
                return
            self.call_daemon(
                lambda: self.client.retrain(name),
                lambda record: self._show_retrain(name, record),
                busy=f"Retraining {name}; this takes as long as training…",
            )

        self.app.push_screen(ConfirmScreen(f"Retrain {name} now?", detail), confirmed)

    def _show_retrain(self, name: str, record: dict[str, Any]) -> None:
        severity = retrain_severity(record)
        timeout = 10 if severity == "information" else 30
        self.app.notify(
            retrain_message(name, record), severity=severity, timeout=timeout
        )


RETRAIN_SEVERITIES: dict[str, SeverityLevel] = {
    "failed": "error",
    "interrupted": "error",
    "skipped": "warning",
    "running": "warning",
}
"""Notification severity of a retraining outcome; the others are information.

A rejected challenger is a run that worked: the champion stays served."""


def retrain_severity(record: dict[str, Any]) -> SeverityLevel:
    """Return the severity of the notification of a finished retraining run."""
    return RETRAIN_SEVERITIES.get(str(record.get("outcome")), "information")


def retrain_message(name: str, record: dict[str, Any]) -> str:
    """Return the notification of a finished retraining run."""
    outcome = record.get("outcome")
    if outcome == "promoted":
        return (
            f"{name}: version {record.get('promoted_version')} promoted and "
            f"served. {record.get('reason', '')}"
        )
    return f"{name}: retraining {outcome}. {record.get('reason', '')}"
