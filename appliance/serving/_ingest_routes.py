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
from litestar.handlers import HTTPRouteHandler

from appliance.errors import RequestError
from appliance.storage import IngestBuffer

logger = logging.getLogger(__name__)

_JSON = "application/json"


class RowsRequest(msgspec.Struct, forbid_unknown_fields=False):
    """Body of an ingest request."""

    rows: list[Any]


def ingest_handlers(buffer: IngestBuffer, max_rows: int) -> list[HTTPRouteHandler]:
    """Return the route handlers of the ingest API over `buffer`."""
    decoder = msgspec.json.Decoder(RowsRequest)
    encoder = msgspec.json.Encoder()

    def respond(content: Any, status: int) -> Response[bytes]:
        return Response(encoder.encode(content), status_code=status, media_type=_JSON)

    @post("/v1/datasets/{name:str}/rows", status_code=202)
    async def append_rows(
        name: str, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        rows = _decode(decoder, await request.body(), name)
        if len(rows) > max_rows:
            return respond(
                {
                    "error": f"request has {len(rows)} rows, above the limit of "
                    f"{max_rows}; split it into smaller requests",
                    "dataset": name,
                    "limit": max_rows,
                },
                413,
            )
        buffered = await asyncio.to_thread(buffer.append, name, rows)
        return respond(
            {"dataset": name, "accepted": len(rows), "buffered": buffered}, 202
        )

    @get("/v1/datasets/{name:str}/rows")
    async def buffer_status(name: str) -> Response[bytes]:
        buffered, flushed = buffer.buffered(name)
        return respond({"dataset": name, "buffered": buffered, "flushes": flushed}, 200)

    return [append_rows, buffer_status]


def _decode(decoder: msgspec.json.Decoder, body: bytes, dataset: str) -> list[Any]:
    if not body.strip():
        raise RequestError(
            f'empty request body for dataset {dataset!r}; send {{"rows": [{{...}}]}}',
            dataset=dataset,
            malformed=True,
        )
    try:
        return decoder.decode(body).rows
    except msgspec.DecodeError as exc:
        raise RequestError(
            f"malformed request body for dataset {dataset!r}: {exc}; send "
            '{"rows": [{...}, ...]}',
            dataset=dataset,
            malformed=True,
        ) from None
