"""Prediction routes: list the served models and predict with them."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from typing import Annotated, Any

import msgspec
import pyarrow as pa
from litestar import Request, Response, get, post
from litestar.params import QueryParameter
from litestar.types import Receive

from appliance.config import Config
from appliance.errors import (
    ApplianceError,
    ConfigError,
    NotFoundError,
    RequestError,
    ServingConfigError,
)
from appliance.features import FeatureServer
from appliance.monitoring import ModelInfo
from appliance.predictions import LogEntry
from appliance.serving._asgi import PredictResponse, request_headers
from appliance.serving._batcher import MicroBatcher
from appliance.serving._body import (
    ARROW_STREAM,
    JSON,
    check_rows,
    check_table_columns,
    decode_arrow,
    decode_json_rows,
    encode_arrow,
    is_arrow,
    receive_body,
)
from appliance.serving._errors import status_of
from appliance.serving._ids import new_request_id
from appliance.serving._lookup_checks import check_lookup_rows, check_lookup_table
from appliance.serving._metrics import NO_VERSION
from appliance.serving._nesting import FLAT_ROWS, reject_deep_nesting
from appliance.serving._onnx import OnnxModel
from appliance.serving._openapi import operation_with_body, predict_body
from appliance.serving._params import ModelName
from appliance.serving._request_fields import request_fields
from appliance.serving._routes_monitoring import model_info
from appliance.serving._routes_registry import pinned_batcher
from appliance.serving._state import DaemonState, daemon_state
from appliance.serving._view_misses import row_miss_warnings, table_miss_warnings

logger = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode


@get(
    "/v1/models",
    summary="List the served models with their input schemas",
    description=(
        "Each model lists its ONNX inputs under inputs, and under request the "
        "columns a prediction row sends: required ones, and the columns its "
        "feature views fill when absent, with required false and filled_from."
    ),
)
async def list_models(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Return every served model with its version, task, inputs and classes."""
    state = daemon_state(request)
    body = {
        "models": [
            {
                "name": name,
                "version": model.version,
                "task": model.task,
                "inputs": model.inputs,
                "request": request_fields(model, state.features.request_lookup(name)),
                "classes": model.classes,
            }
            for name, model in sorted(state.models.models.items())
        ]
    }
    return Response(_encode(body), media_type=JSON)


@post(
    "/v1/models/{name:str}/predict",
    status_code=200,
    summary="Predict rows sent as JSON or as an Arrow IPC stream",
    description=(
        'JSON: {"rows": [{column: value, ...}, ...]} returns {"model", "version", '
        '"request_id", "predictions"}. Arrow: a stream with Content-Type '
        f"{ARROW_STREAM} returns a stream with a prediction column and, for "
        "classifiers, a probability_<class> column per class; its warnings are "
        "in the X-Appliance-Warnings header, a JSON list, and in the schema "
        "metadata under warnings. The input schema of each model is in "
        "components/schemas as <model>Row."
    ),
    operation_class=operation_with_body(predict_body),
)
async def predict(
    name: ModelName,
    request: Request[Any, Any, Any],
    version: Annotated[
        int | None,
        QueryParameter(
            description="Registered version that predicts. The served version "
            "(the champion) predicts when absent."
        ),
    ] = None,
) -> Response[bytes]:
    """Predict the rows of one request and log every prediction.

    Without `version` the served version (the champion) predicts; with it,
    that registered version does. The daemon sends these requests to
    `PredictLane` before Litestar sees them; both run `serve_prediction`.
    """
    _, content_length = request_headers(request.scope)
    body, content_type, headers = await serve_prediction(
        daemon_state(request),
        name,
        version,
        request.headers.get("content-type"),
        content_length,
        request.receive,
    )
    return Response(
        body,
        media_type=content_type.decode(),
        headers={k.decode(): v.decode() for k, v in headers or ()},
    )


async def serve_prediction(
    state: DaemonState,
    name: str,
    version: int | None,
    content_type: str | None,
    content_length: int | None,
    receive: Receive,
) -> PredictResponse:
    """Predict one request of model `name`, then log, monitor and count it.

    Returns:
        The response body, its Content-Type and any extra headers.

    Raises:
        ApplianceError: The model is not served or the request is invalid;
            `error_response` turns it into the JSON error response.
    """
    started = time.perf_counter()
    arrived = time.time()
    batcher = await _batcher(state, name, version)
    model = batcher.model
    try:
        response, entry = await _predict(
            state, batcher, content_type, content_length, receive
        )
    except ApplianceError as exc:
        state.metrics.observe(name, model.version, status_of(exc), 0.0, 0)
        raise
    except Exception:
        # Litestar returns 500 for an unexpected error. Counting it here lets
        # the health check see server errors.
        state.metrics.observe(name, model.version, 500, 0.0, 0)
        raise
    latency = time.perf_counter() - started
    entry.predicted_at = arrived
    entry.latency_ms = latency * 1000.0
    info = _model_info(model, state.config)
    if isinstance(entry.inputs, list):
        _record(state, info, entry)
    else:
        # The journal copies an Arrow request's tables, and the monitoring
        # service reads their output columns, which would hold up the event
        # loop for a large batch.
        await asyncio.to_thread(_record, state, info, entry)
    state.metrics.observe(name, model.version, 200, latency, entry.rows)
    return response


async def _predict(
    state: DaemonState,
    batcher: MicroBatcher,
    content_type: str | None,
    content_length: int | None,
    receive: Receive,
) -> tuple[PredictResponse, LogEntry]:
    """Predict the rows of one request, sent as JSON or as an Arrow stream.

    Raises:
        ServingConfigError: A part of the daemon's own configuration fails,
            such as a feature view whose SQL is invalid. No request avoids that, so the
            client gets a 503, not the 422 of a `ConfigError`.
    """
    model = batcher.model
    try:
        if is_arrow(content_type):
            return await _predict_arrow(state, model, receive, content_length)
        return await _predict_json(state, batcher, receive, content_length)
    except ConfigError as exc:
        raise ServingConfigError(
            f"model {model.name!r} cannot be served now because of the daemon's "
            f"configuration: {exc}. The operator must correct the configuration "
            "file and reload it (SIGHUP)"
        ) from exc


async def _batcher(state: DaemonState, name: str, version: int | None) -> MicroBatcher:
    """Return the batcher of the requested version, counting a failure.

    A failure is counted with version label `NO_VERSION`, and one for a model
    that is not served with an empty model label too, because both values
    come from the client and each new value would start a new series.
    """
    try:
        batcher = state.models.batcher(name)
    except NotFoundError:
        state.metrics.observe("", NO_VERSION, 404, 0.0, 0)
        raise
    if version is None or version == batcher.model.version:
        return batcher
    try:
        return await pinned_batcher(state, name, version)
    except ApplianceError as exc:
        state.metrics.observe(name, NO_VERSION, status_of(exc), 0.0, 0)
        raise
    except Exception:
        state.metrics.observe(name, NO_VERSION, 500, 0.0, 0)
        raise


def _record(state: DaemonState, info: ModelInfo, entry: LogEntry) -> None:
    """Log a request's predictions and pass them to the monitoring service.

    Both are done before the response, so a label sent after it finds the
    prediction.
    """
    state.predictions.append(entry)
    state.monitoring.submit(info, entry.request_id, entry.inputs, entry.outputs)


_infos: weakref.WeakKeyDictionary[OnnxModel, tuple[Config, ModelInfo]] = (
    weakref.WeakKeyDictionary()
)


def _model_info(model: OnnxModel, config: Config) -> ModelInfo:
    """Return `model_info` of a model version, built once per version and config."""
    cached = _infos.get(model)
    if cached is None or cached[0] is not config:
        cached = _infos[model] = (config, model_info(model, config))
    return cached[1]


_JSON_TYPE = JSON.encode()
_ARROW_TYPE = ARROW_STREAM.encode()
WARNINGS_HEADER = b"x-appliance-warnings"
"""Header of an Arrow response with warnings, a JSON list of ASCII strings."""


async def _predict_json(
    state: DaemonState,
    batcher: MicroBatcher,
    receive: Receive,
    content_length: int | None,
) -> tuple[PredictResponse, LogEntry]:
    model = batcher.model
    server = state.config.server
    batcher.announce()
    try:
        body = await receive_body(
            receive, content_length, server.max_body_bytes, model.name
        )
        subject = f"request body for model {model.name!r}"
        with reject_deep_nesting(body, subject, FLAT_ROWS, model=model.name):
            rows = decode_json_rows(body, model.name)
        check_rows(len(rows), server.max_rows, model.name)
        fed = rows
        misses: list[str] = []
        features = state.features
        if features.uses_features(model.name):
            check_lookup_rows(features, model.name, rows)
            lookup = features.lookup_columns(model.name)
            # A view that failed to load has no columns in `lookup`.
            features.check_served(model.name)
            if features.loaded_at and _carry_all(rows, lookup):
                fed = _without_lookup(model, rows, lookup)
            else:
                rows, fed, misses = await asyncio.to_thread(
                    fill_rows, features, model, rows
                )
        feed, warnings = _json_feed(model, fed)
        warnings = [*warnings, *misses]
    except BaseException:
        batcher.withdraw()
        raise
    predictions = await batcher.predict(feed, len(rows), announced=True)
    request_id = new_request_id()
    body = {
        "model": model.name,
        "version": model.version,
        "request_id": request_id,
        "predictions": predictions,
    }
    if warnings:
        body["warnings"] = warnings
    response = (_encode(body), _JSON_TYPE, None)
    entry = LogEntry(request_id, model.name, model.version, 0.0, 0.0, rows, predictions)
    return response, entry


def fill_rows(
    features: FeatureServer, model: OnnxModel, rows: list[Any]
) -> tuple[list[Any], list[Any], list[str]]:
    """Fill the feature view columns of JSON rows in a worker thread.

    Returns:
        The filled rows, as logged, the same rows without the lookup columns
        that are not model inputs, as fed to the model, and a warning per
        view that had no values for some rows.
    """
    filled = features.fill(model.name, rows)
    fed = _without_lookup(model, filled, features.lookup_columns(model.name))
    misses = row_miss_warnings(features, model.name, rows, filled)
    return filled, fed, misses


def _carry_all(rows: list[Any], lookup: set[str]) -> bool:
    """Tell whether every row is an object that carries every lookup column.

    The lookup keeps the values a request carries, so it would return such
    rows unchanged and the join is skipped.
    """
    return all(isinstance(row, dict) and lookup.issubset(row) for row in rows)


def _without_lookup(model: OnnxModel, rows: list[Any], lookup: set[str]) -> list[Any]:
    """Return the rows without the lookup columns that are not model inputs."""
    unused = lookup - {spec["name"] for spec in model.request}
    return [{k: v for k, v in row.items() if k not in unused} for row in rows]


def _json_feed(model: OnnxModel, rows: list[Any]) -> tuple[dict[str, Any], list[str]]:
    if not rows:
        raise RequestError(
            f"the request to model {model.name!r} has no rows; send "
            '{"rows": [{...}, ...]} with at least one row',
            model=model.name,
        )
    return model.feed_rows(rows)


async def _predict_arrow(
    state: DaemonState,
    model: OnnxModel,
    receive: Receive,
    content_length: int | None,
) -> tuple[PredictResponse, LogEntry]:
    server = state.config.server
    body = await receive_body(
        receive, content_length, server.max_body_bytes, model.name
    )
    table = decode_arrow(body, model.name)
    if not table.num_rows:
        raise RequestError(
            f"the Arrow stream sent to model {model.name!r} has no rows; send "
            "at least one record batch with rows",
            model=model.name,
        )
    check_rows(table.num_rows, server.max_rows, model.name)
    check_table_columns(table, model.name)
    loop = asyncio.get_running_loop()
    table, output, payload, warnings = await loop.run_in_executor(
        state.models.executor, _score_arrow, state.features, model, table
    )
    state.metrics.observe_batch(model.name, table.num_rows)
    request_id = new_request_id()
    headers = [
        (b"x-request-id", request_id.encode()),
        (b"x-model", model.name.encode()),
        (b"x-model-version", str(model.version).encode()),
    ]
    if warnings:
        # ASCII JSON, so that any column name fits in an HTTP header.
        headers.append((WARNINGS_HEADER, json.dumps(warnings).encode()))
    response = (payload, _ARROW_TYPE, headers)
    entry = LogEntry(request_id, model.name, model.version, 0.0, 0.0, table, output)
    return response, entry


def _score_arrow(
    features: FeatureServer, model: OnnxModel, table: pa.Table
) -> tuple[pa.Table, pa.Table, bytes, list[str]]:
    """Fill features, score a table in a worker thread and encode the response.

    Returns:
        The request table with its features, the output, its stream and the
        warnings about the request, which the stream's schema metadata also contains.
    """
    check_lookup_table(features, model.name, table)
    sent = table
    table = features.fill_table(model.name, table)
    misses = table_miss_warnings(features, model.name, sent, table)
    # As with JSON rows, lookup columns that are not model inputs get no warning.
    unused = features.lookup_columns(model.name) - {s["name"] for s in model.request}
    fed = table.drop_columns([n for n in table.column_names if n in unused])
    feed, warnings = model.feed_table(fed)
    warnings = [*warnings, *misses]
    output = model.format_table(model.run(feed))
    return table, output, encode_arrow(output, warnings), warnings


ROUTES = [list_models, predict]
"""The route handlers of this module, as `create_app` mounts them."""
