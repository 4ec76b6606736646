"""The terminal UI driven by Textual's pilot against real daemons on 127.0.0.1."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from support import (
    Daemon,
    free_port,
    json_rows,
    run_appliance,
    start_daemon,
    stop_daemon,
)
from textual.widgets import DataTable, Sparkline, TabbedContent
from ui_support import (
    DRIFT_CHECKS,
    DRIFT_STEP,
    MODEL,
    UiHome,
    copy_home,
    notifications,
    run_app,
    screen_text,
    serve,
    shared_home,
    shown_text,
    wait_for,
)

from appliance.cli._tui import daemon_url
from appliance.config import load_config
from appliance.errors import DaemonError
from tui import PANES, DaemonUnreachableError, EndpointMissingError, UiClient
from tui._connection import Connection
from tui._dialogs import ConfirmScreen, HelpScreen, TableScreen
from tui._monitoring import DriftPane
from tui._pane import Pane

"""Whether the daemon under test has the registry's alias routes."""
REQUESTS = 4
ROWS_PER_REQUEST = 3


@pytest.fixture(scope="module")
def ui_home(tmp_path_factory: pytest.TempPathFactory) -> UiHome:
    """Return the home with two versions of the model."""
    return shared_home(tmp_path_factory)


@pytest.fixture(scope="module")
def ui_daemon(
    ui_home: UiHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    """Run a daemon on a copy of the home that the tests of this module only read."""
    running = serve(ui_home, tmp_path_factory.mktemp("ui-daemon"))
    try:
        yield running
    finally:
        stop_daemon(running)


@pytest.fixture(scope="module")
def traffic(ui_home: UiHome, ui_daemon: Daemon) -> dict[str, int]:
    """Send a few good requests and one bad one; return what was sent."""
    rows = json_rows(ui_home.frame.drop(columns=["malignant"]).head(ROWS_PER_REQUEST))
    url = f"{ui_daemon.base_url}/v1/models/{MODEL}/predict"
    with httpx.Client(trust_env=False, timeout=30.0) as http:
        for _ in range(REQUESTS):
            assert http.post(url, json={"rows": rows}).status_code == 200
        assert http.post(url, json={"rows": [{"radius": "x"}]}).status_code == 422
    return {"good": REQUESTS, "bad": 1}


def pane(app: Any, pane_type: type[Pane]) -> Pane:
    """Return the mounted pane of `pane_type`."""
    return app.query_one(pane_type)


# --- the overview endpoint and the client ------------------------------------------


def test_overview_endpoint_counts_traffic(
    ui_daemon: Daemon, traffic: dict[str, int]
) -> None:
    overview = UiClient(ui_daemon.base_url).overview()
    figures = overview["traffic"]
    assert overview["status"] == "ok"
    assert overview["uptime_seconds"] > 0
    assert overview["pid"] == ui_daemon.process.pid
    assert figures["requests"] == traffic["good"] + traffic["bad"]
    assert figures["error_rate"] == pytest.approx(1 / 5)
    assert figures["requests_per_second"] > 0
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert overview["models"] == [
        {"model": MODEL, "version": 2, "task": "classification"}
    ]
    assert [job["id"] for job in overview["jobs"]] == [
        f"health:{MODEL}",
        f"drift:{MODEL}",
    ]


def test_client_missing_route_is_endpoint_missing(ui_daemon: Daemon) -> None:
    client = UiClient(ui_daemon.base_url)
    with pytest.raises(EndpointMissingError, match="not available on this daemon"):
        client.get("/v1/no-such-route")


def test_client_daemon_404_is_plain_error(ui_daemon: Daemon) -> None:
    client = UiClient(ui_daemon.base_url)
    with pytest.raises(DaemonError, match=r"no-such-run.*HTTP 404") as caught:
        client.run("no-such-run")
    assert not isinstance(caught.value, EndpointMissingError)
    assert caught.value.status == 404


def test_client_closed_port_is_unreachable() -> None:
    client = UiClient(f"http://127.0.0.1:{free_port()}", timeout=2.0)
    with pytest.raises(DaemonUnreachableError, match="appliance serve"):
        client.overview()


class SlowDaemon:
    """HTTP server on 127.0.0.1 that responds to every request after `delay`."""

    def __init__(self, delay: float) -> None:
        class Handler(BaseHTTPRequestHandler):
            def respond(self) -> None:
                time.sleep(delay)
                body = json.dumps({"version": 2, "previous_version": 1}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                self.respond()

            do_GET = respond

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class OtherServer:
    """HTTP server on 127.0.0.1 that is not the daemon: an HTML page for every GET."""

    def __init__(self, status: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b"<html><body>another web app</body></html>"
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status", [200, 404])
def test_other_server_shows_not_connected(status: int) -> None:
    other = OtherServer(status)

    async def scenario(app: Any, pilot: Any) -> None:
        await wait_for(
            pilot, lambda: app.connection is Connection.NOT_APPLIANCE, "not appliance"
        )
        text = await shown_text(pilot)
        assert "NOT CONNECTED" in text
        assert "not as the appliance" in text
        assert "· connected" not in text
        assert "check that --url points at the appliance daemon" in text
        assert "report it" not in text

    try:
        run_app(other.url, scenario, size=(120, 30))
    finally:
        other.close()


def test_top_line_connecting_until_response() -> None:
    slow = SlowDaemon(delay=3.0)

    async def scenario(app: Any, pilot: Any) -> None:
        text = await shown_text(pilot)
        assert app.connection is Connection.CONNECTING
        assert "connecting…" in text
        assert "· connected" not in text

    try:
        run_app(slow.url, scenario, refresh_seconds=60.0)
    finally:
        slow.close()


def test_alias_change_outwaits_read_timeout() -> None:
    # A promotion waits for the registry lock and loads the model, so it may
    # take longer than a read. Timing out early would report a failure for a
    # change that then completes.
    slow = SlowDaemon(delay=1.0)
    try:
        client = UiClient(slow.url, timeout=0.3)
        with pytest.raises(DaemonUnreachableError, match="timed out"):
            client.overview()
        assert client.promote(MODEL, 2, "tester")["version"] == 2
        assert client.rollback(MODEL, "tester")["previous_version"] == 1
    finally:
        slow.close()


def test_tui_command_finds_running_daemon(ui_daemon: Daemon) -> None:
    config = load_config(ui_daemon.log.parent / "config.toml")
    assert daemon_url(config, None) == ui_daemon.base_url
    assert daemon_url(config, "http://10.0.0.1:1") == "http://10.0.0.1:1"


def test_tui_command_rejects_zero_refresh(ui_daemon: Daemon) -> None:
    root = ui_daemon.log.parent
    done = run_appliance(root / "config.toml", root / "home", "tui", "--refresh", "0")
    assert done.returncode == 2
    assert "argument --refresh: invalid refresh '0'; use a number of seconds" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


# --- navigation --------------------------------------------------------------------


def test_every_screen_reachable_by_key(ui_daemon: Daemon, traffic: Any) -> None:
    async def scenario(app: Any, pilot: Any) -> None:
        tabs = app.query_one(TabbedContent)
        for pane_type in PANES:
            await pilot.press(pane_type.KEY)
            assert tabs.active == f"tab-{pane_type.TITLE.lower()}"
            shown = pane(app, pane_type)
            await wait_for(
                pilot, lambda p=shown: p.fetched_at is not None, pane_type.TITLE
            )
            assert "Traceback" not in screen_text(app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)

    run_app(ui_daemon.base_url, scenario)


def test_tab_click_and_theme_toggle(ui_daemon: Daemon) -> None:
    async def scenario(app: Any, pilot: Any) -> None:
        await pilot.click("#--content-tab-tab-runs")
        assert app.query_one(TabbedContent).active == "tab-runs"
        await pilot.press("t")
        assert app.theme == "textual-light"
        await pilot.press("t")
        assert app.theme == "textual-dark"

    run_app(ui_daemon.base_url, scenario)


def test_help_lists_every_screen_key(ui_daemon: Daemon) -> None:
    async def scenario(app: Any, pilot: Any) -> None:
        await pilot.press("f1")
        text = await shown_text(pilot)
        for pane_type in PANES[:4]:
            assert f"│ {pane_type.KEY}   │ {pane_type.TITLE}" in text

    run_app(ui_daemon.base_url, scenario, size=(100, 60))


def test_overview_shows_traffic_and_models(
    ui_daemon: Daemon, traffic: dict[str, int]
) -> None:
    async def scenario(app: Any, pilot: Any) -> None:
        overview = pane(app, PANES[0])
        await wait_for(pilot, lambda: overview.fetched_at is not None, "overview")
        text = await shown_text(pilot)
        assert "Daemon ok" in text
        assert "req/s" in text
        assert "p99" in text
        assert "Open alerts: 1" in text
        table = app.query_one("#overview-models", DataTable)
        assert table.get_row(MODEL)[:2] == [MODEL, "2"]

    run_app(ui_daemon.base_url, scenario)


def test_runs_compare_side_by_side(ui_daemon: Daemon) -> None:
    async def scenario(app: Any, pilot: Any) -> None:
        await pilot.press("3")
        runs = app.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: runs.row_count == 2, "two runs")
        await pilot.press("space", "down", "c")
        await wait_for(pilot, lambda: isinstance(app.screen, TableScreen), "compare")
        text = await shown_text(pilot)
        assert "fields differ" in text
        assert re.search(r"≠\s+run_id", text)
        assert re.search(r"│?\s{2,}model\s+tumour", text)
        await pilot.press("escape")
        await pilot.press("f")
        assert f"Model: {MODEL}" in await shown_text(pilot)

    run_app(ui_daemon.base_url, scenario)


def test_predictions_tail_shows_logged_rows(
    ui_daemon: Daemon, traffic: dict[str, int]
) -> None:
    expected = traffic["good"] * ROWS_PER_REQUEST

    async def scenario(app: Any, pilot: Any) -> None:
        await pilot.press("8")
        table = app.query_one("#predictions", DataTable)
        await wait_for(pilot, lambda: table.row_count == expected, "logged rows")

    run_app(ui_daemon.base_url, scenario)


def test_datasets_details_show_quality_report(ui_daemon: Daemon) -> None:
    async def scenario(app: Any, pilot: Any) -> None:
        await pilot.press("4")
        table = app.query_one("#datasets", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, "one dataset version")
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: "accepted 300" in screen_text(app), "quality report"
        )
        text = screen_text(app)
        assert "Quality report:" in text
        assert "accepted 300, quarantined 0, duplicate rows 0" in text
        assert "not available on this daemon" not in text

    run_app(ui_daemon.base_url, scenario)


def test_drift_draws_one_chart_per_feature(ui_daemon: Daemon) -> None:
    async def scenario(app: Any, pilot: Any) -> None:
        await pilot.press("5")
        drift = app.query_one(DriftPane)
        await wait_for(pilot, lambda: len(drift.query(Sparkline)) == 2, "charts")
        text = await shown_text(pilot)
        last = {f: f"PSI {step * DRIFT_CHECKS:.3f}" for f, step in DRIFT_STEP.items()}
        assert re.search(rf"radius\s.*{last['radius']}", text)
        assert re.search(rf"site\s.*{last['site']}", text)
        assert "Streaming detectors" in text
        sparkline = drift.query(Sparkline).first()
        assert len(sparkline.data) == DRIFT_CHECKS

    run_app(ui_daemon.base_url, scenario, refresh_seconds=60.0)


# --- commands ----------------------------------------------------------------------


def test_promote_then_rollback_switch_serving(
    ui_home: UiHome, tmp_path_factory: pytest.TempPathFactory
) -> None:
    daemon = serve(ui_home, tmp_path_factory.mktemp("promote"))
    client = UiClient(daemon.base_url)
    before = client.served_models()[0]["version"]
    target = 1 if before != 1 else 2

    async def scenario(app: Any, pilot: Any) -> None:
        await pilot.press("2")
        table = app.query_one("#versions", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2, "two versions")
        table.move_cursor(row=table.get_row_index(f"{MODEL}\t{target}"))
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "confirm")
        text = await shown_text(pilot)
        assert f"Promote {MODEL} version {target}?" in text
        assert f"to version {target}" in text
        await pilot.press("y")
        await wait_for(
            pilot,
            lambda: any(f"now version {target}" in n for n in notifications(app)),
            "promotion",
        )
        assert client.served_models()[0]["version"] == target
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "confirm")
        assert f"Roll back the champion of {MODEL}?" in await shown_text(pilot)
        await pilot.press("y")
        await wait_for(
            pilot,
            lambda: any("rolled back to version" in n for n in notifications(app)),
            "rollback",
        )

    try:
        run_app(daemon.base_url, scenario)
        assert client.served_models()[0]["version"] == before
    finally:
        stop_daemon(daemon)


def test_promote_declined_changes_nothing(ui_daemon: Daemon) -> None:
    async def scenario(app: Any, pilot: Any) -> None:
        await pilot.press("2")
        table = app.query_one("#versions", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2, "two versions")
        await pilot.press("down", "p", "n")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, ConfirmScreen)
        assert notifications(app) == []

    run_app(ui_daemon.base_url, scenario)


def test_acknowledge_closes_open_alert(
    ui_home: UiHome, tmp_path_factory: pytest.TempPathFactory
) -> None:
    daemon = serve(ui_home, tmp_path_factory.mktemp("acknowledge"))
    client = UiClient(daemon.base_url)
    alert_id = client.alerts("open")[0]["id"]

    async def scenario(app: Any, pilot: Any) -> None:
        await pilot.press("6")
        table = app.query_one("#alerts", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, "the open alert")
        assert "radius drifted" in await shown_text(pilot)
        await pilot.press("a")
        await wait_for(
            pilot,
            lambda: any(
                f"Alert {alert_id} acknowledged" in n for n in notifications(app)
            ),
            "acknowledgement",
        )
        await wait_for(pilot, lambda: table.row_count == 0, "no open alert")
        await pilot.press("o")
        await wait_for(pilot, lambda: table.row_count == 1, "every alert")
        assert "acknowledged" in table.get_row(str(alert_id))

    try:
        run_app(daemon.base_url, scenario)
        assert client.alerts("open") == []
        assert client.alerts("acknowledged")[0]["id"] == alert_id
    finally:
        stop_daemon(daemon)


def test_resolve_closes_open_alert(
    ui_home: UiHome, tmp_path_factory: pytest.TempPathFactory
) -> None:
    daemon = serve(ui_home, tmp_path_factory.mktemp("resolve"))
    client = UiClient(daemon.base_url)
    alert_id = client.alerts("open")[0]["id"]

    async def scenario(app: Any, pilot: Any) -> None:
        await pilot.press("6")
        table = app.query_one("#alerts", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, "the open alert")
        await pilot.press("r")
        await wait_for(
            pilot,
            lambda: any(f"Alert {alert_id} resolved" in n for n in notifications(app)),
            "resolution",
        )
        await wait_for(pilot, lambda: table.row_count == 0, "no open alert")
        await pilot.press("o")
        await wait_for(pilot, lambda: table.row_count == 1, "every alert")
        assert "resolved" in table.get_row(str(alert_id))

    try:
        run_app(daemon.base_url, scenario)
        (resolved,) = client.alerts("resolved")
        assert resolved["id"] == alert_id
        assert client.alerts("open") == []
    finally:
        stop_daemon(daemon)


def test_retrain_now_reports_rejected_challenger(
    ui_home: UiHome, tmp_path_factory: pytest.TempPathFactory
) -> None:
    daemon = serve(ui_home, tmp_path_factory.mktemp("retrain"))

    async def scenario(app: Any, pilot: Any) -> None:
        await pilot.press("7")
        targets = app.query_one("#targets", DataTable)
        await wait_for(pilot, lambda: targets.row_count == 1, "model to retrain")
        targets.focus()
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "confirm")
        assert f"Retrain {MODEL} now?" in screen_text(app)
        await pilot.press("y")
        await wait_for(
            pilot,
            lambda: any("retraining rejected" in n for n in notifications(app)),
            "retrain result",
            seconds=120,
        )

    try:
        run_app(daemon.base_url, scenario)
        client = UiClient(daemon.base_url)
        served = client.served_models()
        history = client.get(f"/v1/models/{MODEL}/retrain")["history"]
        # The challenger is trained on the same rows as the served version 2,
        # so it scores the same and misses the promotion margin.
        assert served[0]["version"] == 2
        assert history[0]["challenger_version"] == 3
        assert "below margin" in history[0]["reason"]
    finally:
        stop_daemon(daemon)


def test_retrain_failure_notified_as_error(
    ui_home: UiHome, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("retrain-fails")
    copy = copy_home(ui_home, root)
    text = copy.config_path.read_text(encoding="utf-8")
    section = f"[models.{MODEL}]\n"
    assert section in text
    # No row passes the filter, so the challenger cannot be trained.
    no_rows = f'{section}where = "radius < -1000000"\n'
    copy.config_path.write_text(text.replace(section, no_rows), encoding="utf-8")
    daemon = start_daemon(copy.config_path, copy.home, root / "daemon.log")

    async def scenario(app: Any, pilot: Any) -> None:
        await pilot.press("7")
        targets = app.query_one("#targets", DataTable)
        await wait_for(pilot, lambda: targets.row_count == 1, "model to retrain")
        targets.focus()
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "confirm")
        await pilot.press("y")
        await wait_for(
            pilot,
            lambda: any("retraining failed" in n for n in notifications(app)),
            "retrain result",
            seconds=120,
        )
        failed = [n for n in app._notifications if "failed" in str(n.message)]
        assert failed[0].severity == "error"
        assert "challenger not trained" in str(failed[0].message)

    try:
        run_app(daemon.base_url, scenario)
    finally:
        stop_daemon(daemon)


def test_daemon_stopped_mid_session_marks_stale(
    ui_home: UiHome, tmp_path_factory: pytest.TempPathFactory
) -> None:
    daemon = serve(ui_home, tmp_path_factory.mktemp("stopped"))

    async def scenario(app: Any, pilot: Any) -> None:
        overview = pane(app, PANES[0])
        await wait_for(pilot, lambda: overview.fetched_at is not None, "first data")
        status = stop_daemon(daemon)
        assert status == 0, daemon.log.read_text(errors="replace")
        await wait_for(pilot, lambda: app.down_since is not None, "daemon down")
        await wait_for(pilot, lambda: overview.stale, "stale overview")
        text = await shown_text(pilot)
        assert "DAEMON DOWN since" in text, text
        assert "STALE: data from" in text, text
        assert "Daemon ok" in text, text
        assert "Traceback" not in text, text
        await pilot.press("2")
        await wait_for(
            pilot, lambda: "STALE: no data yet" in screen_text(app), "models notice"
        )

    try:
        run_app(daemon.base_url, scenario, refresh_seconds=0.3)
    finally:
        stop_daemon(daemon)
