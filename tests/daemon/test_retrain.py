"""The retraining job of a real daemon on 127.0.0.1, on a small drifting dataset.

Rows of dataset ``events`` are one per two hours from 2024-01-01. For the
first 30 days the label is ``x1 > 0``; after that it is ``x2 > 0``. The
champion (version 1) is trained on the first 30 days only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from daemon_support import Daemon, free_port

from appliance.access import list_entries
from appliance.storage import Catalog

MODEL = "shift"
START = datetime(2024, 1, 1, tzinfo=UTC)
CHANGE_DAY = 30
RETRAIN = f"/v1/models/{MODEL}/retrain"


def day(n: float) -> datetime:
    return START + timedelta(days=n)


def event_rows(first_day: float, last_day: float, seed: int) -> list[dict[str, Any]]:
    """Return labelled rows every two hours from `first_day` up to `last_day`."""
    rng = np.random.default_rng(seed)
    rows = []
    moment = day(first_day)
    while moment < day(last_day):
        x1, x2 = (float(v) for v in rng.normal(size=2))
        drifted = moment >= day(CHANGE_DAY)
        rows.append(
            {
                "t": moment.strftime("%Y-%m-%d %H:%M:%S"),
                "x1": round(x1, 5),
                "x2": round(x2, 5),
                "label": int((x2 if drifted else x1) > 0),
            }
        )
        moment += timedelta(hours=2)
    return rows


def write_config(path: Path, home: Path, **retrain: Any) -> Path:
    policy = {
        "trigger": "drift",
        "clock": "event",
        "cooldown_hours": 24 * 5,
        "min_new_labels": 5,
        "holdout_days": 7,
        "window_days": 20,
        "promote_margin": 0.02,
        **retrain,
    }
    lines = [
        "[storage]",
        f"home = {json.dumps(str(home))}",
        "[ingest]",
        "flush_seconds = 3600",
        # Windows of 100 predicted rows, so a test's few hundred rows fill the
        # streaming detectors' reference of 3 windows.
        "[monitoring]",
        "stream_horizon = 100",
        "stream_reference_cycles = 3",
        f"[models.{MODEL}]",
        'dataset = "events"',
        'target = "label"',
        'task = "classification"',
        'algorithm = "lightgbm"',
        'features = ["x1", "x2"]',
        'event_timestamp = "t"',
        "where = \"t < TIMESTAMP '2024-01-31'\"",
        f"[models.{MODEL}.params]",
        "n_estimators = 20",
        "min_child_samples = 5",
        f"[models.{MODEL}.split]",
        'method = "time"',
        'column = "t"',
        "test_size = 0.2",
        f"[models.{MODEL}.retrain]",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in policy.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def champion_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a home with the first 30 days ingested and version 1 trained."""
    from appliance.config import load_config
    from appliance.storage import Catalog, ingest
    from appliance.training import train_model

    root = tmp_path_factory.mktemp("retrain")
    home = root / "home"
    data = root / "events.csv"
    rows = event_rows(0, CHANGE_DAY, seed=1)
    lines = ["t,x1,x2,label"] + [
        f"{r['t']},{r['x1']},{r['x2']},{r['label']}" for r in rows
    ]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = load_config(write_config(root / "config.toml", home))
    with Catalog(home) as catalog:
        ingest(catalog, "events", [data])
    train_model(config, MODEL)
    return home


@pytest.fixture
def daemon_home(champion_home: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "home"
    shutil.copytree(champion_home, target)
    return target


@pytest.fixture
def daemons() -> Any:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


def start(daemons: list[Daemon], home: Path, **retrain: Any) -> Daemon:
    config = write_config(home.parent / "config.toml", home, **retrain)
    daemon = Daemon(config, home, free_port())
    daemons.append(daemon)
    daemon.wait_ready()
    return daemon


def send_labels(daemon: Daemon, rows: list[dict[str, Any]]) -> httpx.Response:
    """Predict `rows` and send their labels as feedback."""
    inputs = [{k: r[k] for k in ("t", "x1", "x2")} for r in rows]
    predicted = httpx.post(
        daemon.base + f"/v1/models/{MODEL}/predict", json={"rows": inputs}
    )
    assert predicted.status_code == 200, predicted.text
    request_id = predicted.json()["request_id"]
    labels = [
        {"request_id": request_id, "row": i, "label": r["label"]}
        for i, r in enumerate(rows)
    ]
    return httpx.post(
        daemon.base + f"/v1/models/{MODEL}/feedback", json={"labels": labels}
    )


def wait_finished(daemon: Daemon, seconds: float = 90) -> dict[str, Any]:
    """Poll the retrain route until no job runs; return its body."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = httpx.get(daemon.base + RETRAIN).json()
        if not body["running"]:
            return body
        time.sleep(0.2)
    raise AssertionError(f"retraining still running:\n{daemon.log()}")


def version_schema(home: Path, version: int) -> dict[str, Any]:
    """Return the schema.json that training wrote beside a version's ONNX file."""
    text = (home / "models" / MODEL / str(version) / "schema.json").read_text()
    return json.loads(text)


def served_version(daemon: Daemon) -> int:
    models = httpx.get(daemon.base + "/v1/models").json()["models"]
    return next(m["version"] for m in models if m["name"] == MODEL)


def test_retrain_rejects_then_promotes(daemons: list, daemon_home: Path) -> None:
    daemon = start(daemons, daemon_home, window_rows=40)
    labelled = send_labels(daemon, event_rows(50, 52, seed=3))
    worse = httpx.post(
        daemon.base + RETRAIN, json={"as_of": day(CHANGE_DAY).isoformat()}
    )
    rejected = wait_finished(daemon)["history"][0]
    appended = httpx.post(
        daemon.base + "/v1/datasets/events/rows",
        json={"rows": event_rows(CHANGE_DAY, 60, seed=2)},
    )
    better = httpx.post(daemon.base + RETRAIN, json={})
    overlapping = httpx.post(daemon.base + RETRAIN, json={})
    promoted = wait_finished(daemon)["history"][0]
    serving = served_version(daemon)
    cooling = httpx.post(
        daemon.base + RETRAIN,
        json={"trigger": "drift", "as_of": day(53).isoformat()},
    )
    history = httpx.get(daemon.base + RETRAIN).json()["history"]
    assert daemon.stop() == 0

    assert labelled.json()["stored"] == 24
    assert worse.status_code == 202, worse.text
    assert worse.json()["outcome"] == "running"
    assert rejected["outcome"] == "rejected", rejected
    assert "below margin 0.02" in rejected["reason"]
    assert rejected["champion_version"] == 1
    assert rejected["challenger_version"] == 2
    assert rejected["promoted_version"] is None
    assert rejected["detail"]["rows_train"] == 40
    assert appended.status_code == 202
    assert better.status_code == 202, better.text
    assert better.json()["as_of"].startswith("2024-02-21T22:00:00")
    assert overlapping.status_code == 409
    assert overlapping.json()["job_id"] == better.json()["id"]
    assert promoted["id"] == better.json()["id"]
    assert promoted["outcome"] == "promoted", promoted
    assert promoted["new_labels"] == 24
    assert promoted["challenger_score"] > promoted["champion_score"] + 0.02
    assert promoted["challenger_version"] == 3
    assert promoted["promoted_version"] == 4
    assert "refit on the whole window as version 4" in promoted["reason"]
    assert serving == 4
    assert cooling.status_code == 200
    assert cooling.json()["outcome"] == "skipped"
    assert "cooldown_hours = 120 allows the next from" in cooling.json()["reason"]
    assert [r["outcome"] for r in history] == ["skipped", "promoted", "rejected"]
    assert stored_event_times(daemon_home)[0] == "2024-02-20 00:00:00+00:00"

    challenger, refit = version_schema(daemon_home, 3), version_schema(daemon_home, 4)
    assert refit["window"]["refit"] is True
    assert refit["rows_test"] == challenger["rows_test"]
    assert refit["rows_train"] == challenger["rows_train"] + challenger["rows_test"]
    assert refit["reference_metrics"] == challenger["metrics"]

    with Catalog(daemon_home, read_only=True) as catalog:
        entries = list_entries(catalog)
    finished = [e.outcome for e in entries if e.action == "retrain.finish"]
    assert finished == ["rejected", "promoted"]
    promotions = [e for e in entries if e.action == "model.promote"]
    assert [json.loads(e.details)["version"] for e in promotions] == [4]
    assert json.loads(promotions[0].details)["actor"] == "retraining"
    # The requests carried no key, to a daemon that does not require one.
    assert {e.actor for e in entries if e.action.startswith("retrain.")} == {
        "anonymous"
    }
    flushes = [e for e in entries if e.action == "dataset.ingest"]
    assert [e.actor for e in flushes][-1] == "daemon"
    sent = len(event_rows(CHANGE_DAY, 60, seed=2))
    assert json.loads(flushes[-1].details)["accepted"] == sent


def test_retrain_interrupted_runs_once(daemons: list, daemon_home: Path) -> None:
    daemon = start(daemons, daemon_home, trigger="both", schedule="0 3 * * *")
    jobs = httpx.get(daemon.base + "/v1/ui/jobs").json()["jobs"]
    started = httpx.post(
        daemon.base + RETRAIN,
        json={"force": True, "as_of": day(CHANGE_DAY).isoformat()},
    )
    running = httpx.get(daemon.base + RETRAIN).json()["running"]
    os.kill(daemon.process.pid, signal.SIGKILL)
    daemon.process.wait(30)

    daemon = start(daemons, daemon_home)
    after = wait_finished(daemon)["history"]
    assert daemon.stop() == 0
    daemon = start(daemons, daemon_home)
    time.sleep(1.0)
    later = wait_finished(daemon)["history"]
    assert daemon.stop() == 0

    assert "retrain:shift" in [job["id"] for job in jobs]
    assert started.status_code == 202, started.text
    assert running is True
    assert [r["outcome"] for r in after][1:] == ["interrupted"]
    assert after[1]["id"] == started.json()["id"]
    assert after[0]["outcome"] in ("promoted", "rejected"), after[0]
    assert after[0]["detail"]["resumes"] == started.json()["id"]
    assert after[0]["as_of"] == started.json()["as_of"]
    assert after[1]["detail"]["forced"].startswith("forced by the operator")
    assert len(later) == 2


SLOW_SEARCH = f"""
[models.{MODEL}.search]
method = "random"
max_trials = 100000
max_seconds = 120
[models.{MODEL}.search.space]
learning_rate = {{low = 0.01, high = 0.3}}
"""
"""A search that trains for two minutes, longer than a stop waits for a run."""


def start_slow_search(daemons: list, daemon_home: Path) -> tuple[Daemon, Any]:
    """Start a daemon whose model searches for two minutes, and force a retraining.

    The search is bounded by time, not by rounds, so it keeps the daemon busy
    on a fast machine too: 200,000 boosting rounds took 5 s on a quiet one.

    Returns:
        The daemon and the response that started the retraining.
    """
    config = write_config(daemon_home.parent / "config.toml", daemon_home)
    with config.open("a", encoding="utf-8") as file:
        file.write(SLOW_SEARCH)
    daemon = Daemon(config, daemon_home, free_port())
    daemons.append(daemon)
    daemon.wait_ready()
    started = httpx.post(
        daemon.base + RETRAIN,
        json={"force": True, "as_of": day(CHANGE_DAY).isoformat()},
    )
    return daemon, started


def test_retrain_stop_marks_interrupted(daemons: list, daemon_home: Path) -> None:
    daemon, started = start_slow_search(daemons, daemon_home)
    stopped = daemon.stop()
    log = daemon.log()
    stored = stored_history(daemon_home)

    daemon = start(daemons, daemon_home)
    after = wait_finished(daemon)["history"]
    assert daemon.stop() == 0

    assert started.status_code == 202, started.text
    assert stopped == 0, log
    assert stored[0]["id"] == started.json()["id"]
    assert stored[0]["outcome"] == "interrupted", log
    assert stored[0]["detail"]["resume_at_start"] is True
    assert "interrupted by a daemon stop, run again once" in stored[0]["reason"]
    assert after[0]["detail"]["resumes"] == started.json()["id"]
    assert after[0]["outcome"] in ("promoted", "rejected"), after[0]
    assert after[1]["outcome"] == "interrupted"
    assert "resume_at_start" not in after[1]["detail"]


SLOW_FIT_ESTIMATORS = 2_000_000
"""Boosting iterations of a fit still running 2 s after it starts. With
200,000 the whole fit took 5 s on a loaded machine and under 3 s on a quiet
one, where the stop then came after the fit."""


def wait_for_log(daemon: Daemon, text: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while text not in daemon.log():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not logged:\n{daemon.log()}")
        time.sleep(0.1)


def test_retrain_sigterm_stops_training(daemons: list, daemon_home: Path) -> None:
    config = write_config(daemon_home.parent / "config.toml", daemon_home)
    text = config.read_text(encoding="utf-8")
    slow = f"n_estimators = {SLOW_FIT_ESTIMATORS}"
    config.write_text(text.replace("n_estimators = 20", slow), encoding="utf-8")
    daemon = Daemon(config, daemon_home, free_port())
    daemons.append(daemon)
    daemon.wait_ready()
    started = httpx.post(
        daemon.base + RETRAIN,
        json={"force": True, "as_of": day(CHANGE_DAY).isoformat()},
    )
    wait_for_log(daemon, f"model={MODEL} kind=train")
    # Reading the frame took under 0.1 s in daemon logs, so the fit is boosting.
    time.sleep(2.0)
    signalled = time.monotonic()
    stopped = daemon.stop()
    seconds = time.monotonic() - signalled
    log = daemon.log()
    stored = stored_history(daemon_home)
    runs, versions = stored_runs(daemon_home)

    assert started.status_code == 202, started.text
    assert stopped == 0, log
    # A stop that waited for the run instead takes stop_wait_seconds = 10.
    assert seconds < 8.0, log
    assert stored[0]["id"] == started.json()["id"]
    assert stored[0]["outcome"] == "interrupted", log
    assert stored[0]["detail"]["resume_at_start"] is True
    assert "retraining interrupted model=shift" in log
    assert "retraining still running at stop" not in log
    assert versions == [1]
    assert runs[0].status == "interrupted"
    assert runs[0].error is not None
    assert runs[0].error.startswith("interrupted: training stopped at boosting")


def stored_runs(home: Path) -> tuple[list[Any], list[int]]:
    """Return the runs of `MODEL`, newest first, and its registered versions."""
    from appliance.storage import Catalog, list_models, list_runs

    with Catalog(home, read_only=True) as catalog:
        runs = list_runs(catalog, MODEL)
        versions = [v.version for v in list_models(catalog, MODEL)]
    return runs, versions


def test_promotion_during_retraining_rejected(daemons: list, daemon_home: Path) -> None:
    from daemon_support import run_cli

    from appliance.storage import Catalog, alias_history

    daemon, started = start_slow_search(daemons, daemon_home)
    config = daemon.config
    wait_for_log(daemon, f"model={MODEL} kind=")
    promote = f"/v1/admin/registry/models/{MODEL}/promote"
    promoted = httpx.post(daemon.base + promote, json={"version": 1}, timeout=10)
    rollback = f"/v1/admin/registry/models/{MODEL}/rollback"
    rolled_back = httpx.post(daemon.base + rollback, json={}, timeout=10)
    command = run_cli(config, "models", "promote", MODEL, "1", "--by", "ann")
    # A change that waited for the lock would be made once the run stopped.
    assert daemon.stop() == 0
    with Catalog(daemon_home, read_only=True) as catalog:
        changes = alias_history(catalog, MODEL)

    job_id = started.json()["id"]
    assert promoted.status_code == 409, promoted.text
    assert promoted.json()["job_id"] == job_id
    assert "promotion of model 'shift' was not made" in promoted.json()["error"]
    assert f"Retraining {job_id} of this model runs" in promoted.json()["error"]
    assert rolled_back.status_code == 409, rolled_back.text
    assert "rollback of model 'shift' was not made" in rolled_back.json()["error"]
    assert command.returncode == 1
    assert "promotion of model 'shift' was not made" in command.stderr
    assert [c for c in changes if c.actor != "retraining"] == []


def test_stopped_service_starts_no_retraining(daemon_home: Path) -> None:
    import asyncio

    from appliance.config import load_config
    from appliance.errors import DaemonError
    from appliance.retraining import RetrainService
    from appliance.serving import DaemonState, ServingMetrics

    config = load_config(write_config(daemon_home.parent / "config.toml", daemon_home))
    state = DaemonState(config, ServingMetrics(), "127.0.0.1", 0)
    service = RetrainService(state)

    async def stop_then_request() -> None:
        await service.stop()
        await service.request(MODEL, "manual", force=True)

    with pytest.raises(DaemonError, match="the daemon is stopping, so no retraining"):
        asyncio.run(stop_then_request())
    assert stored_history(daemon_home) == []


def stored_history(home: Path) -> list[dict[str, Any]]:
    from appliance.monitoring import MonitoringStore

    with MonitoringStore(home) as store:
        return store.retrain_history(MODEL)


def test_drift_alarm_starts_decision(daemons: list, daemon_home: Path) -> None:
    daemon = start(daemons, daemon_home)
    rng = np.random.default_rng(5)
    for shift in (0.0, 6.0):
        rows = [
            {"t": "2024-02-01 00:00:00", "x1": float(v) + shift, "x2": 0.0}
            for v in rng.normal(size=600)
        ]
        response = httpx.post(
            daemon.base + f"/v1/models/{MODEL}/predict", json={"rows": rows}
        )
        assert response.status_code == 200
    deadline = time.monotonic() + 30
    history: list = []
    while not history and time.monotonic() < deadline:
        time.sleep(0.2)
        history = httpx.get(daemon.base + RETRAIN).json()["history"]
    assert daemon.stop() == 0

    assert history, daemon.log()
    assert history[0]["trigger"] == "drift"
    assert history[0]["outcome"] == "skipped"
    assert history[0]["reason"].startswith("no stored label has an event time yet")


def busy_skips(daemon: Daemon) -> list[dict[str, Any]]:
    """Return the drift skips that the retrain route lists."""
    history = httpx.get(daemon.base + RETRAIN).json()["history"]
    return [r for r in history if r["trigger"] == "drift" and r["outcome"] == "skipped"]


def test_drift_alarms_during_run_one_row(daemons: list, daemon_home: Path) -> None:
    daemon, started = start_slow_search(daemons, daemon_home)
    rng = np.random.default_rng(7)
    deadline = time.monotonic() + 60
    triggers = 0
    # Switches of x1 between the two levels make the detectors alarm again.
    shifts = iter([0.0, 6.0] * 40)
    while triggers < 3 and time.monotonic() < deadline:
        shift = next(shifts)
        rows = [
            {"t": "2024-02-01 00:00:00", "x1": float(v) + shift, "x2": 0.0}
            for v in rng.normal(size=600)
        ]
        predicted = httpx.post(
            daemon.base + f"/v1/models/{MODEL}/predict", json={"rows": rows}
        )
        assert predicted.status_code == 200, predicted.text
        time.sleep(0.5)
        skips = busy_skips(daemon)
        triggers = sum((r["detail"] or {}).get("triggers", 1) for r in skips)
    history = httpx.get(daemon.base + RETRAIN).json()["history"]
    assert daemon.stop() == 0

    run_id = started.json()["id"]
    assert started.status_code == 202, started.text
    assert triggers >= 3, daemon.log()
    (skip,) = skips
    assert skip["detail"]["running_id"] == run_id
    assert skip["detail"]["triggers"] == triggers
    assert f"{triggers} drift triggers during that job recorded only" in skip["reason"]
    assert [r["id"] for r in history if r["id"] == run_id] == [run_id]


def stored_event_times(home: Path) -> list[str]:
    from appliance.storage import Catalog, list_labels

    with Catalog(home, read_only=True) as catalog:
        rows = list_labels(catalog, MODEL)
    times = sorted(r["event_time"].astimezone(UTC) for r in rows)
    return [str(t) for t in times]


def test_cli_retrain_without_daemon(daemon_home: Path) -> None:
    from daemon_support import run_cli

    config = write_config(daemon_home.parent / "config.toml", daemon_home)
    as_of = day(CHANGE_DAY).isoformat()
    skipped = run_cli(config, "retrain", MODEL, "--as-of", as_of, "--json")
    forced = run_cli(config, "retrain", MODEL, "--as-of", as_of, "--force", "--json")
    history = run_cli(config, "retrain", MODEL, "--history", "--json")

    table = run_cli(config, "retrain", MODEL, "--history")

    no_labels = (
        "no feedback labels stored for model 'shift' yet, and min_new_labels = 5 "
        "of [models.shift.retrain] needs that many; send labels to POST "
        "/v1/models/shift/feedback"
    )
    assert skipped.returncode == 0, skipped.stderr
    assert json.loads(skipped.stdout)["outcome"] == "skipped"
    assert json.loads(skipped.stdout)["reason"] == no_labels
    assert forced.returncode == 0, forced.stderr
    record = json.loads(forced.stdout)
    assert record["outcome"] in ("promoted", "rejected"), record
    assert record["challenger_version"] == 2
    assert record["detail"]["forced"] == (
        f"forced by the operator, although the policy skips: {no_labels}"
    )
    rows = [json.loads(line) for line in history.stdout.splitlines()]
    assert [r["outcome"] for r in rows] == [
        record["outcome"],
        "skipped",
    ]
    header, first = table.stdout.splitlines()[:2]
    assert header.split()[:2] == ["started_at", "as_of"]
    assert first.split()[1] == record["as_of"]
    assert f"{record['challenger_score']:.6f}" in first


def test_cli_retrain_failure_exit_status(daemon_home: Path) -> None:
    from daemon_support import run_cli

    config = write_config(daemon_home.parent / "config.toml", daemon_home, clock="wall")
    skipped = run_cli(config, "retrain", MODEL)
    failed = run_cli(config, "retrain", MODEL, "--force")
    help_text = run_cli(config, "retrain", "--help")

    assert skipped.returncode == 0, skipped.stderr
    assert "to train anyway: appliance retrain shift --force" in skipped.stdout
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert "retraining of shift: failed" in failed.stdout
    assert "window_days = 20 and holdout_days = 7 before the run's as_of" in (
        failed.stdout
    )
    assert '(--as-of, or "as_of" over HTTP)' in failed.stdout
    assert 'set clock = "event" in [models.shift.retrain]' in failed.stdout
    assert "forced: forced by the operator, although the policy skips" in (
        failed.stdout
    )
    assert "3  the run failed" in help_text.stdout


def test_missed_cron_ticks_run_once(daemons: list, daemon_home: Path) -> None:
    daemon = start(daemons, daemon_home, trigger="schedule", schedule="0 3 * * *")
    assert daemon.stop() == 0
    move_next_run(daemon_home / "jobs.duckdb", "retrain:shift", timedelta(days=-3))

    daemon = start(daemons, daemon_home, trigger="schedule", schedule="0 3 * * *")
    deadline = time.monotonic() + 30
    history: list = []
    while not history and time.monotonic() < deadline:
        time.sleep(0.2)
        history = httpx.get(daemon.base + RETRAIN).json()["history"]
    time.sleep(1.0)
    history = httpx.get(daemon.base + RETRAIN).json()["history"]
    jobs = httpx.get(daemon.base + "/v1/ui/jobs").json()["jobs"]
    assert daemon.stop() == 0

    assert [r["trigger"] for r in history] == ["schedule"], daemon.log()
    assert history[0]["outcome"] == "skipped"
    job = next(j for j in jobs if j["id"] == "retrain:shift")
    assert job["next_run_at"] > datetime.now(UTC).isoformat()


def move_next_run(path: Path, job_id: str, shift: timedelta) -> None:
    """Move a stored APScheduler job's next run time, as if the daemon had
    been stopped across that many scheduled times."""
    import pickle

    import duckdb

    with duckdb.connect(str(path)) as db:
        (blob,) = db.execute(
            "SELECT job_state FROM scheduler_jobs WHERE id = ?", [job_id]
        ).fetchone()
        state = pickle.loads(blob)
        state["next_run_time"] = state["next_run_time"] + shift
        db.execute(
            "UPDATE scheduler_jobs SET next_run_time = ?, job_state = ? WHERE id = ?",
            [state["next_run_time"].timestamp(), pickle.dumps(state), job_id],
        )


def test_cli_wait_ends_on_daemon_stop(daemons: list, daemon_home: Path) -> None:
    import subprocess
    import sys

    from daemon_support import appliance_env

    config = write_config(daemon_home.parent / "config.toml", daemon_home)
    with config.open("a", encoding="utf-8") as file:
        file.write(SLOW_SEARCH)
    daemon = Daemon(config, daemon_home, free_port())
    daemons.append(daemon)
    daemon.wait_ready()
    as_of = day(CHANGE_DAY).isoformat()
    command = subprocess.Popen(
        [sys.executable, "-m", "appliance", "--config", str(config)]
        + ["retrain", MODEL, "--force", "--as-of", as_of],
        env=appliance_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_log(daemon, f"model={MODEL} kind=")
    assert daemon.stop() == 0
    stopped = time.monotonic()
    out, err = command.communicate(timeout=120)
    seconds = time.monotonic() - stopped
    stored = stored_history(daemon_home)

    assert command.returncode == 3, out + err
    # Waiting for a daemon that starts again took 60 s before the command
    # failed with exit status 1.
    assert seconds < 10, out + err
    assert f"retraining of {MODEL}: interrupted ({stored[0]['id']})" in out
    assert "the daemon's next start runs it again once" in out
    assert stored[0]["outcome"] == "interrupted"


def test_retrain_names_lost_lake_folder(daemon_home: Path, tmp_path: Path) -> None:
    from daemon_support import run_cli

    config = write_config(daemon_home.parent / "config.toml", daemon_home)
    (folder,) = (daemon_home / "lake" / "events").glob("version=*")
    folder.rename(tmp_path / "moved")
    as_of = day(CHANGE_DAY).isoformat()
    retrained = run_cli(config, "retrain", MODEL, "--force", "--as-of", as_of)
    trained = run_cli(config, "train", MODEL)

    lost = f"has no readable files in {folder}"
    assert retrained.returncode == 3, retrained.stdout + retrained.stderr
    assert lost in retrained.stdout
    assert "restore that folder from a backup" in retrained.stdout
    assert trained.returncode == 1, trained.stdout + trained.stderr
    assert lost in trained.stderr
    assert "Catalog Error" not in trained.stderr


GHOST = """
[models.ghost]
dataset = "nosuchdata"
target = "label"
task = "classification"
features = ["x1"]
"""
"""A model declared on a dataset that no ingest created."""


def test_missing_dataset_run_recorded(daemons: list, daemon_home: Path) -> None:
    from daemon_support import run_cli

    config = write_config(daemon_home.parent / "config.toml", daemon_home)
    with config.open("a", encoding="utf-8") as file:
        file.write(GHOST)
    skipped = run_cli(config, "retrain", "ghost")
    local = run_cli(config, "retrain", "ghost", "--force")
    daemon = Daemon(config, daemon_home, free_port())
    daemons.append(daemon)
    daemon.wait_ready()
    remote = run_cli(config, "retrain", "ghost", "--force")
    history = run_cli(config, "retrain", "ghost", "--history", "--json")
    assert daemon.stop() == 0

    missing = "dataset 'nosuchdata' of model 'ghost' has no version in this home"
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert f"reason: {missing}" in skipped.stdout
    for command in (local, remote):
        assert command.returncode == 3, command.stdout + command.stderr
        assert f"reason: challenger not trained: {missing}" in command.stdout
        assert "'appliance ingest nosuchdata FILE'" in command.stdout
        assert "NotFoundError" not in command.stdout
    rows = [json.loads(line) for line in history.stdout.splitlines()]
    assert [r["outcome"] for r in rows] == ["failed", "failed", "skipped"]


def test_schedule_on_event_clock_after_wall_run(
    daemons: list, daemon_home: Path
) -> None:
    from appliance.monitoring import MonitoringStore, RetrainRecord

    wall = datetime.now(UTC) - timedelta(minutes=5)
    # A manual run without --as-of, recorded before runs stored their clock.
    legacy = RetrainRecord(MODEL, "manual", "rejected", "", wall, wall, as_of=wall)
    with MonitoringStore(daemon_home) as store:
        store.record_retrain(dataclasses.replace(legacy, id="wall1"))
    daemon = start(
        daemons,
        daemon_home,
        trigger="both",
        schedule="0 3 * * *",
        cooldown_hours=0,
        min_new_labels=0,
    )
    labelled = send_labels(daemon, event_rows(50, 52, seed=3))
    tick = httpx.post(daemon.base + RETRAIN, json={"trigger": "schedule"})
    finished = wait_finished(daemon)["history"][0]
    assert daemon.stop() == 0

    assert labelled.status_code == 200, labelled.text
    assert tick.status_code == 202, tick.text
    assert tick.json()["as_of"].startswith("2024-02-21T22:00:00")
    assert tick.json()["detail"]["clock"] == "event"
    assert finished["id"] == tick.json()["id"]
    assert finished["outcome"] in ("promoted", "rejected", "failed"), finished
