"""Health and metrics routes: liveness, readiness and the Prometheus exposition."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request, Response, get

from appliance.serving._metrics import CONTENT_TYPE
from appliance.serving._state import DaemonState, daemon_state

_encode = msgspec.json.Encoder().encode


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

    The body also lists, by dataset, the failed attempts of an ingest buffer
    flush that is being retried. They leave the status as it is, because
    the rows are kept on disk and predictions are still served.
    """
    state = daemon_state(request)
    failed = {model for model, _, served, _ in state.load_failures if served is None}
    unserved = sorted(failed - set(state.models.models))
    features = getattr(state, "features", None)
    checks = {
        "models_loaded": state.models.loaded,
        "prediction_log_running": state.predictions.running,
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
    """Return every metric of the daemon."""
    return Response(daemon_state(request).metrics.render(), media_type=CONTENT_TYPE)


ROUTES = [health, live, ready, metrics]
"""The route handlers of this module, as `create_app` mounts them."""
