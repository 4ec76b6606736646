"""API keys and roles on a real daemon: 401, 403 and 200 per route and role."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_support import (
    MODEL,
    ROLES,
    Daemon,
    bearer,
    make_keys,
    row,
    write_config,
)
from daemon_support import run_cli as cli

from appliance.monitoring import AlertCandidate, DriftEvent, MonitoringStore


@pytest.fixture
def secured(start_daemon: Any, home: Path) -> tuple[Daemon, dict[str, str]]:
    """Return a daemon that requires keys, and a token per role."""
    tokens = make_keys(home)
    daemon = start_daemon(security={"require_keys": True})
    return daemon, tokens


# Representative routes and the least role each needs.
ROUTES = [
    ("GET", f"/v1/models/{MODEL}/drift", None, "reader"),
    ("GET", "/metrics", None, "reader"),
    ("POST", f"/v1/models/{MODEL}/predict", {"rows": [row(1)]}, "predictor"),
    ("POST", "/v1/alerts/999999/acknowledge", {}, "operator"),
    ("GET", "/v1/admin/keys", None, "admin"),
]


@pytest.mark.parametrize(("method", "path", "body", "needed"), ROUTES)
def test_route_status_per_role(
    secured: tuple[Daemon, dict[str, str]],
    method: str,
    path: str,
    body: Any,
    needed: str,
) -> None:
    daemon, tokens = secured
    with httpx.Client(base_url=daemon.base, timeout=30, trust_env=False) as http:
        missing = http.request(method, path, json=body)
        assert missing.status_code == 401
        assert missing.json()["required_role"] == needed
        assert missing.json()["type"] == "AuthenticationError"
        assert "Authorization: Bearer TOKEN" in missing.json()["error"]
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = http.request(method, path, json=body, headers=bearer("apk_wrong"))
        assert wrong.status_code == 401
        assert "unknown or revoked" in wrong.json()["error"]
        for role in ROLES:
            response = http.request(
                method, path, json=body, headers=bearer(tokens[role])
            )
            if ROLES.index(role) < ROLES.index(needed):
                assert response.status_code == 403, (role, response.text)
                error = response.json()["error"]
                assert f"has role {role!r}" in error
                assert f"needs role {needed!r}" in error
            else:
                # The alert id is unknown, so the operator route returns 404
                # once the gate let the request through.
                assert response.status_code in (200, 404), (role, response.text)
                assert "required_role" not in response.text


def test_predict_with_x_api_key(secured: tuple[Daemon, dict[str, str]]) -> None:
    daemon, tokens = secured
    response = httpx.post(
        f"{daemon.base}/v1/models/{MODEL}/predict",
        json={"rows": [row(2)]},
        headers={"X-API-Key": tokens["predictor"]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 1


def test_authorization_without_bearer_scheme(
    secured: tuple[Daemon, dict[str, str]],
) -> None:
    daemon, tokens = secured
    token = tokens["admin"]
    sent = {
        token: "sent without the 'Bearer' scheme",
        f"Basic {token}": "uses the 'Basic' scheme, not 'Bearer'",
        f"Token {token}": "uses the 'Token' scheme, not 'Bearer'",
        f"{token} {token}": "uses a scheme other than 'Bearer'",
        "Bearer": "has the 'Bearer' scheme but no token",
    }
    with httpx.Client(base_url=daemon.base, timeout=30, trust_env=False) as http:
        for header, problem in sent.items():
            response = http.get("/v1/models", headers={"Authorization": header})
            assert response.status_code == 401, header
            error = response.json()["error"]
            assert problem in error
            assert "'Authorization: Bearer TOKEN'" in error
            assert token not in response.text
    assert token not in daemon.log()
    assert 'reason="no bearer token"' in daemon.log()


def test_health_open_without_key(secured: tuple[Daemon, dict[str, str]]) -> None:
    daemon, _ = secured
    for path in ("/health", "/health/live", "/health/ready"):
        assert httpx.get(daemon.base + path, timeout=10).status_code == 200, path


def test_revoked_key_refused(secured: tuple[Daemon, dict[str, str]]) -> None:
    daemon, tokens = secured
    admin = bearer(tokens["admin"])
    with httpx.Client(base_url=daemon.base, timeout=30, trust_env=False) as http:
        assert (
            http.get("/v1/models", headers=bearer(tokens["reader"])).status_code == 200
        )
        revoked = http.post("/v1/admin/keys/reader-key/revoke", headers=admin)
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["active"] is False
        after = http.get("/v1/models", headers=bearer(tokens["reader"]))
        assert after.status_code == 401
        created = http.post(
            "/v1/admin/keys", json={"name": "late", "role": "reader"}, headers=admin
        )
        assert created.status_code == 201, created.text
        token = created.json()["token"]
        assert http.get("/v1/models", headers=bearer(token)).status_code == 200
        listed = http.get("/v1/admin/keys", headers=admin).json()["keys"]
    assert "token" not in json.dumps(listed).replace("token_prefix", "")
    assert {k["name"]: k["active"] for k in listed}["reader-key"] is False


def test_open_daemon_checks_sent_keys(start_daemon: Any, home: Path) -> None:
    tokens = make_keys(home)
    daemon = start_daemon()
    with httpx.Client(base_url=daemon.base, timeout=30, trust_env=False) as http:
        assert http.get("/v1/admin/keys").status_code == 200
        # Another scheme counts as no key, so a proxy's Basic header passes.
        basic = http.get("/v1/models", headers={"Authorization": "Basic dTpw"})
        assert basic.status_code == 200
        wrong = http.get("/v1/models", headers=bearer("apk_wrong"))
        assert wrong.status_code == 401
        assert "send a valid key or none" in wrong.json()["error"]
        refused = http.get("/v1/admin/keys", headers=bearer(tokens["reader"]))
        assert refused.status_code == 403


def test_cli_sends_env_key(secured: tuple[Daemon, dict[str, str]]) -> None:
    daemon, tokens = secured
    listed = cli(daemon.config, "models", "list", key=tokens["reader"])
    assert listed.returncode == 0, listed.stderr
    assert MODEL in listed.stdout
    without = cli(daemon.config, "models", "list")
    assert without.returncode == 1
    assert "HTTP 401" in without.stderr
    assert "APPLIANCE_API_KEY" in without.stderr
    low = cli(daemon.config, "keys", "list", key=tokens["operator"])
    assert low.returncode == 1
    assert "HTTP 403" in low.stderr


def test_keys_refused_names_recovery(secured: tuple[Daemon, dict[str, str]]) -> None:
    daemon, tokens = secured
    recovery = "Without an admin key, stop the daemon"
    create = ("keys", "create", "rescue", "--role", "admin")

    without = cli(daemon.config, *create)
    low = cli(daemon.config, *create, key=tokens["operator"])
    listed = cli(daemon.config, "keys", "list", "--json", key=tokens["admin"])
    assert daemon.stop() == 0
    local = cli(daemon.config, *create)

    assert without.returncode == 1
    assert "HTTP 401" in without.stderr
    assert recovery in without.stderr
    assert "run 'appliance keys create NAME --role admin'" in without.stderr
    assert low.returncode == 1
    assert "HTTP 403" in low.stderr
    assert recovery in low.stderr
    assert listed.returncode == 0, listed.stderr
    names = [json.loads(line)["name"] for line in listed.stdout.splitlines()]
    assert "rescue" not in names
    assert local.returncode == 0, local.stderr
    assert "key 'rescue' created with role admin" in local.stdout


def record_monitoring(home: Path) -> int:
    """Store three streaming detections and one open alert, and return the alert id."""
    events = [DriftEvent("feature", "x1", "distribution", i * 1000) for i in range(3)]
    with MonitoringStore(home) as store:
        store.record_events(MODEL, events, datetime(2013, 4, 1, tzinfo=timezone.utc))
        candidate = AlertCandidate(MODEL, "drift", "x1", "warning", "drift on x1")
        alert, _ = store.record_alert(candidate)
    return alert.id


def test_cli_monitoring_sends_env_key(start_daemon: Any, home: Path) -> None:
    tokens = make_keys(home)
    alert_id = record_monitoring(home)
    daemon = start_daemon(security={"require_keys": True})
    alerts_args = ("alerts", "list", "--open", "--json")
    drift_args = ("drift", MODEL, "--events", "2")

    alerts_without = cli(daemon.config, *alerts_args)
    drift_without = cli(daemon.config, *drift_args)
    alerts = cli(daemon.config, *alerts_args, key=tokens["reader"])
    drift = cli(daemon.config, *drift_args, key=tokens["reader"])
    assert daemon.stop() == 0
    alerts_local = cli(daemon.config, *alerts_args)
    drift_local = cli(daemon.config, *drift_args)

    for rejected in (alerts_without, drift_without):
        assert rejected.returncode == 1
        assert "HTTP 401" in rejected.stderr
        assert rejected.stdout == ""
    assert alerts.returncode == 0, alerts.stderr
    assert [json.loads(line)["id"] for line in alerts.stdout.splitlines()] == [alert_id]
    assert drift.returncode == 0, drift.stderr
    heading = "streaming detections, newest 2 of 3 (--events N shows more):\n"
    rows = drift.stdout.split(heading)[1].splitlines()
    assert [row.split()[-1] for row in rows[1:]] == ["2000", "1000"]
    assert alerts_local.stdout == alerts.stdout
    assert drift_local.stdout == drift.stdout


def test_explain_and_erase_send_env_key(
    secured: tuple[Daemon, dict[str, str]],
) -> None:
    daemon, tokens = secured
    rows = daemon.config.parent / "explain.csv"
    rows.write_text("x1,x2,color\n0.5,0.1,red\n")

    explained = cli(daemon.config, "explain", MODEL, str(rows), key=tokens["predictor"])
    receipts = cli(daemon.config, "erase", "--list", key=tokens["admin"])
    refused = cli(daemon.config, "erase", "--list", key=tokens["operator"])

    assert explained.returncode == 0, explained.stderr
    assert receipts.returncode == 0, receipts.stderr
    assert refused.returncode == 1
    assert "HTTP 403" in refused.stderr


def test_non_loopback_host_refused(home: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", home)
    started = cli(config, "serve", "--host", "0.0.0.0", "--port", "0")
    assert started.returncode == 1
    assert "require_keys is false" in started.stderr
    assert "0.0.0.0" in started.stderr


def test_require_keys_without_keys_refused(home: Path, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.toml", home, security={"require_keys": True}
    )
    started = cli(config, "serve", "--port", "0")
    assert started.returncode == 1
    assert "no active API key" in started.stderr
    assert "appliance keys create NAME --role admin" in started.stderr
