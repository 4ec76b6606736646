"""API keys that expire: creation, listing, the daemon's 401 and the audit log."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_support import Daemon, bearer, make_keys, run_cli, write_config

from appliance.access import create_key, list_entries, list_keys
from appliance.access._keys import hash_token
from appliance.errors import RequestError
from appliance.storage import Catalog

OLD_TOKEN = "apk_" + "o" * 43

# The api_keys table as catalogs written before keys could expire have it.
OLD_SCHEMA = """
CREATE TABLE api_keys (
    name         VARCHAR PRIMARY KEY,
    role         VARCHAR NOT NULL,
    token_sha256 VARCHAR NOT NULL UNIQUE,
    token_prefix VARCHAR NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    created_by   VARCHAR NOT NULL,
    revoked_at   TIMESTAMPTZ,
    revoked_by   VARCHAR
)
"""


def _wait_until(at: datetime) -> None:
    time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()) + 0.2)


def test_expired_key_gets_401_with_time(start_daemon: Any, home: Path) -> None:
    tokens = make_keys(home, ("reader", "admin"))
    daemon = start_daemon(security={"require_keys": True})
    admin = bearer(tokens["admin"])
    with httpx.Client(base_url=daemon.base, timeout=30, trust_env=False) as http:
        body = {"name": "brief", "role": "reader", "expires_in_seconds": 2}
        created = http.post("/v1/admin/keys", json=body, headers=admin)
        assert created.status_code == 201, created.text
        key = created.json()
        expires_at = datetime.fromisoformat(key["expires_at"])
        created_at = datetime.fromisoformat(key["created_at"])
        assert expires_at - created_at == timedelta(seconds=2)
        assert key["active"] is True
        before = http.get("/v1/models", headers=bearer(key["token"]))
        assert before.status_code == 200, before.text

        _wait_until(expires_at)
        after = http.get("/v1/models", headers=bearer(key["token"]))
        unknown = http.get("/v1/models", headers=bearer("apk_wrong"))
        listed = http.get("/v1/admin/keys", headers=admin).json()["keys"]

    assert after.status_code == 401
    assert after.json()["type"] == "AuthenticationError"
    shown = expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"the API key 'brief' expired at {shown}" in after.json()["error"]
    assert "appliance keys create" in after.json()["error"]
    assert unknown.status_code == 401
    assert "unknown or revoked" in unknown.json()["error"]
    assert "expired" not in unknown.json()["error"]
    brief = {k["name"]: k for k in listed}["brief"]
    assert brief["active"] is False
    assert brief["expired"] is True
    assert brief["expires_at"] == key["expires_at"]
    assert {k["name"]: k for k in listed}["reader-key"]["expires_at"] is None

    assert daemon.stop() == 0
    assert key["token"] not in daemon.log()
    with Catalog(home, read_only=True) as catalog:
        (made,) = [
            e for e in list_entries(catalog, action="key.create") if e.target == "brief"
        ]
        (refused,) = list_entries(catalog, action="request.refused")
    assert json.loads(made.details)["expires_at"] == key["expires_at"]
    reasons = json.loads(refused.details)["by_reason"]
    assert {"status": 401, "key": "brief", "reason": "expired key", "count": 1} in (
        reasons
    )


def test_api_rejects_bad_lifetime(start_daemon: Any) -> None:
    daemon = start_daemon()
    with httpx.Client(base_url=daemon.base, timeout=30, trust_env=False) as http:
        for seconds in (0, -5, 10**12, 400_000_000):
            body = {"name": "bad", "role": "reader", "expires_in_seconds": seconds}
            response = http.post("/v1/admin/keys", json=body)
            assert response.status_code == 422, (seconds, response.text)
            assert "for key 'bad'" in response.json()["error"], seconds
        listed = http.get("/v1/admin/keys").json()["keys"]
    assert listed == []


def test_create_key_rejects_zero_lifetime(tmp_path: Path) -> None:
    with Catalog(tmp_path / "home") as catalog:
        with pytest.raises(RequestError, match=r"invalid lifetime for key 'k': 0 s"):
            create_key(catalog, "k", "reader", timedelta(0))
        assert list_keys(catalog) == []


def test_cli_expires_in_without_daemon(tmp_path: Path, home: Path) -> None:
    config = write_config(tmp_path / "config.toml", home)
    create = ("keys", "create", "k", "--role", "reader", "--expires-in")
    bad = run_cli(config, *create, "30x")
    assert bad.returncode == 2
    assert "invalid duration '30x'" in bad.stderr
    assert "such as 30d or 12h" in bad.stderr
    long = run_cli(config, *create, "9999d")
    assert long.returncode == 2
    assert "at most 3650 days" in long.stderr

    started = datetime.now(UTC)
    made = run_cli(config, *create, "30d")
    assert made.returncode == 0, made.stderr
    assert " until 20" in made.stdout
    listed = run_cli(config, "keys", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (key,) = [json.loads(line) for line in listed.stdout.splitlines()]
    expires_at = datetime.fromisoformat(key["expires_at"])
    assert started + timedelta(days=30) <= expires_at
    assert expires_at <= datetime.now(UTC) + timedelta(days=30)
    assert key["status"] == "active"
    table = run_cli(config, "keys", "list")
    assert "expires_at" in table.stdout.splitlines()[0]


def test_cli_expires_in_through_daemon(start_daemon: Any) -> None:
    daemon = start_daemon()
    args = ("keys", "create", "k", "--role", "reader", "--expires-in", "2s", "--json")
    made = run_cli(daemon.config, *args)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    expires_at = datetime.fromisoformat(key["expires_at"])
    assert expires_at - datetime.fromisoformat(key["created_at"]) == timedelta(
        seconds=2
    )
    _wait_until(expires_at)
    listed = run_cli(daemon.config, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith("k ")]
    assert row.endswith(f"expired {key['expires_at']}")


def _old_catalog(home: Path) -> None:
    """Give `home` an api_keys table without expires_at and one admin key."""
    with Catalog(home) as catalog:
        catalog.db.execute(OLD_SCHEMA)
        catalog.db.execute(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
            [
                "old",
                "admin",
                hash_token(OLD_TOKEN),
                OLD_TOKEN[:10],
                datetime(2026, 1, 1, tzinfo=UTC),
                "local",
            ],
        )


def test_key_from_before_expiry_works(start_daemon: Any, home: Path) -> None:
    _old_catalog(home)
    config = write_config(home.parent / "config.toml", home)
    listed = run_cli(config, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert "never" in listed.stdout.splitlines()[1]
    assert "active" in listed.stdout.splitlines()[1]

    daemon: Daemon = start_daemon(security={"require_keys": True})
    with httpx.Client(base_url=daemon.base, timeout=30, trust_env=False) as http:
        response = http.get("/v1/admin/keys", headers=bearer(OLD_TOKEN))
    assert response.status_code == 200, response.text
    (old,) = response.json()["keys"]
    assert old["expires_at"] is None
    assert old["active"] is True


def test_only_expired_keys_refuse_start(tmp_path: Path, home: Path) -> None:
    with Catalog(home) as catalog:
        _, token = create_key(catalog, "brief", "admin", timedelta(seconds=1))
    config = write_config(
        tmp_path / "config.toml", home, security={"require_keys": True}
    )
    time.sleep(1.2)
    started = run_cli(config, "serve", "--port", "0")
    assert started.returncode == 1
    assert "no active API key (every key is revoked or expired)" in started.stderr
