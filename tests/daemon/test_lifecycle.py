"""The daemon's life: lock, readiness, SIGTERM under load, spill, SIGHUP."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from daemon_support import (
    MODEL,
    Daemon,
    free_port,
    logged_rows,
    row,
    run_cli,
    write_config,
)
from prometheus_client.parser import text_string_to_metric_families

PREDICT = f"/v1/models/{MODEL}/predict"


def metric(daemon: Daemon, name: str) -> float:
    text = httpx.get(daemon.base + "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"metric {name} not exposed")


def test_health_routes(start_daemon: Any) -> None:
    daemon = start_daemon()
    assert httpx.get(daemon.base + "/health").json() == {"status": "ok", "models": 1}
    assert httpx.get(daemon.base + "/health/live").status_code == 200
    ready = httpx.get(daemon.base + "/health/ready").json()
    assert ready["models"] == [MODEL]
    assert ready["prediction_log_running"] is True


def test_second_daemon_on_home_refused(start_daemon: Any, tmp_path: Path) -> None:
    first = start_daemon()
    second = Daemon(first.config, first.home, free_port())
    try:
        status = second.process.wait(60)
    finally:
        second.kill()
    assert status == 1
    assert f"pid {first.process.pid}" in second.log()
    assert "already runs on home" in second.log()
    assert httpx.get(first.base + "/health/ready").status_code == 200


def test_sigterm_under_load_keeps_acknowledged(start_daemon: Any) -> None:
    daemon = start_daemon(predictions={"flush_seconds": 5.0})
    acknowledged: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=daemon.base, timeout=10) as client:
            index = worker
            while not stop.is_set():
                try:
                    response = client.post(PREDICT, json={"rows": [row(index)]})
                except httpx.TransportError:
                    return
                if response.status_code == 200:
                    with lock:
                        acknowledged.add(response.json()["request_id"])
                index += 4

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    os.kill(daemon.process.pid, signal.SIGTERM)
    status = daemon.process.wait(30)
    stop.set()
    for thread in threads:
        thread.join(15)
    assert status == 0, daemon.log()
    assert len(acknowledged) > 20
    logged = {request_id for request_id, _ in logged_rows(daemon.home)}
    assert acknowledged - logged == set()
    assert "prediction log stopped" in daemon.log()
    assert "scheduler stopped" in daemon.log()


def test_full_queue_spills_and_catches_up(start_daemon: Any) -> None:
    daemon = start_daemon(
        predictions={"queue_max_rows": 2, "batch_rows": 1000, "flush_seconds": 1.5}
    )
    request_ids = set()
    with httpx.Client(base_url=daemon.base) as client:
        for index in range(30):
            response = client.post(PREDICT, json={"rows": [row(index)]})
            assert response.status_code == 200
            request_ids.add(response.json()["request_id"])
    assert metric(daemon, "appliance_prediction_log_spilled_rows_total") >= 20
    spill_dir = daemon.home / "predictions" / "spill"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        written = metric(daemon, "appliance_prediction_log_written_rows_total")
        if written == 30 and not list(spill_dir.glob("*.arrow")):
            break
        time.sleep(0.2)
    assert metric(daemon, "appliance_prediction_log_written_rows_total") == 30
    assert list(spill_dir.glob("*.arrow")) == []
    assert daemon.stop() == 0
    logged = logged_rows(daemon.home)
    assert sorted(r for r, _ in logged) == sorted(request_ids)


def test_sighup_reloads_or_keeps_config(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon(server={"max_rows": 5})
    three = {"rows": [row(i) for i in range(3)]}
    assert httpx.post(daemon.base + PREDICT, json=three).status_code == 200

    write_config(daemon.config, daemon.home, server={"max_rows": 2})
    os.kill(daemon.process.pid, signal.SIGHUP)
    assert _eventually(
        lambda: httpx.post(daemon.base + PREDICT, json=three).status_code == 413
    )

    daemon.config.write_text("this is not toml = = \n", encoding="utf-8")
    os.kill(daemon.process.pid, signal.SIGHUP)
    assert _eventually(lambda: "config reload rejected" in daemon.log())
    assert httpx.post(daemon.base + PREDICT, json=three).status_code == 413
    two = {"rows": [row(0), row(1)]}
    assert httpx.post(daemon.base + PREDICT, json=two).status_code == 200

    write_config(daemon.config, daemon.home, server={"max_rows": 2, "port": 1})
    os.kill(daemon.process.pid, signal.SIGHUP)
    assert _eventually(lambda: "restart the daemon to apply it" in daemon.log())

    # A folder in place of the file cannot be read, as a file without read
    # permission cannot.
    daemon.config.unlink()
    daemon.config.mkdir()
    os.kill(daemon.process.pid, signal.SIGHUP)
    unreadable = f"configuration file {daemon.config} could not be read"
    assert _eventually(lambda: unreadable in daemon.log())
    assert "Traceback" not in daemon.log()
    assert httpx.post(daemon.base + PREDICT, json=two).status_code == 200
    assert daemon.stop() == 0


def test_sighup_rejects_bad_contract_type(start_daemon: Any) -> None:
    daemon = start_daemon(server={"max_rows": 5})
    three = {"rows": [row(i) for i in range(3)]}
    contract = {"datasets.points.contract.columns.x1": {"type": "NOTATYPE"}}
    write_config(daemon.config, daemon.home, server={"max_rows": 2}, **contract)

    os.kill(daemon.process.pid, signal.SIGHUP)

    assert _eventually(lambda: "config reload rejected" in daemon.log())
    (rejected,) = [
        line for line in daemon.log().splitlines() if "reload rejected" in line
    ]
    assert "[datasets.points.contract.columns.x1] type = 'NOTATYPE'" in rejected
    assert "is not a type that contracts support" in rejected
    assert httpx.post(daemon.base + PREDICT, json=three).status_code == 200
    assert daemon.stop() == 0


def test_sighup_applies_ingest_flush_seconds(start_daemon: Any) -> None:
    daemon = start_daemon(ingest={"flush_seconds": 3600})
    rows = daemon.base + "/v1/datasets/points/rows"
    sent = {"rows": [{**row(0), "label": 1}]}
    assert httpx.post(rows, json=sent).status_code == 202
    time.sleep(1.0)
    assert httpx.get(rows).json()["buffered"] == 1

    write_config(daemon.config, daemon.home, ingest={"flush_seconds": 0.2})
    os.kill(daemon.process.pid, signal.SIGHUP)

    assert _eventually(lambda: httpx.get(rows).json()["flushes"] == 1)
    assert httpx.get(rows).json()["buffered"] == 0
    assert daemon.stop() == 0


def test_sighup_rejection_names_changed_keys(start_daemon: Any) -> None:
    daemon = start_daemon(predictions={"queue_max_rows": 1000})
    changed = {
        "server": {"port": 1},
        "predictions": {"queue_max_rows": 5},
        "security": {"refused_audit_seconds": 7, "column_key": "other.key"},
    }
    write_config(daemon.config, daemon.home, **changed)
    os.kill(daemon.process.pid, signal.SIGHUP)
    assert _eventually(lambda: "restart the daemon to apply them" in daemon.log())

    (rejected,) = [
        line for line in daemon.log().splitlines() if "reload rejected" in line
    ]
    other_key = daemon.config.parent / "other.key"
    assert "server.port: 8765 -> 1" in rejected
    assert "predictions.queue_max_rows: 1000 -> 5" in rejected
    # The log quotes the error as a JSON string, so its quotes are escaped.
    assert f'security.column_key: (not set) -> \\"{other_key}\\"' in rejected
    assert "refused_audit_seconds" not in rejected
    assert "PredictionsConfig(" not in rejected
    assert "SecurityConfig(" not in rejected
    assert "batch_rows" not in rejected
    assert "require_keys" not in rejected
    assert daemon.stop() == 0


def test_damaged_catalog_start_fails_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "catalog.duckdb").write_bytes(b"not a database" * 500)
    config = write_config(tmp_path / "config.toml", home)

    started = run_cli(config, "serve", "--port", str(free_port()))

    assert started.returncode == 1
    assert "Traceback" not in started.stderr
    assert 'daemon start failed error="cannot open the catalog' in started.stderr
    last = started.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the daemon failed to start: cannot open the catalog")
    assert "restore it from a backup" in last


def test_bind_errors_name_host_or_port(start_daemon: Any) -> None:
    first = start_daemon()
    assert first.stop() == 0
    # 192.0.2.1 is reserved for documentation, so no interface of this
    # machine has it. Keys are required, because the daemon rejects an open
    # API on an address other than a loopback one before it binds.
    exposed = write_config(
        first.config.parent / "exposed.toml",
        first.home,
        security={"require_keys": True},
    )
    elsewhere = run_cli(exposed, "serve", "--host", "192.0.2.1", "--port", "0")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        port_in_use = run_cli(first.config, "serve", "--port", str(port))

    assert elsewhere.returncode == 1
    assert "cannot listen on 192.0.2.1:0" in elsewhere.stderr
    assert "check [server] host" in elsewhere.stderr
    assert port_in_use.returncode == 1
    assert "choose another [server] port" in port_in_use.stderr


def test_sighup_reschedules_jobs(start_daemon: Any) -> None:
    daemon = start_daemon()
    assert "retrain:demo" not in _job_triggers(daemon)

    retrain = {"trigger": "schedule", "schedule": "15 3 * * *"}
    monitoring = {"health_interval_seconds": 120}
    sections = {"monitoring": monitoring, f"models.{MODEL}.retrain": retrain}
    write_config(daemon.config, daemon.home, **sections)
    os.kill(daemon.process.pid, signal.SIGHUP)
    assert _eventually(lambda: "retrain:demo" in _job_triggers(daemon))
    triggers = _job_triggers(daemon)
    assert "hour='3', minute='15'" in triggers["retrain:demo"]
    assert "0:02:00" in triggers["health:demo"]

    write_config(daemon.config, daemon.home)
    os.kill(daemon.process.pid, signal.SIGHUP)
    assert _eventually(lambda: "retrain:demo" not in _job_triggers(daemon))
    assert daemon.stop() == 0


def _job_triggers(daemon: Daemon) -> dict[str, str]:
    jobs = httpx.get(daemon.base + "/v1/ui/jobs").json()["jobs"]
    return {job["id"]: job["trigger"] for job in jobs}


def _eventually(check: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_log_rolls_over_to_parquet(start_daemon: Any) -> None:
    daemon = start_daemon(
        predictions={"roll_rows": 10, "batch_rows": 4, "flush_seconds": 0.1}
    )
    request_ids = []
    with httpx.Client(base_url=daemon.base) as client:
        for index in range(12):
            body = {"rows": [row(index), row(index + 1)]}
            request_ids.append(client.post(PREDICT, json=body).json()["request_id"])
    assert daemon.stop() == 0
    assert list((daemon.home / "predictions" / "parquet").glob("*.parquet"))
    logged = logged_rows(daemon.home)
    assert len(logged) == 24
    assert {r for r, _ in logged} == set(request_ids)
