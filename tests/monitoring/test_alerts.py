"""Alerts in the DuckDB store, and webhook delivery to a local receiver."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from appliance.config import MonitoringConfig
from appliance.errors import NotFoundError
from appliance.monitoring import (
    AlertCandidate,
    AlertStatus,
    DriftEvent,
    MonitoringStore,
    RequestStats,
    RetrainRecord,
    StreamMonitor,
    batch_drift,
    drift_event_alerts,
    performance_alert,
    request_alerts,
    resolve_alerts,
    send_webhook,
)
from appliance.monitoring._webhook import redact_url

T0 = datetime(2013, 4, 1, tzinfo=UTC)


def candidate(subject: str = "feature:temp") -> AlertCandidate:
    return AlertCandidate("flights_late", "drift", subject, "warning", "drift on temp")


def test_alert_deduplicated_while_open(tmp_path: Path) -> None:
    with MonitoringStore(tmp_path) as store:
        first, new_first = store.record_alert(candidate(), T0)
        again, new_again = store.record_alert(candidate(), T0 + timedelta(hours=1))
        other, new_other = store.record_alert(candidate("feature:dewp"), T0)

        assert new_first is True
        assert new_again is False
        assert again.id == first.id
        assert again.count == 2
        assert again.last_seen_at == T0 + timedelta(hours=1)
        assert new_other is True
        assert other.id != first.id
        assert len(store.list_alerts(AlertStatus.OPEN)) == 2


def test_acknowledged_alert_reopens_as_new(tmp_path: Path) -> None:
    with MonitoringStore(tmp_path) as store:
        first, _ = store.record_alert(candidate(), T0)
        acked = store.acknowledge(first.id, T0 + timedelta(minutes=5))
        second, new = store.record_alert(candidate(), T0 + timedelta(hours=2))

        assert acked.status is AlertStatus.ACKNOWLEDGED
        assert acked.acknowledged_at == T0 + timedelta(minutes=5)
        assert new is True
        assert second.id != first.id
        assert [a.id for a in store.list_alerts(AlertStatus.OPEN)] == [second.id]


def test_open_alerts_resolved_by_subject(tmp_path: Path) -> None:
    with MonitoringStore(tmp_path) as store:
        temp, _ = store.record_alert(candidate(), T0)
        dewp, _ = store.record_alert(candidate("feature:dewp"), T0)
        seen, _ = store.record_alert(candidate("feature:wind"), T0)
        store.acknowledge(seen.id, T0)
        later = T0 + timedelta(hours=1)

        resolved = store.resolve_open(
            "flights_late",
            "drift",
            "resolved automatically: gone",
            "feature:temp",
            later,
        )
        repeat, new = store.record_alert(candidate(), T0 + timedelta(hours=2))
        acknowledged = store.acknowledge(temp.id, T0 + timedelta(hours=3))

        assert [a.id for a in resolved] == [temp.id]
        assert resolved[0].status is AlertStatus.RESOLVED
        assert resolved[0].resolved_at == later
        assert resolved[0].resolution == "resolved automatically: gone"
        assert resolved[0].to_dict()["resolution"] == "resolved automatically: gone"
        assert store.get_alert(dewp.id).status is AlertStatus.OPEN
        assert store.get_alert(seen.id).status is AlertStatus.ACKNOWLEDGED
        assert new is True
        assert repeat.id != temp.id
        assert acknowledged.status is AlertStatus.RESOLVED
        assert acknowledged.acknowledged_at == T0 + timedelta(hours=3)
        assert store.resolve_open("flights_late", "drift", "again") != []
        assert store.list_alerts(AlertStatus.OPEN) == []


def test_acknowledge_unknown_id(tmp_path: Path) -> None:
    with MonitoringStore(tmp_path) as store:
        with pytest.raises(NotFoundError, match="alert 42 does not exist"):
            store.acknowledge(42)


def test_store_survives_reopen(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    report = batch_drift(
        {"x": rng.normal(0, 1, 500)}, {"x": rng.normal(2, 1, 500)}, ["x"], []
    )
    monitor = StreamMonitor("classification", ["x"], [])
    for x in rng.normal(0, 1, 700):
        monitor.observe_prediction({"x": x}, [0.5, 0.5])
    with MonitoringStore(tmp_path) as store:
        store.record_alert(candidate(), T0)
        store.record_drift("flights_late", report, T0)
        store.save_state("flights_late", 3, monitor.to_bytes(), T0)
        store.record_retrain(
            RetrainRecord("flights_late", "drift", "skipped", "in cool-down", T0)
        )

    with MonitoringStore(tmp_path) as store:
        history = store.drift_history("flights_late")
        version, state = store.load_state("flights_late")
        restored = StreamMonitor.from_bytes(state)

        assert len(store.list_alerts()) == 1
        assert [(h["feature"], h["status"]) for h in history] == [("x", "drift")]
        assert version == 3
        assert restored.rows == 700
        assert store.retrain_history("flights_late")[0]["outcome"] == "skipped"
        assert store.load_state("other") is None


def test_threshold_alerts() -> None:
    config = MonitoringConfig(
        performance_drop=0.05,
        min_live_labels=100,
        error_rate=0.05,
        latency_p99_ms=200,
        min_window_requests=20,
    )

    drop = performance_alert("m", 3, "roc_auc", 0.64, 0.70, 500, config)
    small = performance_alert("m", 3, "roc_auc", 0.68, 0.70, 500, config)
    few = performance_alert("m", 3, "roc_auc", 0.50, 0.70, 99, config)
    loss = performance_alert("m", 3, "log_loss", 0.60, 0.50, 500, config)
    failing = request_alerts("m", 3, RequestStats(300, 1000, 10, 60, 250.0), config)
    rejected = request_alerts("m", 3, RequestStats(300, 1000, 60, 0, 20.0), config)
    quiet = request_alerts("m", 3, RequestStats(300, 1000, 50, 50, 200.0), config)
    sparse = request_alerts("m", 3, RequestStats(300, 19, 19, 0, 900.0), config)

    assert drop is not None and drop.kind == "performance"
    assert "version 3 is 0.6400 over the last 500 labels" in drop.message
    assert small is None
    assert few is None
    assert loss is not None and loss.subject == "log_loss version 3"
    assert [(a.kind, a.subject) for a in failing] == [
        ("error_rate", "server version 3"),
        ("latency", "p99 version 3"),
    ]
    assert failing[0].severity == "critical"
    assert "60 of 1000 prediction requests" in failing[0].message
    assert "in the last 300 s" in failing[0].message
    assert "250.0 ms over 930 successful requests" in failing[1].message
    assert [(a.subject, a.severity) for a in rejected] == [
        ("client version 3", "warning")
    ]
    assert quiet == []
    assert sparse == []


class _Receiver(BaseHTTPRequestHandler):
    failures_left = 0
    bodies: list[dict] = []
    requests: list[tuple[str, str | None]] = []
    """Path and Authorization header of each request."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        cls = type(self)
        cls.requests.append((self.path, self.headers.get("Authorization")))
        if cls.failures_left > 0:
            cls.failures_left -= 1
            self.send_response(503)
        else:
            cls.bodies.append(json.loads(body))
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type(
        "Receiver", (_Receiver,), {"failures_left": 0, "bodies": [], "requests": []}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/alerts", handler
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_retries_with_backoff(receiver) -> None:
    url, handler = receiver
    handler.failures_left = 2
    waits: list[float] = []

    delivered = send_webhook(
        url, {"id": 1}, retries=3, backoff_seconds=0.5, sleep=waits.append
    )

    assert delivered is True
    assert waits == [0.5, 1.0]
    assert handler.bodies == [{"id": 1}]


def test_webhook_gives_up(receiver) -> None:
    url, handler = receiver
    handler.failures_left = 10
    waits: list[float] = []

    delivered = send_webhook(
        url, {"id": 2}, retries=2, backoff_seconds=0.1, sleep=waits.append
    )

    assert delivered is False
    assert waits == [0.1, 0.2]
    assert handler.failures_left == 7


def test_webhook_credentials_basic_auth_masked(
    receiver, caplog: pytest.LogCaptureFixture
) -> None:
    url, handler = receiver
    handler.failures_left = 1
    secret_url = url.replace("http://", "http://alice:s3cr%40pw@") + "?token=abc123"
    caplog.set_level(logging.INFO, logger="appliance.monitoring._webhook")

    delivered = send_webhook(
        secret_url, {"id": 3}, retries=1, backoff_seconds=0.0, sleep=lambda _: None
    )

    expected_auth = "Basic " + base64.b64encode(b"alice:s3cr@pw").decode()
    assert delivered is True
    assert handler.requests == [("/alerts?token=abc123", expected_auth)] * 2
    assert handler.bodies == [{"id": 3}]
    assert len(caplog.records) == 2
    masked = url.replace("http://", "http://***@") + "?token=***"
    for record in caplog.records:
        assert f"url={masked} " in record.getMessage()
    assert "s3cr" not in caplog.text
    assert "alice" not in caplog.text
    assert "abc123" not in caplog.text


def test_webhook_path_secret_masked(receiver, caplog: pytest.LogCaptureFixture) -> None:
    url, handler = receiver
    caplog.set_level(logging.INFO, logger="appliance.monitoring._webhook")

    delivered = send_webhook(url + "/T0/B0/xoxb-s3cret", {"id": 4}, retries=0)

    assert delivered is True
    assert handler.requests[0][0] == "/alerts/T0/B0/xoxb-s3cret"
    assert f"url={url}/*** " in caplog.records[0].getMessage()
    assert "s3cret" not in caplog.text
    assert "T0" not in caplog.text


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        (
            "https://u:p@h:8443/a/b?x=1&y=&z=3#frag",
            "https://***@h:8443/a/***?x=***&y=***&z=***",
        ),
        ("http://127.0.0.1:9/hook", "http://127.0.0.1:9/hook"),
        ("http://127.0.0.1:9/hook/", "http://127.0.0.1:9/hook/"),
        ("http://h/services/T0/B0/SECRET", "http://h/services/***"),
        ("http://h:80", "http://h:80"),
        ("http://[::1]:9/a/b/", "http://[::1]:9/a/***"),
    ],
)
def test_redact_url_masks_secrets(url: str, logged: str) -> None:
    assert redact_url(url) == logged


def test_webhook_unreachable_does_not_raise() -> None:
    waits: list[float] = []

    delivered = send_webhook(
        "http://127.0.0.1:9/none",
        {},
        retries=1,
        backoff_seconds=0.01,
        sleep=waits.append,
    )

    assert delivered is False
    assert waits == [0.01]


@pytest.fixture()
def silent_receiver() -> Iterator[str]:
    """Yield the URL of a socket on 127.0.0.1 that accepts connections and
    never responds. The kernel completes each connection, and nothing reads
    the request or sends a response."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=8)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/alerts"
    finally:
        listener.close()


def test_resolution_webhook_does_not_block(
    tmp_path: Path, silent_receiver: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = MonitoringConfig(
        webhook_url=silent_receiver, webhook_retries=0, webhook_timeout_seconds=1.5
    )
    with MonitoringStore(tmp_path) as store:
        store.record_alert(
            AlertCandidate("flights_late", "load", "version 2", "critical", "x")
        )
    caplog.set_level(logging.WARNING, logger="appliance.monitoring._webhook")

    started = time.monotonic()
    resolved = resolve_alerts(
        tmp_path, "flights_late", ("load",), "champion is served", config
    )
    returned = time.monotonic() - started
    senders = [t for t in threading.enumerate() if t.name == "webhook"]
    for thread in senders:
        thread.join(timeout=10)
    delivered = time.monotonic() - started

    assert [a.kind for a in resolved] == ["load"]
    assert returned < 1.0
    assert len(senders) == 1
    assert not senders[0].is_alive()
    assert delivered >= 1.5
    assert "webhook failed" in caplog.text
    assert "timed out" in caplog.text


def test_stream_drift_alert_names_row() -> None:
    events = [
        DriftEvent("feature", "seats", "mean", 9552),
        DriftEvent("loss", "loss", "mean", 17),
    ]

    feature, loss = drift_event_alerts("flights_late", events)

    assert feature.subject == "feature:seats"
    assert feature.message == (
        "streaming mean drift on feature 'seats' of model 'flights_late' at row "
        "9552 of the prediction stream"
    )
    assert loss.message == (
        "streaming mean drift on loss 'loss' of model 'flights_late' at row 17 of "
        "the label stream"
    )


def test_doctests_of_webhook_module() -> None:
    import doctest

    from appliance.monitoring import _webhook

    result = doctest.testmod(_webhook)

    assert result.attempted == 3
    assert result.failed == 0
