"""The audit log on a real daemon: who promoted, who made keys, refusals, tampering."""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import time
from pathlib import Path
from typing import Any

import duckdb
import httpx
from daemon_support import MODEL, bearer, make_keys, write_config
from daemon_support import run_cli as cli

REFUSAL_PERIOD_SECONDS = 0.5
ZERO = "0" * 64


def audit_entries(config: Path, key: str | None = None, *args: str) -> list[dict]:
    listed = cli(config, "audit", "list", "--json", *args, key=key)
    assert listed.returncode == 0, listed.stderr
    return [json.loads(line) for line in listed.stdout.splitlines()]


def test_audit_names_key_of_each_change(start_daemon: Any, home: Path) -> None:
    tokens = make_keys(home)
    daemon = start_daemon(
        security={
            "require_keys": True,
            "refused_audit_seconds": REFUSAL_PERIOD_SECONDS,
        }
    )
    created = cli(
        daemon.config,
        "keys",
        "create",
        "scanner",
        "--role",
        "predictor",
        key=tokens["admin"],
    )
    promoted = cli(
        daemon.config,
        "models",
        "promote",
        MODEL,
        "1",
        "--reason",
        "first champion",
        key=tokens["operator"],
    )
    refused = httpx.post(
        f"{daemon.base}/v1/admin/registry/models/{MODEL}/promote",
        json={"version": 1},
        headers=bearer(tokens["reader"]),
    )
    for _ in range(2):
        httpx.get(f"{daemon.base}/v1/models", headers=bearer("apk_guess"))
    time.sleep(REFUSAL_PERIOD_SECONDS + 1.0)
    entries = audit_entries(daemon.config, tokens["admin"])
    promotions = audit_entries(daemon.config, tokens["admin"], "--action", "model")
    assert daemon.stop() == 0

    assert created.returncode == 0, created.stderr
    token = created.stdout.splitlines()[-1]
    assert token.startswith("apk_")
    assert promoted.returncode == 0, promoted.stderr
    assert refused.status_code == 403
    keys = [e for e in entries if e["action"] == "key.create"]
    user = pwd.getpwuid(os.geteuid()).pw_name
    assert [(e["actor"], e["actor_user"]) for e in keys[:4]] == [("local", user)] * 4
    assert (keys[4]["actor"], keys[4]["actor_role"]) == ("admin-key", "admin")
    assert keys[4]["target"] == "scanner"
    assert keys[4]["details"]["role"] == "predictor"
    # The home's one version was trained and registered before the test.
    assert [e["action"] for e in promotions] == ["model.register", "model.promote"]
    assert promotions[0]["details"]["version"] == 1
    promotion = promotions[1]
    assert (promotion["actor"], promotion["actor_role"]) == ("operator-key", "operator")
    assert promotion["details"]["version"] == 1
    assert promotion["details"]["reason"] == "first champion"
    refusals = [e for e in entries if e["action"] == "request.refused"]
    assert len(refusals) == 1
    assert refusals[0]["details"]["count"] == 3
    reasons = {r["reason"]: r["count"] for r in refusals[0]["details"]["by_reason"]}
    assert reasons == {"unknown key": 2, "role reader": 1}
    text = json.dumps(entries)
    for secret in [*tokens.values(), token, "apk_guess"]:
        assert secret not in text


def test_audit_verify_finds_edited_row(start_daemon: Any, home: Path) -> None:
    tokens = make_keys(home)
    daemon = start_daemon(security={"require_keys": True})
    cli(daemon.config, "models", "promote", MODEL, "1", key=tokens["operator"])
    online = cli(daemon.config, "audit", "verify", key=tokens["admin"])
    assert daemon.stop() == 0
    intact = cli(daemon.config, "audit", "verify")

    catalog = str(home / "catalog.duckdb")
    with duckdb.connect(catalog) as db:
        count, promotion = db.execute(
            "SELECT count(*), max(seq) FILTER (action = 'model.promote') FROM audit_log"
        ).fetchone()
        db.execute("UPDATE audit_log SET actor = 'someone' WHERE seq = ?", [promotion])
    edited = cli(daemon.config, "audit", "verify")
    with duckdb.connect(catalog) as db:
        db.execute("DELETE FROM audit_log WHERE seq = ?", [promotion - 1])
    deleted = cli(daemon.config, "audit", "verify")

    assert online.returncode == 0, online.stderr
    assert f"audit log intact: {count} entries" in online.stdout
    assert f"keep '{count}:" in online.stdout
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout == online.stdout
    assert edited.returncode == 1
    assert (
        f"broken at entry {promotion}: entry {promotion} was changed" in edited.stdout
    )
    assert f"the {promotion - 1} entries before it verified" in edited.stdout
    assert deleted.returncode == 1
    assert f"entry {promotion - 1} is missing" in deleted.stdout


def test_audit_anchor_finds_deleted_newest(start_daemon: Any, home: Path) -> None:
    tokens = make_keys(home)
    daemon = start_daemon(security={"require_keys": True})
    cli(daemon.config, "models", "promote", MODEL, "1", key=tokens["operator"])
    logged = re.findall(r"audit entry recorded seq=(\d+) \S+ hash=(\w+)", daemon.log())
    anchor = ":".join(logged[-1])
    online = cli(
        daemon.config, "audit", "verify", "--anchor", anchor, key=tokens["admin"]
    )
    malformed = httpx.get(
        f"{daemon.base}/v1/admin/audit/verify",
        params={"anchor": "7:abc"},
        headers=bearer(tokens["admin"]),
    )
    assert daemon.stop() == 0
    with duckdb.connect(str(home / "catalog.duckdb")) as db:
        db.execute("DELETE FROM audit_log WHERE seq = ?", [int(logged[-1][0])])
    unanchored = cli(daemon.config, "audit", "verify")
    anchored = cli(daemon.config, "audit", "verify", "--anchor", anchor)
    last = int(logged[-1][0])
    rebuilt = cli(daemon.config, "audit", "verify", "--anchor", f"{last - 1}:{ZERO}")

    assert online.returncode == 0, online.stderr
    assert f"entry {logged[-1][0]} matches the anchor" in online.stdout
    assert malformed.status_code == 422
    assert "invalid audit anchor '7:abc'" in malformed.json()["error"]
    assert unanchored.returncode == 0
    assert anchored.returncode == 1
    assert f"the log ends at entry {last - 1} but the anchor names entry {last}" in (
        anchored.stdout
    )
    assert rebuilt.returncode == 1
    assert f"entry {last - 1} has hash " in rebuilt.stdout
    assert f"not the anchor's {ZERO}" in rebuilt.stdout


def test_keys_cli_without_daemon(home: Path, tmp_path: Path) -> None:
    from daemon_support import write_config

    config = write_config(tmp_path / "config.toml", home)
    created = cli(config, "keys", "create", "ops", "--role", "admin", "--json")
    listed = cli(config, "keys", "list", "--json")
    revoked = cli(config, "keys", "revoke", "ops")
    last = cli(config, "keys", "create", "ops", "--role", "reader")
    reserved = cli(config, "keys", "create", "local", "--role", "reader")
    actions = [e["action"] for e in audit_entries(config)]

    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    assert body["token"].startswith("apk_")
    assert json.loads(listed.stdout)["token_prefix"] == body["token"][:10]
    assert body["token"] not in listed.stdout
    assert revoked.returncode == 1
    assert "last active admin key" in revoked.stderr
    assert last.returncode == 1
    assert "a key named 'ops' exists" in last.stderr
    assert reserved.returncode == 1
    assert "reserved" in reserved.stderr
    assert actions[-1] == "key.create"
    with duckdb.connect(str(home / "catalog.duckdb"), read_only=True) as db:
        stored = db.execute("SELECT token_sha256 FROM api_keys").fetchall()
    assert body["token"] not in json.dumps(stored)


def test_reload_and_ack_audited(start_daemon: Any, home: Path) -> None:
    from appliance.monitoring import AlertCandidate, MonitoringStore

    with MonitoringStore(home) as store:
        alert, _ = store.record_alert(
            AlertCandidate(MODEL, "drift", "x1", "warning", "x1 drifted", 0.3, 0.2)
        )
    daemon = start_daemon()
    acked = cli(daemon.config, "alerts", "ack", str(alert.id))
    os.kill(daemon.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "config reloaded" not in daemon.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert daemon.stop() == 0
    entries = audit_entries(daemon.config)

    assert acked.returncode == 0, acked.stderr
    assert f"alert {alert.id} acknowledged" in acked.stdout
    acks = [e for e in entries if e["action"] == "alert.acknowledge"]
    assert [(e["target"], e["actor"]) for e in acks] == [(str(alert.id), "anonymous")]
    assert acks[0]["details"] == {"kind": "drift", "model": MODEL}
    reloads = [e for e in entries if e["action"] == "config.reload"]
    assert [(e["actor"], e["outcome"]) for e in reloads] == [("daemon", "ok")]
    assert reloads[0]["target"] == str(daemon.config.resolve())


def test_audit_goes_on_after_newest_deleted(tmp_path: Path) -> None:
    from appliance.access import record
    from appliance.storage import Catalog

    home = tmp_path / "home"
    with Catalog(home) as catalog:
        for index in range(25):
            record(catalog, "test.step", f"step {index}")
        catalog.db.execute("DELETE FROM audit_log WHERE seq >= 22")
    with Catalog(home) as catalog:
        written = [record(catalog, "test.step", f"again {i}") for i in range(2)]

    assert [entry.seq if entry else None for entry in written] == [22, 23]


def test_alias_history_records_key(start_daemon: Any, home: Path) -> None:
    tokens = make_keys(home)
    daemon = start_daemon(security={"require_keys": True})
    operator = tokens["operator"]
    promote = ("models", "promote", MODEL, "1", "--alias", "challenger")

    spoofed = cli(daemon.config, *promote, "--by", "ceo", key=operator)
    promoted = cli(daemon.config, *promote, "--reason", "trial", key=operator)
    again = cli(daemon.config, *promote, "--reason", "again", key=operator)
    claimed = httpx.post(
        f"{daemon.base}/v1/admin/registry/models/{MODEL}/promote",
        json={"version": 1, "actor": "ceo", "reason": "by hand"},
        headers=bearer(operator),
    )
    history = cli(daemon.config, "models", "history", MODEL, "--json", key=operator)
    audited = audit_entries(daemon.config, tokens["admin"], "--action", "model")
    assert daemon.stop() == 0

    assert spoofed.returncode == 1
    assert "--by 'ceo' is not accepted with an API key" in spoofed.stderr
    assert promoted.returncode == 0, promoted.stderr
    assert "set by operator-key (operator): trial" in promoted.stdout
    assert again.returncode == 0, again.stderr
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["actor"] == "operator-key (operator)"
    events = [json.loads(line) for line in history.stdout.splitlines()]
    assert [(e["alias"], e["actor"], e["reason"]) for e in events] == [
        ("challenger", "operator-key (operator)", "trial"),
        ("champion", "operator-key (operator)", "by hand"),
    ]
    promotions = [e for e in audited if e["action"] == "model.promote"]
    # The rejected --by sent no request, so it left no entry.
    assert [e["outcome"] for e in promotions] == ["ok", "unchanged", "ok"]
    unchanged = promotions[1]["details"]
    assert unchanged["actor"] == "operator-key (operator)"
    assert unchanged["reason"] == "again"
    assert unchanged["set_by"] == "operator-key (operator)"
    assert promotions[2]["details"]["requested_by"] == "ceo"


def test_unchanged_promotion_audits_by(home: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", home)
    promote = ("models", "promote", MODEL, "1", "--by", "ann")

    first = cli(config, *promote, "--reason", "first")
    again = cli(config, *promote[:-1], "bob", "--reason", "checked again")
    audited = audit_entries(config, None, "--action", "model.promote")

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert "already is the champion (set by ann at" in again.stdout
    assert [e["outcome"] for e in audited] == ["ok", "unchanged"]
    details = audited[1]["details"]
    assert (details["actor"], details["reason"]) == ("bob", "checked again")
    assert (details["set_by"], details["version"]) == ("ann", 1)
