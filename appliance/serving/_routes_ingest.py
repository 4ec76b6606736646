"""HTTP ingest: ``POST /v1/datasets/{name}/rows`` into the durable buffer.

A 202 response means the rows are fsynced to the buffer's write-ahead file.
They reach a new dataset version at the next flush (by size or age), and a
crash of the daemon in between loses none of them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from litestar import Request, Response, get, post

from appliance.config import dataset_name_problem
from appliance.errors import LimitError, NotFoundError, RequestError
from appliance.serving._body import JSON, check_rows, decode_nan_literals, read_body
from appliance.serving._params import DatasetName
from appliance.serving._state import DaemonState, daemon_state
from appliance.storage import latest_version

logger = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode


class RowsRequest(msgspec.Struct, forbid_unknown_fields=False):
    """Body of an ingest request."""

    rows: list[Any]


_decoder = msgspec.json.Decoder(RowsRequest)


@post(
    "/v1/datasets/{name:str}/rows",
    status_code=202,
    summary="Buffer rows for the next version of a dataset",
    description=(
        'Body: {"rows": [{column: value, ...}, ...]}. A 202 response means the '
        "rows are on disk in the write-ahead buffer; they reach a new version "
        "of the dataset, appended to the latest, at the next flush."
    ),
)
async def append_rows(
    name: DatasetName, request: Request[Any, Any, Any]
) -> Response[bytes]:
    """Write the rows of one request durably to the dataset's buffer."""
    state = daemon_state(request)
    server = state.config.server
    problem = dataset_name_problem(name)
    if problem is not None:
        raise RequestError(problem, dataset=name)
    if name not in state.config.datasets:
        await asyncio.to_thread(_check_exists, state, name)
    try:
        body = await read_body(request, server.max_body_bytes, name)
        rows = _decode(body, name)
        check_rows(len(rows), server.max_rows, name)
    except LimitError as exc:
        detail = {k: v for k, v in exc.detail.items() if k != "model"}
        raise LimitError(str(exc), dataset=name, **detail) from None
    buffered = await asyncio.to_thread(state.ingest.append, name, rows)
    body = {"dataset": name, "accepted": len(rows), "buffered": buffered}
    return Response(_encode(body), status_code=202, media_type=JSON)


@get("/v1/datasets/{name:str}/rows", summary="Rows waiting in a dataset's buffer")
async def buffer_status(
    name: DatasetName, request: Request[Any, Any, Any]
) -> Response[bytes]:
    """Return the rows buffered for the dataset and its flushes since start."""
    state = daemon_state(request)
    buffered, flushed = state.ingest.buffered(name)
    if not buffered and not flushed and name not in state.config.datasets:
        await asyncio.to_thread(_check_exists, state, name)
    rejected, rejection = state.ingest.rejections(name)
    body = {
        "dataset": name,
        "buffered": buffered,
        "flushes": flushed,
        "rejected_segments": rejected,
        "last_rejection": rejection,
    }
    return Response(_encode(body), media_type=JSON)


def _check_exists(state: DaemonState, dataset: str) -> None:
    """Reject rows for a dataset that is neither declared nor ingested.

    A misspelt name in the path would otherwise start a new dataset.
    """
    view = state.catalog.cursor()
    try:
        found = latest_version(view, dataset, missing_ok=True)
    finally:
        view.close()
    if found is None:
        raise NotFoundError(
            f"dataset {dataset!r} is not declared in [datasets] and has no "
            f"version; check the name, or ingest a first file with 'appliance "
            f"ingest {dataset} FILE'"
        )


def _decode(body: bytes, dataset: str) -> list[Any]:
    if not body.strip():
        raise RequestError(
            f'empty request body for dataset {dataset!r}; send {{"rows": [{{...}}]}}',
            dataset=dataset,
            malformed=True,
        )
    try:
        return _decoder.decode(body).rows
    except msgspec.DecodeError as exc:
        # NaN and Infinity literals reach the ingest, which reads NaN as a
        # missing value and quarantines infinities, as it does for files.
        rows = decode_nan_literals(body)
        if rows is not None:
            return rows
        raise RequestError(
            f"malformed request body for dataset {dataset!r}: {exc}; send "
            '{"rows": [{...}, ...]}',
            dataset=dataset,
            malformed=True,
        ) from None


ROUTES = [append_rows, buffer_status]
"""The route handlers of this module, as `create_app` mounts them."""
