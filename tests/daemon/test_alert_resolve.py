"""An operator resolves alerts through a daemon with keys and locally; each
resolution reaches a webhook receiver on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from daemon_support import MODEL, make_keys
from daemon_support import run_cli as cli
from support import WebhookReceiver

from appliance.monitoring import AlertCandidate, MonitoringStore

WAIT_SECONDS = 20.0


def _open_alerts(home: Path) -> list[int]:
    """Open two drift alerts of `MODEL` and return their ids."""
    with MonitoringStore(home) as store:
        return [
            store.record_alert(
                AlertCandidate(
                    MODEL, "drift", feature, "warning", f"drift on {feature}"
                )
            )[0].id
            for feature in ("x1", "x2")
        ]


def _wait_for(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def _bodies_of(webhook: WebhookReceiver, alert_id: int) -> list[dict[str, Any]]:
    return [b for b in webhook.bodies if b["id"] == alert_id]


def test_operator_resolve_reaches_webhook(
    start_daemon: Any, home: Path, webhook: WebhookReceiver
) -> None:
    tokens = make_keys(home, ("reader", "operator", "admin"))
    first, second = _open_alerts(home)
    monitoring = {"webhook_url": webhook.url, "webhook_retries": 0}
    daemon = start_daemon(security={"require_keys": True}, monitoring=monitoring)
    operator = tokens["operator"]

    rejected = cli(daemon.config, "alerts", "resolve", str(first), key=tokens["reader"])
    resolved = cli(daemon.config, "alerts", "resolve", str(first), key=operator)
    delivered = _wait_for(lambda: len(_bodies_of(webhook, first)) == 1)
    again = cli(daemon.config, "alerts", "resolve", str(first), key=operator)
    unknown = cli(daemon.config, "alerts", "resolve", "999", key=operator)
    headers = {"Authorization": f"Bearer {tokens['admin']}"}
    with httpx.Client(base_url=daemon.base, headers=headers, timeout=30) as client:
        alerts = {a["id"]: a for a in client.get("/v1/alerts").json()["alerts"]}
        params = {"action": "alert.resolve"}
        audit = client.get("/v1/admin/audit", params=params).json()["entries"]
    assert daemon.stop() == 0
    acknowledged = cli(daemon.config, "alerts", "ack", str(second))
    local = cli(daemon.config, "alerts", "resolve", str(second))

    assert rejected.returncode == 1
    assert "HTTP 403" in rejected.stderr
    assert "needs role 'operator'" in rejected.stderr
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout.startswith(f"alert {first} resolved at ")
    assert resolved.stdout.rstrip().endswith(": resolved by operator-key (operator)")
    assert delivered, webhook.bodies
    (body,) = _bodies_of(webhook, first)
    assert body["event"] == "resolved"
    assert body["status"] == "resolved"
    assert body["kind"] == "drift"
    assert body["model"] == MODEL
    assert body["resolved_by"] == "operator-key (operator)"
    assert body["resolved_at"] == alerts[first]["resolved_at"]
    assert again.returncode == 0, again.stderr
    assert again.stdout == resolved.stdout
    assert len(_bodies_of(webhook, first)) == 1
    assert unknown.returncode == 1
    assert "alert 999 does not exist" in unknown.stderr
    assert alerts[first]["status"] == "resolved"
    assert alerts[first]["resolution"] == "resolved by operator-key (operator)"
    assert alerts[second]["status"] == "open"
    assert [(e["actor"], e["target"]) for e in audit] == [("operator-key", str(first))]

    assert acknowledged.returncode == 0, acknowledged.stderr
    assert local.returncode == 0, local.stderr
    assert ": resolved by local (" in local.stdout
    (local_body,) = _bodies_of(webhook, second)
    assert local_body["resolved_by"].startswith("local (")
    assert local_body["status"] == "resolved"
    assert local_body["acknowledged_at"] is not None
