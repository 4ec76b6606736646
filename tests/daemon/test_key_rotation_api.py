"""Rotation of the home's signing key through a running daemon's admin API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from daemon_support import MODEL, bearer, make_keys, row, run_cli

from appliance.access import list_entries
from appliance.signing import key_id, read_public_key
from appliance.storage import Catalog

PREDICT = f"/v1/models/{MODEL}/predict"


def _home_key_id(home: Path) -> str:
    return key_id(read_public_key(home / "signing" / "ed25519.pub"))


def _signer(home: Path, version: int) -> str:
    path = home / "models" / MODEL / str(version) / "signature.json"
    return str(json.loads(path.read_text("utf-8"))["key_id"])


def test_rotation_through_daemon(start_daemon: Any, home: Path) -> None:
    tokens = make_keys(home, ("operator", "admin"))
    daemon = start_daemon(security={"require_keys": True})
    admin = bearer(tokens["admin"])
    with httpx.Client(base_url=daemon.base, headers=admin, timeout=300) as http:
        assert http.post("/v1/admin/train", json={"model": MODEL}).status_code == 200
    old_id = _home_key_id(home)
    assert _signer(home, 2) == old_id

    refused = run_cli(daemon.config, "models", "rotate-key", key=tokens["operator"])
    assert refused.returncode == 1
    assert "needs role 'admin'" in refused.stderr
    assert _home_key_id(home) == old_id

    result = run_cli(daemon.config, "models", "rotate-key", key=tokens["admin"])

    assert result.returncode == 0, result.stderr
    new_id = _home_key_id(home)
    assert new_id != old_id
    assert "re-signed demo@2\nre-signed demo@1\n" in result.stdout
    assert [_signer(home, v) for v in (1, 2)] == [new_id, new_id]
    assert "model version re-signed model=demo version=1" in daemon.log()
    # The promotion verifies version 2's files on disk with the new key.
    promoted = run_cli(
        daemon.config, "models", "promote", MODEL, "2", key=tokens["admin"]
    )
    assert promoted.returncode == 0, promoted.stderr
    with httpx.Client(base_url=daemon.base, headers=admin, timeout=300) as http:
        for version in (None, 1, 2):
            params = {} if version is None else {"version": version}
            answer = http.post(PREDICT, params=params, json={"rows": [row(0)]})
            assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == 2
        assert http.post("/v1/admin/train", json={"model": MODEL}).status_code == 200
    assert _signer(home, 3) == new_id
    verified = run_cli(daemon.config, "models", "verify", MODEL, key=tokens["admin"])
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.count(new_id) == 3
    assert daemon.stop() == 0

    with Catalog(home, read_only=True) as catalog:
        (entry,) = list_entries(catalog, action="signing.rotate")
    assert (entry.actor, entry.actor_role, entry.outcome) == (
        "admin-key",
        "admin",
        "ok",
    )
    details = json.loads(entry.details)
    assert (details["old_key_id"], details["new_key_id"]) == (old_id, new_id)
    assert details["resigned"] == ["demo@2", "demo@1"]

    restarted = start_daemon()
    answer = httpx.post(restarted.base + PREDICT, json={"rows": [row(1)]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == 2
    assert restarted.stop() == 0
