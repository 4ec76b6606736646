"""Compaction of a dataset's append chain over HTTP.

``POST /v1/datasets/{name}/compact`` writes the rows of the dataset's latest
version to a version that reads only its own files (`compact_chain`). The
flushes of the HTTP ingest buffer build an append chain, and after the
compaction retention can delete the chain's folders.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

import msgspec
from litestar import Request, Response, post

from appliance.serving._params import DatasetName
from appliance.serving._state import (
    DaemonState,
    daemon_state,
    reload_features,
    run_with_catalog,
)
from appliance.storage import Catalog, CompactResult, compact_chain

_encode = msgspec.json.Encoder(enc_hook=str).encode


@post(
    "/v1/datasets/{name:str}/compact",
    status_code=200,
    summary="Compact a dataset's append chain",
    description=(
        "Writes the rows of the latest version to a new version that reads only "
        "its own files, with the latest version as its parent. Retention can "
        "then delete the folders of the old chain. created is false when the "
        "latest version read only its own files or was compacted before."
    ),
)
async def compact(
    name: DatasetName, request: Request[Any, Any, Any]
) -> Response[bytes]:
    """Compact the append chain of the dataset's latest version."""
    state = daemon_state(request)
    async with state.admin_lock:
        result = await run_with_catalog(state, _compact, state, name)
    if result.created:
        await asyncio.to_thread(reload_features, state)
    return Response(_encode(asdict(result)), media_type="application/json")


def _compact(catalog: Catalog, state: DaemonState, dataset: str) -> CompactResult:
    # A flush recorded during the compaction would be missing from its rows.
    with state.ingest.flush_lock:
        return compact_chain(catalog, state.config.dataset(dataset))


ROUTES = [compact]
"""The route handlers of this module, as `create_app` mounts them."""
