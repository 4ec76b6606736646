"""Rejected segments of the HTTP ingest buffer: their reasons and retries.

A flush sets a segment aside in ``HOME/buffer/NAME/rejected/`` when its own
rows fail, with a reason file beside it. ``GET /v1/datasets/{name}/rows``
lists those segments (`rejected_segments_status`), and ``POST
/v1/datasets/{name}/rejected/{segment}/retry`` ingests one again as an
append once the rows or the contract are fixed.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, post
from litestar.params import PathParameter

from appliance.serving._params import DatasetName
from appliance.serving._state import DaemonState, daemon_state
from appliance.storage import list_rejected

_encode = msgspec.json.Encoder(enc_hook=str).encode

SegmentName = Annotated[
    str,
    PathParameter(
        description="File name of a segment in the buffer's rejected/ folder, "
        "such as segment-01733476800000000000.jsonl; the .jsonl may be left out."
    ),
]


class RejectedSegmentStatus(msgspec.Struct):
    """A segment in the buffer's rejected/ folder and why its flush failed."""

    segment: Annotated[str, msgspec.Meta(description="File name of the segment.")]
    path: Annotated[str, msgspec.Meta(description="Absolute path of the segment.")]
    rows: Annotated[int, msgspec.Meta(description="Rows in the segment.")]
    error: Annotated[
        str | None,
        msgspec.Meta(
            description="Class of the error, such as IngestError or "
            "ConversionException; null when the segment has no reason file."
        ),
    ]
    message: Annotated[
        str | None,
        msgspec.Meta(description="Message of the error."),
    ]
    rejected_at: Annotated[
        str | None,
        msgspec.Meta(description="Time of the latest failed flush or retry, UTC."),
    ]
    retries: Annotated[
        int, msgspec.Meta(description="Retries that failed again on the rows.")
    ]


def rejected_segments_status(
    state: DaemonState, dataset: str
) -> list[RejectedSegmentStatus]:
    """Return the segments in `dataset`'s rejected/ folder with their reasons."""
    records = list_rejected(state.ingest.root / dataset)
    return [RejectedSegmentStatus(**asdict(record)) for record in records]


@post(
    "/v1/datasets/{name:str}/rejected/{segment:str}/retry",
    status_code=200,
    summary="Ingest a rejected buffer segment again",
    description=(
        "Appends the rows of a segment that a flush set aside in the buffer's "
        "rejected/ folder, with the normal quarantine rules. The segment leaves "
        "the folder once its version is committed. A segment whose rows fail "
        "again stays, with the new error in its reason (422)."
    ),
)
async def retry_segment(
    name: DatasetName, segment: SegmentName, request: Request[Any, Any, Any]
) -> Response[bytes]:
    """Ingest one rejected segment of the dataset's buffer again."""
    state = daemon_state(request)
    async with state.admin_lock:
        result = await asyncio.to_thread(state.ingest.retry_rejected, name, segment)
    return Response(_encode(asdict(result)), media_type="application/json")


ROUTES = [retry_segment]
"""The route handlers of this module, as `create_app` mounts them."""
