"""Admin routes: the commands that change or read the catalog while the daemon
runs, because the daemon's connection is then the only one allowed.

The CLI calls these through `appliance.client` when a daemon holds the home.
Each route runs its catalog work in a worker thread on a cursor of the daemon's
connection, and commands that change the catalog run one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import typing
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import PathParameter, QueryParameter

from appliance._query_limits import MAX_QUERY_ROWS, check_query_limit
from appliance.errors import NotFoundError, RequestError, shown
from appliance.serving._onnx import OnnxModel
from appliance.serving._openapi import body_operation
from appliance.serving._params import ModelFilter
from appliance.serving._responses import TrainResult
from appliance.serving._routes_registry import serve_new_version
from appliance.serving._state import (
    DaemonState,
    daemon_state,
    load_model,
    reload_features,
    run_with_catalog,
)
from appliance.storage import (
    Catalog,
    IngestResult,
    get_run,
    ingest,
    list_models,
    list_quarantine,
    list_runs,
    list_versions,
    shown_version,
)
from appliance.times import TIME_EXAMPLES, parse_time

logger = logging.getLogger(__name__)

_encode = msgspec.json.Encoder(enc_hook=str).encode
_decode_text = msgspec.json.decode

LATEST = "latest"
"""The reference of a dataset's newest version, with the dataset parameter."""


class IngestRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Files on this box to ingest into a new dataset version."""

    dataset: Annotated[str, msgspec.Meta(description="Name of the dataset.")]
    paths: Annotated[
        list[str],
        msgspec.Meta(
            description="CSV, Parquet or JSON-lines files that the daemon can "
            "read; CSV and JSON-lines files may be gzip-compressed, such as "
            "x.csv.gz. A relative path is taken from the daemon's working "
            "directory."
        ),
    ]
    mode: Annotated[
        Literal["replace", "append"],
        msgspec.Meta(
            description="replace makes a version of these files only, and append "
            "adds their rows to the latest version's rows."
        ),
    ] = "replace"
    strict: Annotated[
        bool,
        msgspec.Meta(
            description="Whether to reject the whole ingest when a row breaks the "
            "contract or the schema changed, instead of quarantining the rows."
        ),
    ] = False
    force: Annotated[
        bool,
        msgspec.Meta(
            description="Whether to ingest even when the files lack a column that "
            "a feature view's entity key or timestamp is read from."
        ),
    ] = False


class TrainRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The model to train, register and serve."""

    model: Annotated[
        str,
        msgspec.Meta(description="Name of a model declared in the configuration."),
    ]


def _json(content: Any, status: int = 200) -> Response[bytes]:
    return Response(_encode(content), status_code=status, media_type="application/json")


def _decode(request_type: type, body: bytes, path: str) -> Any:
    try:
        return msgspec.json.decode(body, type=request_type)
    except msgspec.DecodeError as exc:
        allowed = _allowed_values(request_type, str(exc))
        raise RequestError(
            f"malformed body for {path}: {exc}{allowed}", malformed=True
        ) from None


def _allowed_values(request_type: type, error: str) -> str:
    """Return the values a field takes when `error` rejects a value of it."""
    found = re.search(r"Invalid enum value .* at `\$\.(\w+)`", error)
    if found is None:
        return ""
    hint = typing.get_type_hints(request_type).get(found.group(1))
    values = typing.get_args(hint) if typing.get_origin(hint) is Literal else ()
    return f"; use one of {', '.join(map(str, values))}" if values else ""


@post(
    "/v1/admin/ingest",
    status_code=200,
    summary="Ingest files into a dataset",
    operation_class=body_operation(IngestRequest, "Files to ingest and how."),
)
async def ingest_files(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Ingest files readable by the daemon into a new dataset version.

    The feature views are read again after a new version, so predictions
    join the new rows from then on, and after lost lake files were rebuilt,
    so views that could not read them load again.
    """
    state = daemon_state(request)
    body = _decode(IngestRequest, await request.body(), "/v1/admin/ingest")
    paths = [Path(p) for p in body.paths]
    settings = state.config.dataset(body.dataset)
    async with state.admin_lock:
        result = await run_with_catalog(
            state,
            _ingest,
            state,
            body.dataset,
            paths,
            body.mode,
            settings,
            body.strict,
            list(state.config.feature_views.values()),
            body.force,
        )
    if result.created or result.rebuilt:
        await asyncio.to_thread(reload_features, state)
    return _json(asdict(result))


def _ingest(catalog: Catalog, state: DaemonState, *args: Any) -> IngestResult:
    # The buffer's flushes write versions too; one writer at a time.
    settings = args[3]
    cipher = state.ingest.cipher() if settings.sensitive else None
    with state.ingest.flush_lock:
        return ingest(catalog, *args, cipher=cipher)


@post(
    "/v1/admin/train",
    status_code=200,
    summary="Train a model and serve it",
    operation_class=body_operation(TrainRequest, "The model to train."),
    responses={
        200: ResponseSpec(
            TrainResult, description="The new version.", generate_examples=False
        )
    },
)
async def train(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Train, export and register a model, then serve the new version at once."""
    state = daemon_state(request)
    body = _decode(TrainRequest, await request.body(), "/v1/admin/train")
    config = state.config
    config.model(body.model)
    async with state.admin_lock:
        result = await run_with_catalog(state, _train, config, body.model)
    version = result.model_version
    # A promoted champion keeps serving; the new version waits for promotion.
    served = await serve_new_version(state, version)
    return _json(
        {
            "run_id": result.run_id,
            "model": version.model,
            "version": version.version,
            "dataset_version": result.dataset_version,
            "metrics": result.metrics,
            "parity": result.parity,
            "rows_train": result.rows_train,
            "rows_test": result.rows_test,
            "path": str(version.path),
            "sha256": version.sha256,
            "served": served,
            "trials": result.trials,
            "warnings": result.warnings,
        }
    )


def _train(catalog: Catalog, config: Any, name: str) -> Any:
    # Imported here so that the daemon starts without the training libraries.
    from appliance.training import train_model

    return train_model(config, name, catalog=catalog)


async def load_version(state: DaemonState, folder: Path, sha256: str) -> OnnxModel:
    """Load a registered version in a worker thread and serve it from now on."""

    started = time.perf_counter()
    model = await asyncio.to_thread(load_model, state.config, folder, sha256)
    seconds = time.perf_counter() - started
    previous = state.models.put(model)
    state.metrics.model_load.labels(model.name, str(model.version)).set(seconds)
    logger.info(
        "model switched model=%s version=%d previous=%s seconds=%.3f",
        model.name,
        model.version,
        previous.version if previous else None,
        seconds,
    )
    return model


@get("/v1/admin/datasets", summary="List dataset versions")
async def datasets(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Return every dataset version, as ``appliance datasets list`` prints."""
    versions = await run_with_catalog(daemon_state(request), list_versions)
    return _json({"datasets": [asdict(v) for v in versions]})


@get("/v1/admin/dataset-version", summary="Show one dataset version")
async def dataset_version(
    request: Request[Any, Any, Any],
    reference: Annotated[
        str | None,
        QueryParameter(
            description="DATASET for its latest version, or DATASET@VERSION where "
            "VERSION is a unique prefix of a version id. With dataset: latest, "
            "the default, or a VERSION prefix."
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        QueryParameter(description="Name of the dataset, when reference omits it."),
    ] = None,
) -> Response[bytes]:
    """Return the version ``DATASET`` (latest) or ``DATASET@VERSION`` names."""
    state = daemon_state(request)
    named = _dataset_reference(dataset, reference)
    # A pending quality report is completed and stored on the way.
    found = await run_with_catalog(state, shown_version, named)
    return _json({"version": asdict(found)})


def _dataset_reference(dataset: str | None, reference: str | None) -> str:
    """Return the ``DATASET[@VERSION]`` reference that the two parameters name.

    Raises:
        RequestError: Neither is given, or the reference names another dataset.
    """
    if dataset is None:
        if reference is None:
            raise RequestError(
                "the dataset version is not named; send reference=DATASET or "
                "reference=DATASET@VERSION, or dataset=DATASET with an optional "
                "reference=VERSION",
                parameters=["reference", "dataset"],
            )
        return reference
    if reference is None or reference == LATEST:
        return dataset
    named, at, version = reference.partition("@")
    if not at:
        return f"{dataset}@{reference}"
    if named != dataset:
        raise RequestError(
            f"reference {shown(reference)} names dataset {shown(named)}, but "
            f"dataset is {shown(dataset)}; send the version alone as reference, "
            "or leave out dataset",
            parameters=["reference", "dataset"],
        )
    return f"{dataset}@{version}"


@get("/v1/admin/quarantine", summary="List quarantined rows of a dataset")
async def quarantine(
    request: Request[Any, Any, Any],
    dataset: Annotated[str, QueryParameter(description="Name of the dataset.")],
    version: Annotated[
        str | None,
        QueryParameter(
            description="Only the rows of versions whose id starts with this prefix."
        ),
    ] = None,
    limit: Annotated[
        int | None,
        QueryParameter(
            ge=0, description="Maximum number of rows, or all rows when absent."
        ),
    ] = None,
) -> Response[bytes]:
    """Return the rows that broke the dataset's contract, oldest first."""
    state = daemon_state(request)
    rows = await run_with_catalog(state, list_quarantine, dataset, version, limit)
    return _json({"rows": [asdict(r) for r in rows]})


@get("/v1/admin/model-versions", summary="List registered model versions")
async def model_versions(
    request: Request[Any, Any, Any], model: ModelFilter = None
) -> Response[bytes]:
    """Return registered versions, by model and newest first."""
    versions = await run_with_catalog(daemon_state(request), list_models, model)
    return _json({"versions": [asdict(v) for v in versions]})


@get("/v1/admin/runs", summary="List training runs")
async def runs(
    request: Request[Any, Any, Any], model: ModelFilter = None
) -> Response[bytes]:
    """Return training runs, newest first."""
    found = await run_with_catalog(daemon_state(request), list_runs, model)
    return _json({"runs": [asdict(r) for r in found]})


@get("/v1/admin/runs/{run_id:str}", summary="Show one training run")
async def run(
    request: Request[Any, Any, Any],
    run_id: Annotated[str, PathParameter(description="Id of the training run.")],
) -> Response[bytes]:
    """Return one training run."""
    found = await run_with_catalog(daemon_state(request), get_run, run_id)
    return _json(asdict(found))


@get("/v1/predictions", summary="Query the prediction log")
async def predictions(
    request: Request[Any, Any, Any],
    model: ModelFilter = None,
    version: Annotated[
        int | None,
        QueryParameter(ge=1, description="Only the rows of this model version."),
    ] = None,
    since: Annotated[
        str | None,
        QueryParameter(
            description="Only the rows predicted at or after this time, ISO 8601 "
            f"such as {TIME_EXAMPLES}; UTC unless an offset is given."
        ),
    ] = None,
    until: Annotated[
        str | None,
        QueryParameter(
            description="Only the rows predicted before this time, in the form "
            "of since."
        ),
    ] = None,
    limit: Annotated[
        int,
        QueryParameter(
            ge=0,
            description=f"Maximum number of rows, at most {MAX_QUERY_ROWS}.",
        ),
    ] = 100,
    newest_first: Annotated[
        bool, QueryParameter(description="Whether the newest rows come first.")
    ] = False,
) -> Response[bytes]:
    """Return logged predictions filtered by model, version and time.

    Each row's ``input`` and ``output`` are JSON objects; the log stores them
    as JSON texts.
    """
    state = daemon_state(request)
    start, end = time_parameter("since", since), time_parameter("until", until)
    check_query_limit(limit)
    rows, body = await run_with_catalog(
        state, _query_log, model, version, start, end, limit, newest_first
    )
    if not rows and model is not None and model not in state.config.models:
        declared = set(state.config.models)
        await run_with_catalog(state, check_registered, model, declared)
    return Response(body, media_type="application/json")


def _query_log(catalog: Catalog, *args: Any) -> tuple[int, bytes]:
    """Query the prediction log and encode the response body off the event loop.

    Returns:
        The number of rows and the JSON body.
    """
    from appliance.predictions import query

    rows = query(catalog, *args)
    for row in rows:
        row["input"] = _decode_text(row["input"])
        row["output"] = _decode_text(row["output"])
    return len(rows), _encode({"predictions": rows})


def check_registered(catalog: Catalog, model: str, declared: set[str]) -> None:
    """Raise `NotFoundError` unless `model` has a registered version.

    An empty response for a misspelt model would read as "no predictions yet".
    """
    registered = {version.model for version in list_models(catalog)}
    if model not in registered:
        known = ", ".join(sorted(registered | declared)) or "none"
        raise NotFoundError(
            f"model {model!r} is not declared in [models] and has no registered "
            f"version; known models: {known}"
        )


def time_parameter(name: str, text: str | None) -> datetime | None:
    """Parse query parameter `name` as the CLI parses ``--since``.

    Raises:
        RequestError: The text is not an ISO 8601 time; 422.
    """
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise RequestError(
            f"query parameter {name!r}: {exc}", parameters=[name]
        ) from None


ROUTES = [
    ingest_files,
    train,
    datasets,
    dataset_version,
    quarantine,
    model_versions,
    runs,
    run,
    predictions,
]
"""The route handlers of this module, as `create_app` mounts them."""
