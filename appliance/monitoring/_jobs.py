"""Scheduled monitoring jobs: a persistent APScheduler job store and run records.

`DuckDBJobStore` keeps APScheduler jobs in ``HOME/jobs.duckdb``, so jobs and
their next run times survive a daemon restart. Jobs are added with
``coalesce=True``, ``max_instances=1`` and no misfire grace limit: after a
stop, the runs missed in between collapse into one run at start-up, and a run
never overlaps another of the same job. `run_job` wraps every job so that each
run is recorded with its outcome and a failure is logged, never raised into
the scheduler.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore, ConflictingIdError, JobLookupError
from apscheduler.util import datetime_to_utc_timestamp, utc_timestamp_to_datetime

from appliance.config import Config
from appliance.errors import StorageError
from appliance.monitoring._store import MonitoringStore

logger = logging.getLogger(__name__)

JOBS_FILE = "jobs.duckdb"

JOB_RUNS_KEPT = timedelta(days=30)
"""Age after which a job's run records are deleted, when the job next runs. A
health check every 60 s leaves about 43,000 records per model in that time."""

_running = 0
"""Runs of `run_job` in progress in this process."""
_running_changed = threading.Condition()


def wait_for_jobs(timeout: float) -> bool:
    """Wait until no run of `run_job` is in progress in this process.

    The daemon calls this at stop with the scheduler paused. Shutting the
    scheduler down cancels the futures of running jobs, and APScheduler logs
    each cancel as an error with a traceback, although the job's thread goes
    on to its end.

    Returns:
        Whether no run was in progress before `timeout` seconds passed.
    """
    with _running_changed:
        return _running_changed.wait_for(lambda: _running == 0, timeout)


def _count_run(change: int) -> None:
    global _running
    with _running_changed:
        _running += change
        _running_changed.notify_all()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS scheduler_jobs (
    id            VARCHAR PRIMARY KEY,
    next_run_time DOUBLE,
    job_state     BLOB NOT NULL
)
"""


class DuckDBJobStore(BaseJobStore):
    """APScheduler job store in a DuckDB file, held open by one process.

    Args:
        path: The DuckDB file; created with its table on first use.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._lock = threading.Lock()
        self._db: duckdb.DuckDBPyConnection | None = None

    def start(self, scheduler: Any, alias: str) -> None:
        """Open the file when the scheduler starts."""
        super().start(scheduler, alias)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _connect(self.path)
        self._db.execute(_SCHEMA)

    def shutdown(self) -> None:
        """Close the file when the scheduler stops."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def lookup_job(self, job_id: str) -> Job | None:
        """Return the job with id `job_id`, or None."""
        rows = self._query(
            "SELECT job_state FROM scheduler_jobs WHERE id = ?", [job_id]
        )
        return self._job(rows[0][0]) if rows else None

    def get_due_jobs(self, now: datetime) -> list[Job]:
        """Return the jobs whose next run time is at or before `now`."""
        return self._jobs("WHERE next_run_time <= ?", [datetime_to_utc_timestamp(now)])

    def get_next_run_time(self) -> datetime | None:
        """Return the earliest next run time of any job."""
        rows = self._query("SELECT min(next_run_time) FROM scheduler_jobs", [])
        return utc_timestamp_to_datetime(rows[0][0]) if rows else None

    def get_all_jobs(self) -> list[Job]:
        """Return every job, paused ones last."""
        jobs = self._jobs("", [])
        self._fix_paused_jobs_sorting(jobs)
        return jobs

    def add_job(self, job: Job) -> None:
        """Store a new job.

        Raises:
            ConflictingIdError: A job with the same id is stored.
        """
        try:
            self._query(
                "INSERT INTO scheduler_jobs VALUES (?, ?, ?)",
                [job.id, datetime_to_utc_timestamp(job.next_run_time), _state(job)],
            )
        except duckdb.ConstraintException:
            raise ConflictingIdError(job.id) from None

    def update_job(self, job: Job) -> None:
        """Replace a stored job.

        Raises:
            JobLookupError: No job with that id is stored.
        """
        if self.lookup_job(job.id) is None:
            raise JobLookupError(job.id)
        self._query(
            "UPDATE scheduler_jobs SET next_run_time = ?, job_state = ? WHERE id = ?",
            [datetime_to_utc_timestamp(job.next_run_time), _state(job), job.id],
        )

    def remove_job(self, job_id: str) -> None:
        """Delete a stored job.

        Raises:
            JobLookupError: No job with that id is stored.
        """
        if self.lookup_job(job_id) is None:
            raise JobLookupError(job_id)
        self._query("DELETE FROM scheduler_jobs WHERE id = ?", [job_id])

    def remove_all_jobs(self) -> None:
        """Delete every stored job."""
        self._query("DELETE FROM scheduler_jobs", [])

    def _jobs(self, where: str, params: list[Any]) -> list[Job]:
        rows = self._query(
            f"SELECT id, job_state FROM scheduler_jobs {where} "
            "ORDER BY next_run_time NULLS LAST",
            params,
        )
        jobs = []
        for job_id, state in rows:
            try:
                jobs.append(self._job(state))
            except Exception:
                # A job whose function no longer imports would stop every other
                # job; it is logged and dropped, as APScheduler's stores do.
                logger.exception("job state unreadable, removed job=%s", job_id)
                self._query("DELETE FROM scheduler_jobs WHERE id = ?", [job_id])
        return jobs

    def _job(self, state: bytes) -> Job:
        job_state = pickle.loads(state)
        job_state["jobstore"] = self
        job = Job.__new__(Job)
        job.__setstate__(job_state)
        job._scheduler = self._scheduler
        job._jobstore_alias = self._alias
        return job

    def _query(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._db is None:
                # The scheduler thread may poll once more while it stops.
                logger.debug("job store closed, query skipped sql=%s", sql)
                return []
            cursor = self._db.execute(sql, params)
            return cursor.fetchall() if cursor.description else []


def _state(job: Job) -> bytes:
    return pickle.dumps(job.__getstate__(), pickle.HIGHEST_PROTOCOL)


def schedule_per_model(
    scheduler: Any,
    config: Config,
    kind: str,
    seconds: float,
    target: str,
    first_arg: str,
) -> list[str]:
    """Add one periodic job ``KIND:MODEL`` per declared model; return the ids.

    Each job calls `target` with `first_arg` and the model's name. A stored
    ``KIND:`` job of a model that is no longer declared is removed.
    """
    for job in scheduler.get_jobs():
        kind_of_job, _, model = job.id.partition(":")
        if kind_of_job == kind and model not in config.models:
            scheduler.remove_job(job.id)
            logger.info("job removed job=%s reason=model not declared", job.id)
    ids = []
    for name in sorted(config.models):
        job_id = f"{kind}:{name}"
        schedule_interval(
            scheduler, config.storage.home, job_id, seconds, target, first_arg, name
        )
        ids.append(job_id)
    return ids


def schedule_interval(
    scheduler: Any,
    home: Path,
    job_id: str,
    seconds: float,
    target: str,
    *args: Any,
) -> Job:
    """Add a periodic job unless the persistent store already holds it.

    A job found in the store keeps its next run time, so runs missed while
    the daemon was stopped are coalesced into one run at start-up; a changed
    period reschedules it.
    """
    from apscheduler.triggers.interval import IntervalTrigger

    job_args = (str(home), job_id, float(seconds), target, *args)
    existing = scheduler.get_job(job_id)
    if existing is not None and tuple(existing.args) == job_args:
        logger.info("job kept job=%s next_run=%s", job_id, existing.next_run_time)
        return existing
    if existing is not None:
        scheduler.remove_job(job_id)
    job = scheduler.add_job(
        "appliance.monitoring._jobs:run_job",
        IntervalTrigger(seconds=seconds, timezone=timezone.utc),
        args=job_args,
        id=job_id,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=None,
    )
    logger.info("job scheduled job=%s seconds=%g", job_id, seconds)
    return job


def run_job(
    home: str, job_id: str, interval_seconds: float, target: str, *args: Any
) -> None:
    """Run one scheduled job: log missed runs, call `target`, record the outcome.

    Args:
        home: The appliance home folder, where the run is recorded.
        job_id: The scheduler's job id.
        interval_seconds: The job's period, to count runs missed since the
            previous recorded run.
        target: ``module:function`` called with `args`; its return value, a
            dict or None, is stored as the run's detail.
    """
    _count_run(1)
    try:
        _run_recorded(home, job_id, interval_seconds, target, *args)
    finally:
        _count_run(-1)


def _run_recorded(
    home: str, job_id: str, interval_seconds: float, target: str, *args: Any
) -> None:
    started = datetime.now(timezone.utc)
    root = Path(home)
    with MonitoringStore(root) as store:
        previous = store.last_job_runs(job_id)
        missed = _missed_runs(previous, started, interval_seconds)
        store.start_job_run(job_id, started, missed)
        pruned = store.prune_job_runs(job_id, started - JOB_RUNS_KEPT)
    if pruned:
        logger.info("job runs pruned job=%s rows=%d", job_id, pruned)
    if missed:
        logger.warning(
            "job missed runs job=%s missed=%d coalesced_into=1", job_id, missed
        )
    logger.info("job started job=%s", job_id)
    outcome, detail = "finished", None
    try:
        detail = _resolve(target)(*args)
    except Exception as exc:
        logger.exception("job failed job=%s", job_id)
        outcome, detail = "failed", {"error": f"{type(exc).__name__}: {exc}"}
    finished = datetime.now(timezone.utc)
    with MonitoringStore(root) as store:
        store.finish_job_run(job_id, started, finished, outcome, detail)
    logger.info(
        "job %s job=%s seconds=%.3f",
        outcome,
        job_id,
        (finished - started).total_seconds(),
    )


def job_state(store: MonitoringStore, job_id: str) -> dict[str, Any]:
    """Return the newest ended run of `job_id`, a run in progress and the
    failures in a row.

    ``last_run`` is the newest run that finished or failed, None before the
    first one ends, and its ``error`` is the exception of a failed run.
    ``running_since`` is the start of a newer run still recorded as
    ``running``, else None. ``failed_runs``, ``failing_since`` and
    ``last_finished_at`` are those of `MonitoringStore.failed_streak`.

    NOTE: Runs older than `JOB_RUNS_KEPT` are deleted, so a job that has
    failed for longer shows the oldest kept failure as ``failing_since``.
    """
    ended = store.last_ended_job_run(job_id)
    newest = store.last_job_runs(job_id)
    running = newest[0] if newest and newest[0]["outcome"] == "running" else None
    streak = store.failed_streak(job_id)
    return {
        "job_id": job_id,
        "last_run": _run_state(ended) if ended is not None else None,
        "running_since": _iso(running["started_at"]) if running else None,
        "failed_runs": streak["failed_runs"],
        "failing_since": _iso(streak["failing_since"]),
        "last_finished_at": _iso(streak["last_finished_at"]),
    }


def _run_state(run: dict[str, Any]) -> dict[str, Any]:
    detail = json.loads(run["detail"]) if run.get("detail") else None
    error = detail.get("error") if isinstance(detail, dict) else None
    return {
        "started_at": _iso(run["started_at"]),
        "finished_at": _iso(run["finished_at"]),
        "outcome": run["outcome"],
        "missed": run["missed"],
        "detail": detail,
        "error": error if run["outcome"] == "failed" else None,
    }


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value is not None else None


def _missed_runs(
    previous: list[dict[str, Any]], started: datetime, interval: float
) -> int:
    """Count scheduled times that passed without their own run.

    A run on time finds one interval since the previous run and misses none;
    after a five-minute stop of a 60-second job, five times passed and the one
    coalesced run stood in for all of them, so five count as missed.
    """
    if not previous:
        return 0
    elapsed = (started - previous[-1]["started_at"]).total_seconds()
    periods = math.floor(elapsed / interval + 1e-6)
    return periods if periods > 1 else 0


def _resolve(target: str) -> Callable[..., Any]:
    import importlib

    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _connect(path: Path) -> duckdb.DuckDBPyConnection:
    """Open the job store file.

    Raises:
        StorageError: The file is locked, may not be written or is damaged.
    """
    from appliance.storage import open_failure

    try:
        return duckdb.connect(str(path))
    except duckdb.IOException as exc:
        loses = (
            "the next run times of the scheduled jobs; the daemon schedules "
            "every job again from the configuration at start"
        )
        raise StorageError(open_failure("the job store", path, exc, loses)) from exc
