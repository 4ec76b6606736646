"""The overview screen: health, traffic, served models, open alerts, next jobs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from textual.widget import Widget
from textual.widgets import DataTable, Static

from tui._format import NONE, duration, padded, percent, timestamp
from tui._pane import Pane, Unavailable, fill_table, optional


class OverviewPane(Pane):
    """Health of the daemon and what needs attention, refreshed live."""

    TITLE = "Overview"
    KEY = "1"
    SUMMARY = (
        "health, uptime, requests/s, p50/p99 latency, error rate over the last "
        "minute, champion of each model, open alerts, next scheduled jobs"
    )

    DEFAULT_CSS = """
    OverviewPane #models { height: auto; max-height: 8; }
    OverviewPane #jobs { height: auto; max-height: 6; }
    """

    def compose_body(self) -> Iterator[Widget]:
        yield Static("Connecting to the daemon…", id="health", classes="section")
        yield Static("", id="alerts", classes="section")
        models: DataTable[Any] = DataTable(id="models", cursor_type="row")
        yield models
        jobs: DataTable[Any] = DataTable(id="jobs", cursor_type="row")
        yield jobs

    def fetch(self) -> dict[str, Any]:
        overview = self.client.overview()
        return {
            "overview": overview,
            "champions": optional(self.client.champions),
            "alerts": optional(self.client.alerts, "open"),
        }

    def show(self, data: dict[str, Any]) -> None:
        overview = data["overview"]
        self.query_one("#health", Static).update(_health_text(overview))
        self.query_one("#alerts", Static).update(_alerts_text(data["alerts"]))
        self._show_models(overview["models"], data["champions"])
        self._show_jobs(overview["jobs"])

    def _show_models(self, models: list[dict[str, Any]], champions: Any) -> None:
        rows, keys = [], []
        for served in models:
            name = served["model"]
            if isinstance(champions, Unavailable):
                champion = "n/a"
            else:
                champion = str(champions.get(name, NONE))
            rows.append([name, str(served["version"]), champion, served["task"]])
            keys.append(name)
        table = self.query_one("#models", DataTable)
        columns = ["Model", "Serving", "Champion", "Task"]
        fill_table(table, columns, rows, keys)
        table.border_title = f"Models ({len(rows)})"

    def _show_jobs(self, jobs: list[dict[str, Any]]) -> None:
        rows = [
            [job["id"], timestamp(job["next_run_at"]), job["trigger"]]
            for job in jobs[:5]
        ]
        table = self.query_one("#jobs", DataTable)
        fill_table(
            table, ["Next job", "Runs at", "Trigger"], rows, [r[0] for r in rows]
        )
        table.border_title = f"Scheduled jobs ({len(jobs)})"


def _health_text(overview: dict[str, Any]) -> str:
    status = overview["status"]
    colour = "$success" if status == "ok" else "$warning"
    traffic = overview["traffic"]
    log = overview["prediction_log"]
    p50 = traffic["p50_ms"]
    p99 = traffic["p99_ms"]
    return (
        f"Daemon [b {colour}]{status}[/] · pid {overview['pid']} · "
        f"up {duration(overview['uptime_seconds'])} · "
        f"since {timestamp(overview['started_at'])}\n"
        f"Last {duration(traffic['window_seconds'])}: "
        f"[b]{padded(traffic['requests_per_second'], 7, 2)}[/] req/s · "
        f"p50 [b]{padded(p50, 6, 1)}[/] ms · p99 [b]{padded(p99, 6, 1)}[/] ms · "
        f"errors [b]{percent(traffic['error_rate']).rjust(6)}[/]\n"
        f"Prediction log: {log['written']} written, {log['queued']} queued, "
        f"{log['spilled']} spilled"
    )


def _alerts_text(alerts: Any) -> str:
    if isinstance(alerts, Unavailable):
        return "Open alerts: not available on this daemon"
    if not alerts:
        return "Open alerts: [$success]none[/]"
    newest = alerts[0]
    return (
        f"Open alerts: [b $error]{len(alerts)}[/] · newest: "
        f"{newest.get('severity', '')} {newest.get('model', '')} "
        f"{newest.get('message', '')} (key 6)"
    )
