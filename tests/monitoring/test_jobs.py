"""Scheduled jobs on the DuckDB job store: coalesced missed runs, restarts."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.background import BackgroundScheduler

from appliance.monitoring import MonitoringStore
from appliance.monitoring._jobs import (
    JOBS_FILE,
    DuckDBJobStore,
    job_state,
    run_job,
    schedule_interval,
    wait_for_jobs,
)

HERE = Path(__file__).resolve().parent
TARGET = "jobs_target:tick"


def start_scheduler(home: Path) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_jobstore(DuckDBJobStore(home / JOBS_FILE), "default")
    scheduler.start()
    return scheduler


def runs(home: Path, job_id: str) -> list[dict]:
    with MonitoringStore(home) as store:
        return store.job_runs(job_id)


def wait_for_runs(home: Path, job_id: str, count: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in runs(home, job_id) if r["outcome"] != "running"]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    return [r for r in runs(home, job_id) if r["outcome"] != "running"]


def test_missed_runs_coalesced_after_stop(tmp_path, monkeypatch, caplog) -> None:
    # The scale is one second for one minute: a check every 1 s, the scheduler
    # stopped for 5 s, as a check every 60 s stopped for 5 minutes.
    monkeypatch.syspath_prepend(str(HERE))
    caplog.set_level(logging.INFO, logger="appliance.monitoring._jobs")
    scheduler = start_scheduler(tmp_path)
    schedule_interval(scheduler, tmp_path, "drift:m", 1.0, TARGET, "m")
    before = wait_for_runs(tmp_path, "drift:m", 1, timeout=5)
    scheduler.shutdown(wait=True)
    stopped_at = time.monotonic()
    time.sleep(5.2)

    scheduler = start_scheduler(tmp_path)
    restarted_at = time.monotonic()
    job = schedule_interval(scheduler, tmp_path, "drift:m", 1.0, TARGET, "m")
    after_restart = wait_for_runs(tmp_path, "drift:m", len(before) + 1, timeout=3)
    coalesced_at = time.monotonic()
    later = wait_for_runs(tmp_path, "drift:m", len(before) + 4, timeout=6)
    scheduler.shutdown(wait=True)

    first_after = after_restart[len(before)]
    # The coalesced run starts at the restart, off the one-second grid; the
    # next run takes the next slot of the grid, and the rest follow 1 s apart.
    starts = [r["started_at"] for r in later[len(before) : len(before) + 4]]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:])]
    assert len(before) == 1
    assert restarted_at - stopped_at >= 5.0
    assert job.id == "drift:m"
    # Within three periods of the restart, loose because CI machines are busy.
    assert coalesced_at - restarted_at < 3.0
    # Five seconds stopped plus the first run and the restart: at least five
    # periods passed, and the logged count is the one derived from the record.
    elapsed = (first_after["started_at"] - before[0]["started_at"]).total_seconds()
    assert first_after["missed"] == int(elapsed // 1.0)
    assert first_after["missed"] >= 5
    assert first_after["outcome"] == "finished"
    assert [r["missed"] for r in later[len(before) + 1 : len(before) + 4]] == [0, 0, 0]
    assert gaps[0] <= 2.0
    # Each later run keeps the one-second cadence, within the jitter of a busy box.
    assert all(0.5 < gap < 2.0 for gap in gaps[1:])
    assert (
        f"job missed runs job=drift:m missed={first_after['missed']} coalesced_into=1"
        in caplog.text
    )


def test_job_survives_restart_in_store(tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))
    scheduler = start_scheduler(tmp_path)
    schedule_interval(scheduler, tmp_path, "drift:m", 3600.0, TARGET, "m")
    next_run = scheduler.get_job("drift:m").next_run_time
    scheduler.shutdown(wait=True)

    scheduler = start_scheduler(tmp_path)
    stored = scheduler.get_job("drift:m")
    kept = schedule_interval(scheduler, tmp_path, "drift:m", 3600.0, TARGET, "m")
    changed = schedule_interval(scheduler, tmp_path, "drift:m", 60.0, TARGET, "m")
    scheduler.shutdown(wait=True)

    assert stored is not None
    assert stored.next_run_time == next_run
    assert kept.next_run_time == next_run
    assert changed.trigger.interval == timedelta(seconds=60)


_PROCESS = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {here!r})
    from apscheduler.schedulers.background import BackgroundScheduler
    from appliance.monitoring._jobs import JOBS_FILE, DuckDBJobStore, schedule_interval
    home = Path({home!r})
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_jobstore(DuckDBJobStore(home / JOBS_FILE), "default")
    scheduler.start()
    schedule_interval(scheduler, home, "slow", 2.0, "jobs_target:slow", 1.5)
    if sys.argv[1] == "restart":
        # Stop as soon as the missed run starts: a run due while it runs is
        # skipped (max_instances=1), and the shutdown waits for it to finish.
        from appliance.monitoring import MonitoringStore
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with MonitoringStore(home) as store:
                if len(store.job_runs("slow")) > 1:
                    break
            time.sleep(0.05)
    else:
        time.sleep(float(sys.argv[1]))
    scheduler.shutdown(wait=True)
    """
)


def test_interrupted_job_runs_once_after_restart(tmp_path) -> None:
    script = _PROCESS.format(here=str(HERE), home=str(tmp_path))
    first = subprocess.Popen([sys.executable, "-c", script, "60"])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not runs(tmp_path, "slow"):
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        first.kill()  # in the middle of the 1.5 s run
        first.wait(timeout=10)
    interrupted = runs(tmp_path, "slow")

    subprocess.run([sys.executable, "-c", script, "restart"], check=True, timeout=90)
    after = runs(tmp_path, "slow")

    assert [r["outcome"] for r in interrupted] == ["running"]
    assert [r["outcome"] for r in after] == ["running", "finished"]


def test_run_job_prunes_old_runs(tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))
    now = datetime.now(UTC)
    with MonitoringStore(tmp_path) as store:
        for days in (45, 31, 29):
            started = now - timedelta(days=days)
            store.start_job_run("drift:m", started, 0)
            store.finish_job_run("drift:m", started, started, "finished")
        store.start_job_run("health:m", now - timedelta(days=40), 0)

    run_job(str(tmp_path), "drift:m", 60.0, TARGET, "m")

    kept = runs(tmp_path, "drift:m")
    ages = [(now - r["started_at"]).days for r in kept]
    with MonitoringStore(tmp_path) as store:
        last = {r["job_id"]: r for r in store.last_job_runs()}
    assert ages[0] == 29
    assert len(kept) == 2
    assert json.loads(kept[1]["detail"]) == {"label": "m"}
    # The new run counts the periods since the newest kept record.
    assert kept[1]["missed"] == 29 * 24 * 60
    assert len(runs(tmp_path, "health:m")) == 1
    assert last["drift:m"]["started_at"] == kept[1]["started_at"]
    assert last["health:m"]["outcome"] == "running"


def test_stop_waits_for_running_job(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.syspath_prepend(str(HERE))
    job = [str(tmp_path), "slow:m", 60.0, "jobs_target:slow", 0.5]

    async def stop_during_run() -> bool:
        # As the daemon stops: pause, wait for the run, then shut down.
        scheduler = AsyncIOScheduler(timezone="UTC")
        scheduler.start()
        scheduler.add_job(run_job, args=job, id="slow:m")
        while not runs(tmp_path, "slow:m"):
            await asyncio.sleep(0.02)
        scheduler.pause()
        finished = await asyncio.to_thread(wait_for_jobs, 10.0)
        scheduler.shutdown(wait=False)
        return finished

    with caplog.at_level(logging.ERROR):
        finished = asyncio.run(stop_during_run())

    assert finished
    assert [r["outcome"] for r in runs(tmp_path, "slow:m")] == ["finished"]
    assert "Error running job" not in caplog.text


def test_job_state_counts_failures_in_row(tmp_path) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    outcomes = ["failed", "finished", "failed", "failed", "running"]
    with MonitoringStore(tmp_path) as store:
        before = job_state(store, "drift:m")
        for hour, outcome in enumerate(outcomes):
            started = start + timedelta(hours=hour)
            store.start_job_run("drift:m", started, 0)
            if outcome != "running":
                detail = {"error": f"OSError: run {hour}"}
                store.finish_job_run("drift:m", started, started, outcome, detail)
        during = job_state(store, "drift:m")
        finished = start + timedelta(hours=5)
        store.start_job_run("drift:m", finished, 0)
        store.finish_job_run("drift:m", finished, finished, "finished", {"rows": 3})
        after = job_state(store, "drift:m")

    assert before["last_run"] is None
    assert before["running_since"] is None
    assert before["failed_runs"] == 0
    assert before["failing_since"] is None
    assert during["last_run"]["outcome"] == "failed"
    assert during["last_run"]["error"] == "OSError: run 3"
    assert during["running_since"] == (start + timedelta(hours=4)).isoformat()
    assert during["failed_runs"] == 2
    assert during["failing_since"] == (start + timedelta(hours=2)).isoformat()
    assert during["last_finished_at"] == (start + timedelta(hours=1)).isoformat()
    assert after["last_run"]["outcome"] == "finished"
    assert after["last_run"]["detail"] == {"rows": 3}
    assert after["last_run"]["error"] is None
    assert after["running_since"] is None
    assert after["failed_runs"] == 0
    assert after["failing_since"] is None


def test_job_state_failure_has_error(tmp_path) -> None:
    started = datetime(2026, 1, 1, tzinfo=UTC)
    with MonitoringStore(tmp_path) as store:
        store.start_job_run("drift:m", started, 0)
        error = {"error": "NotFoundError: gone"}
        store.finish_job_run("drift:m", started, started, "failed", error)
        state = job_state(store, "drift:m")

    assert state["last_run"]["error"] == "NotFoundError: gone"
    assert state["failed_runs"] == 1
    assert state["failing_since"] == started.isoformat()
    assert state["last_finished_at"] is None
