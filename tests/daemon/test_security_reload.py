"""SIGHUP reloads of ``[security]`` on a real daemon: applied, or rejected by key."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from daemon_support import MODEL, Daemon, write_config

from appliance.access import create_key, list_entries
from appliance.signing import key_id
from appliance.storage import Catalog


def _eventually(check: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def _reload_lines(daemon: Daemon) -> list[str]:
    """Return the daemon's log lines that end a reload, oldest first."""
    done = ("config reloaded", "config reload rejected")
    return [line for line in daemon.log().splitlines() if any(w in line for w in done)]


def _reload(daemon: Daemon, **sections: dict[str, Any]) -> str:
    """Rewrite the daemon's config, send SIGHUP and return the reload's log line."""
    before = len(_reload_lines(daemon))
    write_config(daemon.config, daemon.home, **sections)
    os.kill(daemon.process.pid, signal.SIGHUP)
    assert _eventually(lambda: len(_reload_lines(daemon)) > before), daemon.log()
    return _reload_lines(daemon)[before]


def _write_private_key(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    return key


def test_sighup_applies_require_keys(start_daemon: Any, home: Path) -> None:
    with Catalog(home) as catalog:
        _, token = create_key(catalog, "ops", "admin")
    daemon = start_daemon()
    models = daemon.base + "/v1/models"
    assert httpx.get(models).status_code == 200

    security = {"require_keys": True, "refused_audit_seconds": 7}
    line = _reload(daemon, security=security)
    assert "config reloaded" in line
    without = httpx.get(models)
    assert without.status_code == 401
    assert without.json()["required_role"] == "reader"
    with_key = httpx.get(models, headers={"Authorization": f"Bearer {token}"})
    assert with_key.status_code == 200
    assert "one audit entry per 7 s" in daemon.log()
    applied = "security.require_keys: false -> true; security.refused_audit_seconds"
    assert applied in daemon.log()

    line = _reload(daemon, security={"require_keys": False})
    assert "config reloaded" in line
    assert httpx.get(models).status_code == 200
    assert daemon.stop() == 0

    with Catalog(home, read_only=True) as catalog:
        reloads = list_entries(catalog, action="config.reload")
    assert [entry.outcome for entry in reloads] == ["ok", "ok"]
    assert json.loads(reloads[0].details)["security"] == [
        "security.require_keys: false -> true",
        "security.refused_audit_seconds: 60.0 -> 7.0",
    ]


def test_sighup_require_keys_without_keys(start_daemon: Any) -> None:
    daemon = start_daemon()
    line = _reload(daemon, security={"require_keys": True})
    assert "config reload rejected" in line
    assert "security.require_keys: false -> true" in line
    assert "no active API key" in line
    assert "old config kept" in line
    assert httpx.get(daemon.base + "/v1/models").status_code == 200
    assert daemon.stop() == 0


def test_sighup_rejects_unreadable_trusted_key(start_daemon: Any) -> None:
    daemon = start_daemon()
    missing = daemon.config.parent / "missing.pub"
    line = _reload(daemon, security={"trusted_keys": [str(missing)]})
    assert "config reload rejected" in line
    assert f"security.trusted_keys: public key file {missing} not found" in line
    assert daemon.stop() == 0


def test_sighup_signing_key_keeps_champion_trusted(
    start_daemon: Any, home: Path
) -> None:
    daemon = start_daemon()
    folder = daemon.config.parent
    new_key = _write_private_key(folder / "fleet.key")
    home_public = home / "signing" / "ed25519.pub"

    line = _reload(daemon, security={"signing_key": "fleet.key"})
    assert "config reload rejected" in line
    assert "security.signing_key: (not set) -> " in line
    assert f"served model '{MODEL}' version 1 is signed by key" in line
    assert "add that key's public key to security.trusted_keys" in line

    security = {"signing_key": "fleet.key", "trusted_keys": [str(home_public)]}
    line = _reload(daemon, security=security)
    assert "config reloaded" in line
    trained = httpx.post(
        daemon.base + "/v1/admin/train", json={"model": MODEL}, timeout=120
    )
    assert trained.status_code == 200, trained.text
    manifest = json.loads((Path(trained.json()["path"]) / "signature.json").read_text())
    assert manifest["key_id"] == key_id(new_key.public_key())
    assert httpx.get(daemon.base + "/v1/models").status_code == 200
    assert daemon.stop() == 0


def test_sighup_column_key_needs_restart(start_daemon: Any) -> None:
    daemon = start_daemon()
    line = _reload(daemon, security={"column_key": "other.key"})
    assert "config reload rejected" in line
    other = daemon.config.parent / "other.key"
    # The log writes the error as a JSON string, so its quotes are escaped.
    assert f'security.column_key: (not set) -> \\"{other}\\"' in line
    assert "restart the daemon to apply it" in line
    assert daemon.stop() == 0
