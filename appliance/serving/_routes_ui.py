"""Routes of the operator terminal UI: screen summaries.

The overview reads the daemon's memory (metrics, served models, the
scheduler) and the job run records of the monitoring store, never the catalog,
so it stays quick while an admin command holds the catalog.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import datetime, timezone
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter

from appliance.errors import StorageError
from appliance.monitoring import MonitoringStore
from appliance.serving._params import ModelName
from appliance.serving._responses import Overview
from appliance.serving._state import DaemonState, daemon_state
from appliance.serving._traffic import (
    TrafficSample,
    TrafficStats,
    TrafficWindow,
    sample_metrics,
)

logger = logging.getLogger(__name__)

_encode = msgspec.json.Encoder(enc_hook=str).encode
DRIFT_HISTORY_ROWS = 5000
"""Most drift score rows returned for the charts, newest first."""
_WINDOW_KEY = "ui_traffic_window"
TRAFFIC_WINDOW_SECONDS = 60.0
"""Length of the window of the overview's request rate, error rate and latency."""


def _json(content: Any) -> Response[bytes]:
    return Response(_encode(content), media_type="application/json")


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat()


def _traffic(request: Request[Any, Any, Any], state: DaemonState) -> TrafficStats:
    now = time.monotonic()
    app_state = request.app.state
    window = app_state.get(_WINDOW_KEY)
    if window is None:
        # Counters were zero when the daemon started, so the first comparison
        # covers the whole uptime.
        started = now - (time.time() - state.started_at)
        window = TrafficWindow(
            TrafficSample(started, 0.0, 0.0, ()), TRAFFIC_WINDOW_SECONDS
        )
        app_state[_WINDOW_KEY] = window
    return window.observe(sample_metrics(state.metrics, now))


def scheduled_jobs(
    state: DaemonState, last_runs: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Return the scheduler's jobs with their last recorded run, next run first."""
    jobs = []
    for job in state.scheduler.get_jobs():
        next_run = getattr(job, "next_run_time", None)
        last = last_runs.get(job.id, {})
        jobs.append(
            {
                "id": job.id,
                "name": job.name,
                "trigger": str(job.trigger),
                "next_run_at": next_run.isoformat() if next_run else None,
                "last_run_at": last.get("started_at"),
                "last_outcome": last.get("outcome"),
            }
        )
    jobs.sort(key=lambda job: (job["next_run_at"] is None, job["next_run_at"] or ""))
    return jobs


async def last_job_runs(state: DaemonState) -> dict[str, dict[str, Any]]:
    """Return the newest recorded run of each job; empty when the store is busy."""

    def read() -> dict[str, dict[str, Any]]:
        with MonitoringStore(state.config.storage.home) as store:
            return {run["job_id"]: run for run in store.last_job_runs()}

    try:
        return await asyncio.to_thread(read)
    except StorageError as exc:
        logger.warning("job runs not read error=%s", exc)
        return {}


@get(
    "/v1/ui/overview",
    summary="Summarize health, traffic, models and jobs",
    responses={
        200: ResponseSpec(
            Overview, description="The overview.", generate_examples=False
        )
    },
)
async def overview(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Return what the overview screen shows, computed from the daemon's memory.

    Traffic figures cover the last minute, or the uptime when shorter.
    """
    state = daemon_state(request)
    traffic = _traffic(request, state)
    log = state.predictions
    models = [
        {"model": name, "version": model.version, "task": model.task}
        for name, model in sorted(state.models.models.items())
    ]
    body = {
        "status": "ok" if state.ready_at is not None else "starting",
        "pid": os.getpid(),
        "started_at": _iso(state.started_at),
        "uptime_seconds": time.time() - state.started_at,
        "traffic": {
            "window_seconds": traffic.seconds,
            "requests": traffic.requests,
            "requests_per_second": traffic.requests_per_second,
            "error_rate": traffic.error_rate,
            "p50_ms": traffic.p50_ms,
            "p99_ms": traffic.p99_ms,
        },
        "models": models,
        "jobs": scheduled_jobs(state, await last_job_runs(state)),
        "prediction_log": {
            "queued": log.queued_rows,
            "written": log.written_rows,
            "spilled": log.spilled_rows,
        },
    }
    return _json(body)


@get("/v1/ui/jobs", summary="List the scheduled jobs")
async def jobs(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Return the scheduler's jobs with their next run."""
    state = daemon_state(request)
    return _json({"jobs": scheduled_jobs(state, await last_job_runs(state))})


@get("/v1/ui/drift/{name:str}", summary="Drift scores of every check, for charts")
async def drift_scores(
    request: Request[Any, Any, Any],
    name: ModelName,
    limit: Annotated[
        int,
        QueryParameter(
            ge=0,
            description=f"Maximum number of score rows, at most {DRIFT_HISTORY_ROWS}.",
        ),
    ] = DRIFT_HISTORY_ROWS,
) -> Response[bytes]:
    """Return the batch drift scores of model `name`, newest check first."""
    state = daemon_state(request)
    if name not in state.config.models and name not in state.models.models:
        state.models.get(name)  # raises NotFoundError naming the served models

    def read() -> list[dict[str, Any]]:
        with MonitoringStore(state.config.storage.home) as store:
            return store.drift_history(name, limit=min(limit, DRIFT_HISTORY_ROWS))

    return _json({"model": name, "scores": await asyncio.to_thread(read)})


ROUTES = [overview, jobs, drift_scores]
"""The route handlers of this module, as `create_app` mounts them."""
