"""A champion that failed to load serves again once its files are restored."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from support import Daemon, run_appliance, start_daemon, stop_daemon

from appliance.config import Config
from appliance.training import train_model

ROW = {"distance": 700.0, "hour": 18, "carrier": "B6"}
WAIT_SECONDS = 20.0


def _tampered_champion(config: Config) -> tuple[Path, bytes]:
    """Register versions 1 and 2, promote 2, and append a byte to its ONNX file.

    Returns:
        The ONNX file of version 2 and its bytes before the change.
    """
    train_model(config, "late")
    second = train_model(config, "late").model_version
    promoted = run_appliance(
        config.path, config.storage.home, "models", "promote", "late", "2"
    )
    assert promoted.returncode == 0, promoted.stderr
    onnx = second.path / "model.onnx"
    original = onnx.read_bytes()
    onnx.write_bytes(original + b"x")
    return onnx, original


def _served_version(client: httpx.Client) -> int:
    (model,) = client.get("/v1/models").json()["models"]
    return int(model["version"])


def _alerts(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {a["kind"]: a for a in client.get("/v1/alerts").json()["alerts"]}


def _wait_for(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def _health_checked(client: httpx.Client) -> bool:
    jobs = client.get("/v1/ui/jobs").json()["jobs"]
    return any(j["id"] == "health:late" and j["last_run_at"] for j in jobs)


def _gauges(client: httpx.Client) -> dict[tuple[str, str], float]:
    """Return the new model and alert gauges by name and label value."""
    text = client.get("/metrics").text
    names = {
        "appliance_model_served_version": "model",
        "appliance_model_champion_version": "model",
        "appliance_model_champion_unserved": "model",
        "appliance_alerts_open": "kind",
    }
    gauges = {}
    for family in text_string_to_metric_families(text):
        if family.name in names:
            assert family.type == "gauge", family.name
            for sample in family.samples:
                label = sample.labels[names[family.name]]
                gauges[(family.name, label)] = sample.value
    return gauges


def _history(config: Config) -> list[dict[str, Any]]:
    result = run_appliance(
        config.path, config.storage.home, "models", "history", "late", "--json"
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if "{" in line]


def test_promote_of_unserved_champion_loads_it(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    config = trips("")
    onnx, original = _tampered_champion(config)
    history = _history(config)
    daemon: Daemon = start_daemon(
        config.path, config.storage.home, tmp_path / "daemon.log"
    )
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            before = _served_version(client)
            listed = run_appliance(
                config.path, config.storage.home, "models", "list", "--json"
            )
            tampered = run_appliance(
                config.path, config.storage.home, "models", "promote", "late", "2"
            )
            onnx.write_bytes(original)
            promoted = run_appliance(
                config.path, config.storage.home, "models", "promote", "late", "2"
            )
            after = _served_version(client)
            resolved = _wait_for(
                lambda: all(a["status"] == "resolved" for a in _alerts(client).values())
            )
            alerts = _alerts(client)
            still_open = client.get("/v1/alerts", params={"status": "open"}).json()
            ready = client.get("/health/ready")
        history_after = _history(config)
    finally:
        stop_daemon(daemon)

    assert before == 1
    serving = {
        v["version"]: v["serving"] for v in map(json.loads, listed.stdout.splitlines())
    }
    assert serving == {1: True, 2: False}
    assert tampered.returncode == 1
    assert "model.onnx of model 'late' version 2 was changed" in tampered.stderr
    assert promoted.returncode == 0, promoted.stderr
    assert "nothing recorded" in promoted.stdout
    assert "loaded version 2 again" in promoted.stdout
    assert after == 2
    assert history_after == history
    assert resolved, alerts
    assert set(alerts) == {"load", "signature"}
    for alert in alerts.values():
        assert alert["resolution"].startswith("resolved automatically: ")
        assert alert["resolved_at"] is not None
    assert still_open["alerts"] == []
    assert ready.status_code == 200, ready.text


def test_health_check_serves_restored_champion(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    config = trips("[monitoring]\nhealth_interval_seconds = 1\n")
    onnx, original = _tampered_champion(config)
    history = _history(config)
    daemon = start_daemon(config.path, config.storage.home, tmp_path / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            # Health checks that run while the file is still changed keep
            # version 1 served.
            assert _wait_for(lambda: _health_checked(client))
            time.sleep(2.0)
            before = _served_version(client)
            onnx.write_bytes(original)
            switched = _wait_for(lambda: _served_version(client) == 2)
            resolved = _wait_for(
                lambda: all(a["status"] == "resolved" for a in _alerts(client).values())
            )
            alerts = _alerts(client)
        history_after = _history(config)
    finally:
        stop_daemon(daemon)

    assert before == 1
    assert switched
    assert resolved, alerts
    assert set(alerts) == {"load", "signature"}
    assert history_after == history
    log = (tmp_path / "daemon.log").read_text(errors="replace")
    # Once at start and once at the first retry; later retries wait for a change.
    assert log.count("model version rejected model=late version=2") == 2
    assert "Traceback" not in log


def test_sighup_serves_restored_champion(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    config = trips("")
    onnx, original = _tampered_champion(config)
    daemon = start_daemon(config.path, config.storage.home, tmp_path / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            before = _served_version(client)
            onnx.write_bytes(original)
            daemon.process.send_signal(signal.SIGHUP)
            switched = _wait_for(lambda: _served_version(client) == 2)
    finally:
        stop_daemon(daemon)

    assert before == 1
    assert switched


def test_restart_resolves_earlier_alerts(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    config = trips("")
    onnx, original = _tampered_champion(config)
    first = start_daemon(config.path, config.storage.home, tmp_path / "first.log")
    try:
        with httpx.Client(base_url=first.base_url, trust_env=False) as client:
            raised = _alerts(client)
    finally:
        stop_daemon(first)
    onnx.write_bytes(original)
    second = start_daemon(config.path, config.storage.home, tmp_path / "second.log")
    try:
        with httpx.Client(base_url=second.base_url, trust_env=False) as client:
            served = _served_version(client)
            alerts = _alerts(client)
    finally:
        stop_daemon(second)

    assert {kind: a["status"] for kind, a in raised.items()} == {
        "load": "open",
        "signature": "open",
    }
    assert served == 2
    assert {kind: a["status"] for kind, a in alerts.items()} == {
        "load": "resolved",
        "signature": "resolved",
    }


def test_metrics_show_unserved_champion(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    config = trips("")
    onnx, original = _tampered_champion(config)
    daemon = start_daemon(config.path, config.storage.home, tmp_path / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            before = _gauges(client)
            onnx.write_bytes(original)
            promoted = client.post(
                "/v1/admin/registry/models/late/promote", json={"version": 2}
            )
            assert promoted.status_code == 200, promoted.text
            resolved = _wait_for(
                lambda: _gauges(client)[("appliance_alerts_open", "load")] == 0
            )
            after = _gauges(client)
    finally:
        stop_daemon(daemon)

    assert before[("appliance_model_served_version", "late")] == 1
    assert before[("appliance_model_champion_version", "late")] == 2
    assert before[("appliance_model_champion_unserved", "late")] == 1
    assert before[("appliance_alerts_open", "load")] == 1
    assert before[("appliance_alerts_open", "signature")] == 1
    assert before[("appliance_alerts_open", "drift")] == 0
    assert resolved
    assert after[("appliance_model_served_version", "late")] == 2
    assert after[("appliance_model_champion_version", "late")] == 2
    assert after[("appliance_model_champion_unserved", "late")] == 0
    assert after[("appliance_alerts_open", "signature")] == 0


def test_silent_webhook_does_not_delay_start(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    # The receiver accepts connections and never responds. Sent in the start's
    # own thread, the load and signature alerts would take 2 alerts x 3
    # attempts x 10 s before the daemon served requests.
    listener = socket.create_server(("127.0.0.1", 0), backlog=8)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/alerts"
    config = trips(
        f'[monitoring]\nwebhook_url = "{url}"\nwebhook_retries = 2\n'
        "webhook_backoff_seconds = 0.0\nwebhook_timeout_seconds = 10.0\n"
    )
    _tampered_champion(config)
    started = time.monotonic()
    try:
        daemon = start_daemon(config.path, config.storage.home, tmp_path / "daemon.log")
        start_seconds = time.monotonic() - started
        try:
            with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
                alerts = _alerts(client)
        finally:
            stop_daemon(daemon)
    finally:
        listener.close()

    assert start_seconds < 30.0
    assert {kind: a["status"] for kind, a in alerts.items()} == {
        "load": "open",
        "signature": "open",
    }
