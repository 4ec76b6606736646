"""Health and metrics routes: liveness, readiness and the Prometheus exposition."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
from litestar import Request, Response, get

from appliance.errors import StorageError
from appliance.serving._metrics import CONTENT_TYPE
from appliance.serving._state import DaemonState, daemon_state
from appliance.serving._view_health import failing_views

logger = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
OPEN_ALERTS_WAIT_SECONDS = 1.0
"""Maximum wait of a scrape for the monitoring store while another process has
it open; the scrape then shows the open alerts counted before."""
OPEN_ALERTS_MAX_AGE_SECONDS = 10.0
"""Age of the open alert counts after which a scrape reads them again. Opening
the monitoring store and counting took a median 44 ms (20 runs on a shared
2-core machine), too long to repeat at every scrape."""


@get("/health", summary="Report status once the models are loaded")
async def health(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Return 200 with the number of served models.

    The daemon accepts connections only after its startup, so any answer here
    means the models are loaded.
    """
    state = daemon_state(request)
    return Response(
        _encode({"status": "ok", "models": len(state.models.models)}),
        media_type="application/json",
    )


@get("/health/live", summary="Report that the process answers")
async def live(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Return 200 while the event loop runs."""
    state = daemon_state(request)
    body = {"status": "live", "uptime_seconds": time.time() - state.started_at}
    return Response(_encode(body), media_type="application/json")


@get("/health/ready", summary="Report whether predictions are served and logged")
async def ready(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Return 200 when the models are loaded and the log writer runs, else 503.

    A model with a registered version none of which loads, such as one whose
    artifact fails its signature check, makes the daemon not ready, so that a
    load balancer sends its requests to another box. So do feature views that
    are not loaded, such as over a dataset whose lake files are gone, because
    the predictions of the models that join them fail.

    A prediction journal that fails to write or to create its next segment
    also makes the daemon not ready, because the predictions it acknowledges
    are then lost if the process crashes before they reach the catalog
    (``prediction_journal_writing`` is false; the log names the error).

    A feature view whose SQL failed on its rows at the last load is listed
    in ``feature_views_failing``. The entry names the error, the dataset
    versions read, the models that join the view, and the versions of the
    earlier rows it serves instead. A model whose view has no such rows is
    not served and is listed in ``unserved``, which makes the daemon not
    ready. A view that serves earlier rows leaves the status as it is.

    The body also lists, by dataset, the failed attempts of an ingest buffer
    flush that is being retried. They leave the status as it is, because
    the rows are kept on disk and predictions are still served.
    """
    state = daemon_state(request)
    failed = {model for model, _, served, _ in state.load_failures if served is None}
    features = getattr(state, "features", None)
    without_views = set(features.unserved()) if features is not None else set()
    unserved = sorted((failed - set(state.models.models)) | without_views)
    checks = {
        "models_loaded": state.models.loaded,
        "prediction_log_running": state.predictions.running,
        "prediction_journal_writing": not state.predictions.journal.failing,
        "every_model_served": not unserved,
        "feature_views_loaded": features is None
        or not features.models
        or features.loaded_at > 0,
    }
    ok = all(checks.values())
    body = {
        "status": "ready" if ok else "not ready",
        "models": sorted(state.models.models),
        "unserved": unserved,
        **checks,
        "feature_views_failing": failing_views(features),
        "ingest_flushes_failing": _failing_flushes(state),
    }
    return Response(
        _encode(body), status_code=200 if ok else 503, media_type="application/json"
    )


def _failing_flushes(state: DaemonState) -> dict[str, int]:
    """Return the failures in a row of each buffer flush that is being retried."""
    buffer = getattr(state, "ingest", None)
    return {} if buffer is None else buffer.failing()


@get(
    "/metrics",
    media_type=CONTENT_TYPE,
    summary="Prometheus metrics in the text exposition format",
)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Return every metric of the daemon; the open alerts are at most
    `OPEN_ALERTS_MAX_AGE_SECONDS` old."""
    state = daemon_state(request)
    if state.metrics.open_alerts_age() >= OPEN_ALERTS_MAX_AGE_SECONDS:
        await asyncio.to_thread(_count_open_alerts, state)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


def _count_open_alerts(state: DaemonState) -> None:
    """Read the open alerts by kind into the metrics. Keep the last counts when
    another process has the monitoring store open."""
    from appliance.monitoring import MonitoringStore

    try:
        home = state.config.storage.home
        with MonitoringStore(home, OPEN_ALERTS_WAIT_SECONDS) as store:
            counts = store.open_counts()
    except StorageError as exc:
        logger.warning("open alerts not counted for /metrics error=%s", exc)
        return
    state.metrics.set_open_alerts(counts)


ROUTES = [health, live, ready, metrics]
"""The route handlers of this module, as `create_app` mounts them."""
