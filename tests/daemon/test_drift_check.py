"""The batch drift check run at once: through a daemon with keys, and locally.

Requests send rows whose x1 rises steadily from -2 to 5.4, unlike the standard
normal x1 of the training data, so the check finds x1 drifted.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from daemon_support import MODEL, make_keys, row
from daemon_support import run_cli as cli
from support import WebhookReceiver

ROWS = 200
WAIT_SECONDS = 30.0
CHECK = ("drift", MODEL, "--check")


def _logged(client: httpx.Client) -> int:
    params = {"model": MODEL, "limit": 1000}
    return len(client.get("/v1/predictions", params=params).json()["predictions"])


def _wait_until_logged(client: httpx.Client, rows: int) -> bool:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if _logged(client) >= rows:
            return True
        time.sleep(0.2)
    return False


def test_drift_check_now_through_daemon_and_locally(
    start_daemon: Any, home: Path, webhook: WebhookReceiver
) -> None:
    tokens = make_keys(home)
    monitoring = {"min_samples": 20, "webhook_url": webhook.url, "webhook_retries": 0}
    daemon = start_daemon(security={"require_keys": True}, monitoring=monitoring)
    headers = {"Authorization": f"Bearer {tokens['admin']}"}
    with httpx.Client(base_url=daemon.base, headers=headers, timeout=30) as client:
        predicted = client.post(
            f"/v1/models/{MODEL}/predict",
            json={"rows": [row(i) for i in range(ROWS)]},
        )
        logged = _wait_until_logged(client, ROWS)
        reader = cli(daemon.config, *CHECK, key=tokens["reader"])
        operator = cli(daemon.config, *CHECK, key=tokens["operator"])
        every = cli(daemon.config, "drift", "--check", "--json", key=tokens["operator"])
        summary = client.get(f"/v1/models/{MODEL}/drift").json()
        audit = client.get("/v1/admin/audit", params={"action": "drift.check"}).json()
        alerts = client.get("/v1/alerts").json()["alerts"]
    assert daemon.stop() == 0
    local = cli(daemon.config, *CHECK, "--json")
    after = cli(daemon.config, "drift", MODEL, "--json")

    assert predicted.status_code == 200, predicted.text
    assert logged
    assert reader.returncode == 1
    assert "HTTP 403" in reader.stderr
    assert "needs role 'operator'" in reader.stderr
    assert operator.returncode == 0, operator.stderr
    lines = operator.stdout.splitlines()
    assert lines[0].startswith(f"drift check of {MODEL} at ")
    assert f": {ROWS} logged rows, 3 features tested, drifted: " in lines[0]
    assert "x1" in lines[0].split("drifted: ")[1]
    (alert,) = [a for a in alerts if a["kind"] == "drift"]
    assert lines[1].startswith("reference: version 1, ")
    assert lines[2] == f"drift alert {alert['id']} opened"
    assert lines[3].split() == [
        "feature",
        "kind",
        "status",
        "psi",
        "statistic",
        "p_value",
    ]
    scored = {line.split()[0]: line.split()[2] for line in lines[4:]}
    assert scored["x1"] == "drift"
    assert set(scored) == {"x1", "x2", "color"}

    assert every.returncode == 0, every.stderr
    (checked,) = [json.loads(line) for line in every.stdout.splitlines()]
    assert checked["model"] == MODEL
    assert checked["rows"] == ROWS
    assert checked["tested"] == 3
    assert "x1" in checked["drifted"]
    assert checked["alert_id"] == alert["id"]
    assert checked["alert_opened"] is False
    assert {f["feature"] for f in checked["features"]} == {"x1", "x2", "color"}
    assert alert["count"] == 2

    latest = {r["feature"]: r for r in summary["latest"]}
    assert set(latest) == {"x1", "x2", "color"}
    stored_at = datetime.fromisoformat(str(latest["x1"]["checked_at"]))
    assert stored_at == datetime.fromisoformat(checked["checked_at"])
    assert len(summary["history"]) == 1

    entries = audit["entries"]
    assert [e["actor"] for e in entries] == ["operator-key", "operator-key"]
    assert [e["target"] for e in entries] == [MODEL, MODEL]
    opened = [b for b in webhook.bodies if b["kind"] == "drift"]
    assert [b["id"] for b in opened] == [alert["id"]]

    assert local.returncode == 0, local.stderr
    offline = json.loads(local.stdout)
    assert offline["rows"] == ROWS
    assert offline["alert_id"] == alert["id"]
    assert after.returncode == 0, after.stderr
    assert len(json.loads(after.stdout)["history"]) == 2


def test_drift_check_skips_without_predictions(start_daemon: Any, home: Path) -> None:
    daemon = start_daemon()
    through_daemon = cli(daemon.config, *CHECK)
    assert daemon.stop() == 0
    local = cli(daemon.config, *CHECK)
    unknown = cli(daemon.config, "drift", "nope", "--check")
    no_name = cli(daemon.config, "drift")

    skipped = "skipped: no logged prediction yet"
    assert through_daemon.returncode == 0, through_daemon.stderr
    assert through_daemon.stdout.startswith(f"drift check of {MODEL} at ")
    assert skipped in through_daemon.stdout
    assert local.returncode == 0, local.stderr
    assert skipped in local.stdout
    assert unknown.returncode == 1
    assert "model 'nope' is not declared" in unknown.stderr
    assert f"declared models: {MODEL}" in unknown.stderr
    assert no_name.returncode == 2
    assert "give a model name, or --check to check every model" in no_name.stderr


def test_drift_check_reads_rolled_files(start_daemon: Any, home: Path) -> None:
    # The table keeps at most 40 rows, so most of the 200 rows are rolled to
    # Parquet files before the check, whose window is 150 rows.
    daemon = start_daemon(
        predictions={"roll_rows": 40}, monitoring={"drift_window_rows": 150}
    )
    with httpx.Client(base_url=daemon.base, timeout=30) as client:
        for start in range(0, ROWS, 50):
            rows = [row(i) for i in range(start, start + 50)]
            predicted = client.post(f"/v1/models/{MODEL}/predict", json={"rows": rows})
            assert predicted.status_code == 200, predicted.text
        logged = _wait_until_logged(client, ROWS)
        through_daemon = cli(daemon.config, *CHECK, "--json")
    assert daemon.stop() == 0
    local = cli(daemon.config, *CHECK, "--json")
    rolled = list((home / "predictions" / "parquet").glob("*.parquet"))

    assert logged
    assert rolled
    assert through_daemon.returncode == 0, through_daemon.stderr
    assert json.loads(through_daemon.stdout)["rows"] == 150
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout)["rows"] == 150
