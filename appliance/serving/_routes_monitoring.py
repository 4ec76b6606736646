"""Monitoring routes: label feedback, drift scores and checks, alerts as JSON."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import PathParameter, QueryParameter

from appliance.access import current_actor
from appliance.config import Config
from appliance.errors import ApplianceError, ConfigError, NotFoundError, RequestError
from appliance.monitoring import (
    AlertStatus,
    ModelInfo,
    MonitoringStore,
    drift_summary,
    notify_in_background,
    output_values,
    resolve_alert,
    run_drift_check,
    scheduled_drift_check,
)
from appliance.predictions import entries_to_table, parquet_dir
from appliance.serving._access import record_in_daemon
from appliance.serving._body import JSON, read_body
from appliance.serving._errors import status_of
from appliance.serving._inputs import NUMBER
from appliance.serving._nesting import reject_deep_nesting
from appliance.serving._onnx import OnnxModel
from appliance.serving._openapi import body_operation
from appliance.serving._params import ModelFilter, ModelName
from appliance.serving._routes_admin import check_registered
from appliance.serving._state import DaemonState, daemon_state, run_with_catalog
from appliance.storage import Catalog, LabelRow, store_labels

logger = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
_FEEDBACK_MAX_BYTES = 10_000_000
_LABELS_LOCK = threading.Lock()
"""Serializes label writes, so two requests with one key store it once."""
_LABELS_SHAPE = '{"labels": [{"request_id": ..., "row": 0, "label": ...}]}'


class Label(msgspec.Struct):
    """True label of one predicted row."""

    request_id: Annotated[
        str,
        msgspec.Meta(
            description="request_id of the prediction response; it names a "
            "logged prediction, so no fixed example is valid."
        ),
    ]
    row: Annotated[
        int,
        msgspec.Meta(ge=0, description="Index of the row in its request, from 0."),
    ]
    label: Annotated[
        Any,
        msgspec.Meta(
            description="A class of the model, or a number for a regression model."
        ),
    ]


class FeedbackRequest(msgspec.Struct):
    """True labels of earlier predictions."""

    # The route checks the body by hand (`_decode_labels` and the monitoring
    # service), so that each error names the label. This Struct only
    # documents the body.

    labels: Annotated[list[Label], msgspec.Meta(min_length=1)]


class FeedbackResult(msgspec.Struct):
    """Labels stored by one feedback request."""

    model: str
    labels: Annotated[int, msgspec.Meta(description="Labels in the request.")]
    stored: Annotated[int, msgspec.Meta(description="Labels stored by this request.")]
    repeated: Annotated[
        list[Label],
        msgspec.Meta(
            description="Labels of rows labelled before, each with the label kept."
        ),
    ]
    events: Annotated[
        int, msgspec.Meta(description="Detector events that the labels raised.")
    ]


def model_info(model: OnnxModel, config: Config | None = None) -> ModelInfo:
    """Return what the monitoring service needs to know about a served model.

    Args:
        model: The served version.
        config: The configuration in force, which names the model's
            `event_timestamp` column; no event times are kept when None.
    """
    numeric = tuple(i["name"] for i in model.inputs if i["type"] == NUMBER)
    categorical = tuple(i["name"] for i in model.inputs if i["type"] != NUMBER)
    classes = tuple(model.classes) if model.classes is not None else None
    declared = config.models.get(model.name) if config is not None else None
    return ModelInfo(
        model.name,
        model.version,
        model.task,
        numeric,
        categorical,
        classes,
        declared.event_timestamp if declared is not None else None,
    )


@post(
    "/v1/models/{name:str}/feedback",
    status_code=200,
    summary="Send true labels of earlier predictions",
    description=(
        'Body: {"labels": [{"request_id": ..., "row": 0, "label": ...}, ...]}. '
        "Labels join the prediction log by request id and row index, in any "
        "order. A label that matches no logged prediction rejects the whole "
        "request with 422, and nothing is stored. Accepted labels are stored "
        "once per (request_id, row): a repeat is answered under 'repeated' "
        "with the label kept, and is not counted again."
    ),
    operation_class=body_operation(FeedbackRequest, "Labels to store."),
    responses={
        200: ResponseSpec(
            FeedbackResult, description="Labels stored.", generate_examples=False
        )
    },
)
async def feedback(name: ModelName, request: Request[Any, Any, Any]) -> Response[bytes]:
    """Join labels to logged predictions, store them and feed the loss detectors."""
    state = daemon_state(request)
    model = state.models.get(name)
    labels: list[Any] = []
    try:
        body = await read_body(request, _FEEDBACK_MAX_BYTES, name)
        subject = f"feedback body for model {name!r}"
        with reject_deep_nesting(body, subject, _LABELS_SHAPE, model=name):
            labels = _decode_labels(body, name)
        result = await _apply_labels(state, model, labels)
    except Exception as exc:
        status = status_of(exc) if isinstance(exc, ApplianceError) else 500
        metrics = state.metrics
        metrics.feedback_requests.labels(name, str(status)).inc()
        metrics.feedback_labels.labels(name, "rejected").inc(len(labels))
        raise
    _count_feedback(state, name, result)
    logger.info(
        "labels received model=%s labels=%d stored=%d repeated=%d",
        name,
        len(labels),
        result["stored"],
        len(result["repeated"]),
    )
    return Response(_encode(result), media_type=JSON)


def _count_feedback(state: DaemonState, name: str, result: dict[str, Any]) -> None:
    metrics = state.metrics
    metrics.feedback_requests.labels(name, "200").inc()
    metrics.feedback_labels.labels(name, "stored").inc(result["stored"])
    metrics.feedback_labels.labels(name, "repeated").inc(len(result["repeated"]))


async def _apply_labels(
    state: DaemonState, model: OnnxModel, labels: list[Any]
) -> dict[str, Any]:
    """Join labels to the logged predictions of `model` and store them."""
    info = model_info(model, state.config)

    def lookup(model_name: str, request_ids: list[str]) -> dict:
        # Called from the worker thread below; the catalog is read on a cursor
        # of its own, as `run_with_catalog` does.
        view = state.catalog.cursor()
        try:
            return _logged_outputs(view, model_name, request_ids, state)
        finally:
            view.close()

    def persist(rows: list[LabelRow]) -> dict:
        view = state.catalog.cursor()
        try:
            with _LABELS_LOCK:
                return store_labels(view, rows)
        finally:
            view.close()

    try:
        return await asyncio.to_thread(
            state.monitoring.apply_labels, info, labels, lookup, persist
        )
    except RequestError as exc:
        if "unknown" not in exc.detail or not state.predictions.has_spilled():
            raise
        raise RequestError(
            f"{exc}. The prediction log has rows in a spill file, which labels "
            "join only after the log's writer loads them; if these requests were "
            "answered recently, send the labels again in a minute",
            **exc.detail,
        ) from None


@get("/v1/models/{name:str}/drift", summary="Drift scores, history and live metrics")
async def drift(
    name: ModelName,
    request: Request[Any, Any, Any],
    history: Annotated[
        int,
        QueryParameter(
            ge=0, description="Number of earlier checks listed after the latest."
        ),
    ] = 5,
    events: Annotated[
        int,
        QueryParameter(ge=0, description="Number of newest streaming detections."),
    ] = 20,
) -> Response[bytes]:
    """Return the latest batch drift check, earlier ones, detections and live state.

    ``events_total`` counts every streaming detection of the model, so a
    client can tell when ``events`` lists only the newest of them.
    ``scheduled_check`` is the state of the scheduled job ``drift:NAME``
    (its newest ended run, a run in progress, the failures in a row, the
    next run and the open ``job`` alert), because a failed run stores no
    scores.
    """
    state = daemon_state(request)
    if name not in state.config.models and name not in state.models.models:
        state.models.get(name)  # raises NotFoundError naming the served models
    rows, newest, total, check = await asyncio.to_thread(
        _drift_rows, state, name, events
    )
    body = {
        "model": name,
        **drift_summary(rows, history),
        "events": newest,
        "events_total": total,
        "stream": state.monitoring.status(name),
        "scheduled_check": {**check, "next_run_at": _next_run(state, check)},
    }
    return Response(json.dumps(body, default=str).encode(), media_type=JSON)


@get("/v1/alerts", summary="Monitoring alerts, newest first")
async def alerts(
    request: Request[Any, Any, Any],
    status: Annotated[
        str | None,
        QueryParameter(
            description="Only the alerts in this status: open, acknowledged or "
            "resolved."
        ),
    ] = None,
    model: ModelFilter = None,
) -> Response[bytes]:
    """Return alerts, optionally only ``open``, ``acknowledged`` or ``resolved``."""
    state = daemon_state(request)
    try:
        wanted = AlertStatus(status) if status else None
    except ValueError:
        raise RequestError(
            f"status {status!r} is not an alert status; use open, acknowledged "
            "or resolved"
        ) from None
    found = await asyncio.to_thread(_alerts, state, wanted, model)
    if not found and model is not None and model not in state.config.models:
        declared = set(state.config.models)
        await run_with_catalog(state, check_registered, model, declared)
    return Response(_encode({"alerts": found}), media_type=JSON)


@post(
    "/v1/alerts/{alert_id:int}/acknowledge",
    status_code=200,
    summary="Acknowledge an alert, so a repeat opens a new one",
)
async def acknowledge(
    alert_id: Annotated[int, PathParameter(description="Id of the alert.")],
    request: Request[Any, Any, Any],
) -> Response[bytes]:
    """Mark one alert acknowledged and return it."""
    state = daemon_state(request)
    alert = await asyncio.to_thread(_acknowledge, state, alert_id)
    logger.info("alert acknowledged id=%d", alert_id)
    return Response(_encode(alert), media_type=JSON)


@post(
    "/v1/models/{name:str}/drift/check",
    status_code=200,
    summary="Run the batch drift check of a model now",
    description=(
        "Scores the model's latest logged predictions against the training "
        "rows of its champion (of its newest version while no champion alias "
        "is set), as the scheduled check every [monitoring] "
        "drift_interval_seconds does: the scores are stored, and a drift "
        "alert is opened or updated. The body is ignored. The response has "
        "the reference version and whether it is the champion or the latest, "
        "the run detail the scheduled check records (rows, tested, drifted, "
        "unfit_rows and first_unfit_row, or skipped with the reason), the "
        "alert and the scores of each feature. unfit_rows counts the logged "
        "rows that do not fit the reference version's request types, left "
        "out of the features computed from them, and first_unfit_row names "
        "the first: request_id, row, column, value and error. 409 while a "
        "drift check of the model runs."
    ),
)
async def check_drift_now(
    name: ModelName, request: Request[Any, Any, Any]
) -> Response[bytes]:
    """Run the batch drift check of `name` at once and return its outcome."""
    state = daemon_state(request)
    config = state.config
    try:
        config.model(name)
    except ConfigError as exc:
        raise NotFoundError(str(exc)) from None
    check = await asyncio.to_thread(_check_drift, state, config, name)
    return Response(_encode(check), media_type=JSON)


def _check_drift(state: DaemonState, config: Config, name: str) -> dict[str, Any]:
    check = run_drift_check(config, name)
    record_in_daemon(state, "drift.check", name, check.audit_details())
    return check.to_dict()


@post(
    "/v1/alerts/{alert_id:int}/resolve",
    status_code=200,
    summary="Resolve an alert and send the resolution to the webhook",
    description=(
        "Marks the alert resolved by the request's API key, as 'resolved by "
        "NAME (ROLE)', and posts it to [monitoring] webhook_url with "
        '"event": "resolved" and "resolved_by". An alert resolved already is '
        "returned unchanged and not posted again. The body is ignored."
    ),
)
async def resolve(
    alert_id: Annotated[int, PathParameter(description="Id of the alert.")],
    request: Request[Any, Any, Any],
) -> Response[bytes]:
    """Mark one alert resolved, send it to the webhook, and return it."""
    state = daemon_state(request)
    alert = await asyncio.to_thread(_resolve, state, alert_id)
    return Response(_encode(alert), media_type=JSON)


def _resolve(state: DaemonState, alert_id: int) -> dict[str, Any]:
    resolved_by = current_actor().label
    alert, changed = resolve_alert(state.config.storage.home, alert_id, resolved_by)
    if not changed:
        return alert.to_dict()
    details = {"model": alert.model, "kind": alert.kind}
    record_in_daemon(state, "alert.resolve", str(alert_id), details)
    # The webhook's retries and backoff can take many seconds, so the
    # response does not wait for them.
    notify_in_background(state.config.monitoring, alert.resolved_payload(resolved_by))
    return alert.to_dict()


def _acknowledge(state: DaemonState, alert_id: int) -> dict[str, Any]:
    with MonitoringStore(state.config.storage.home) as store:
        alert = store.acknowledge(alert_id).to_dict()
    details = {"model": alert.get("model"), "kind": alert.get("kind")}
    record_in_daemon(state, "alert.acknowledge", str(alert_id), details)
    return alert


def _drift_rows(
    state: DaemonState, name: str, events: int
) -> tuple[list, list, int, dict[str, Any]]:
    with MonitoringStore(state.config.storage.home) as store:
        return (
            store.drift_history(name, limit=10_000),
            store.drift_events(name, limit=events),
            store.count_drift_events(name),
            scheduled_drift_check(store, name),
        )


def _next_run(state: DaemonState, check: dict[str, Any]) -> str | None:
    """Return the next run time of the check's job, or None when not scheduled."""
    job = state.scheduler.get_job(check["job_id"])
    next_run = getattr(job, "next_run_time", None)
    return next_run.isoformat() if next_run is not None else None


def _alerts(state: DaemonState, status: AlertStatus | None, model: str | None) -> list:
    with MonitoringStore(state.config.storage.home) as store:
        return [a.to_dict() for a in store.list_alerts(status, model)]


def _decode_labels(body: bytes, model: str) -> list[Any]:
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise RequestError(
            f"malformed feedback body for model {model!r}: {exc}; send "
            + _LABELS_SHAPE,
            model=model,
            malformed=True,
        ) from None
    labels = decoded.get("labels") if isinstance(decoded, dict) else None
    if not isinstance(labels, list) or not labels:
        raise RequestError(
            f"feedback for model {model!r} needs a non-empty 'labels' list",
            model=model,
            malformed=True,
        )
    return labels


_UNWRITTEN = "unwritten_predictions"
"""Name under which a label lookup registers the log entries not yet inserted."""


def _logged_outputs(
    view: Catalog, model: str, request_ids: list[str], state: DaemonState
) -> dict[tuple[str, int], tuple[int, Any, Any]]:
    """Return logged outputs and event times of `request_ids`, from the table and
    rolled Parquet."""
    served = state.models.models.get(model)
    if served is None:
        return {}
    info = model_info(served, state.config)
    columns = "request_id, row_index, version, output, model, input"
    sources = [f"SELECT {columns} FROM predictions"]
    # Read before the table: the writer lists an entry as unwritten until its
    # insert has committed, so the lookup finds it in one of the two.
    unwritten = state.predictions.unwritten(model, set(request_ids))
    if unwritten:
        view.db.register(_UNWRITTEN, entries_to_table(unwritten, view.db))
        sources.append(f"SELECT {columns} FROM {_UNWRITTEN}")
    folder = parquet_dir(view.home)
    if folder.is_dir() and any(folder.glob("*.parquet")):
        pattern = str(folder / "*.parquet").replace("'", "''")
        sources.append(f"SELECT {columns} FROM read_parquet('{pattern}')")
    marks = ", ".join("?" for _ in request_ids)
    event = info.event_timestamp
    event_sql = "NULL"
    if event is not None:
        event_sql = "json_extract_string(input, ?)"
    sql = (
        f"SELECT request_id, row_index, version, output, {event_sql} FROM "
        f"({' UNION ALL '.join(sources)}) WHERE model = ? AND request_id IN ({marks})"
    )
    params = [] if event is None else ["$." + json.dumps(event)]
    rows = view.db.execute(sql, [*params, model, *request_ids]).fetchall()
    return {
        (rid, int(row)): (
            int(version),
            output_values(info, json.loads(output)),
            event_time,
        )
        for rid, row, version, output, event_time in rows
    }


ROUTES = [feedback, drift, check_drift_now, alerts, acknowledge, resolve]
"""The route handlers of this module, as `create_app` mounts them."""
