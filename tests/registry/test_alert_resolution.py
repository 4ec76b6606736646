"""Resolved alerts reach the webhook, and a pinned version resolves its own.

The webhook receiver is an HTTP server that each test starts on 127.0.0.1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from support import WebhookReceiver, run_appliance, start_daemon, stop_daemon

from appliance.config import Config
from appliance.storage import ModelVersion
from appliance.training import train_model

ROW = {"distance": 700.0, "hour": 18, "carrier": "B6"}
WAIT_SECONDS = 20.0
PINNED = "/v1/models/late/predict?version=2"


def _webhook_config(webhook: WebhookReceiver) -> str:
    return f'[monitoring]\nwebhook_url = "{webhook.url}"\nwebhook_retries = 0\n'


def _two_versions(config: Config, champion: int) -> ModelVersion:
    """Register versions 1 and 2, promote `champion`, and return version 2."""
    train_model(config, "late")
    second = train_model(config, "late").model_version
    promoted = run_appliance(
        config.path, config.storage.home, "models", "promote", "late", str(champion)
    )
    assert promoted.returncode == 0, promoted.stderr
    return second


def _alerts(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {a["kind"]: a for a in client.get("/v1/alerts").json()["alerts"]}


def _wait_for(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_served_champion_sends_resolutions(
    trips: Callable[[str], Config], tmp_path: Path, webhook: WebhookReceiver
) -> None:
    config = trips(_webhook_config(webhook))
    onnx = _two_versions(config, champion=2).path / "model.onnx"
    original = onnx.read_bytes()
    onnx.write_bytes(original + b"x")
    daemon = start_daemon(config.path, config.storage.home, tmp_path / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            opened = _alerts(client)
            onnx.write_bytes(original)
            promoted = client.post(
                "/v1/admin/registry/models/late/promote", json={"version": 2}
            )
            delivered = _wait_for(lambda: len(webhook.resolved()) == 2)
            alerts = _alerts(client)
    finally:
        stop_daemon(daemon)

    assert promoted.status_code == 200, promoted.text
    assert {kind: a["status"] for kind, a in opened.items()} == {
        "load": "open",
        "signature": "open",
    }
    assert delivered, webhook.bodies
    bodies = webhook.resolved()
    assert set(bodies) == {"load", "signature"}
    for kind, body in bodies.items():
        assert body["event"] == "resolved"
        assert body["status"] == "resolved"
        assert body["id"] == opened[kind]["id"]
        assert body["model"] == "late"
        assert body["resolved_by"] == "daemon"
        assert body["resolved_at"] == alerts[kind]["resolved_at"]
        assert body["resolution"] == alerts[kind]["resolution"]
    assert (
        "champion version 2 of model 'late' is served" in (bodies["load"]["resolution"])
    )
    assert bodies["signature"]["subject"] == "version 2"
    assert [b["status"] for b in webhook.bodies].count("open") == 2


def test_pinned_version_resolves_signature_alert(
    trips: Callable[[str], Config], tmp_path: Path, webhook: WebhookReceiver
) -> None:
    config = trips(_webhook_config(webhook))
    onnx = _two_versions(config, champion=1).path / "model.onnx"
    original = onnx.read_bytes()
    onnx.write_bytes(original + b"x")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config.path, config.storage.home, log)
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            rejected = client.post(PINNED, json={"rows": [ROW]})
            opened = _alerts(client)
            onnx.write_bytes(original)
            pinned = client.post(PINNED, json={"rows": [ROW]})
            resolved = _wait_for(
                lambda: _alerts(client)["signature"]["status"] == "resolved"
            )
            delivered = _wait_for(lambda: "signature" in webhook.resolved())
            alerts = _alerts(client)
            served = client.post("/v1/models/late/predict", json={"rows": [ROW]})
    finally:
        stop_daemon(daemon)

    assert rejected.status_code == 409, rejected.text
    assert opened["signature"]["status"] == "open"
    assert opened["signature"]["subject"] == "version 2"
    assert pinned.status_code == 200, pinned.text
    assert pinned.json()["version"] == 2
    assert resolved, alerts
    assert alerts["signature"]["id"] == opened["signature"]["id"]
    assert alerts["signature"]["resolution"] == (
        "resolved automatically: version 2 of model 'late' passed its signature "
        "check and serves requests pinned to it with ?version=2"
    )
    assert set(alerts) == {"signature"}
    assert delivered, webhook.bodies
    body = webhook.resolved()["signature"]
    assert body["id"] == opened["signature"]["id"]
    assert body["resolved_by"] == "daemon"
    assert served.json()["version"] == 1
    assert "Traceback" not in log.read_text(errors="replace")
