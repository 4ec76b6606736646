"""Dataset removal route: a whole dataset deleted while the daemon serves.

The removal runs under the admin lock, so no ingest or training of this
daemon runs meanwhile. It also holds the ingest buffer's flush lock, so no
flush writes a version of the dataset. The buffer takes no rows while the removal
checks and deletes the dataset's buffer folder. The feature views are read
again once the catalog no longer has the dataset.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, post
from litestar.params import PathParameter

from appliance.errors import ApplianceError, one_line
from appliance.serving._openapi import body_operation
from appliance.serving._routes_admin import _decode, _json
from appliance.serving._state import DaemonState, daemon_state, run_with_catalog
from appliance.serving._view_health import update_view_alerts
from appliance.storage import (
    Catalog,
    DatasetRemoval,
    remove_dataset,
    request_compaction,
)

logger = logging.getLogger(__name__)

COMPACTION_NOTE = (
    "the catalog file keeps the bytes of the deleted rows in freed blocks until "
    "it is compacted, which the daemon does at its next start"
)


class RemoveRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The flags that let a dataset removal break dependents or drop rows."""

    ignore_dependents: Annotated[
        bool,
        msgspec.Meta(
            description="Whether to remove the dataset although models, feature "
            "views or registered model versions use it."
        ),
    ] = False
    drop_buffered_rows: Annotated[
        bool,
        msgspec.Meta(
            description="Whether to delete buffered rows that no version stores."
        ),
    ] = False


@post(
    "/v1/admin/datasets/{name:str}/remove",
    status_code=200,
    summary="Remove a whole dataset",
    operation_class=body_operation(RemoveRequest, "What the removal may break."),
)
async def remove(
    request: Request[Any, Any, Any],
    name: Annotated[str, PathParameter(description="Name of the dataset.")],
) -> Response[bytes]:
    """Delete the dataset's versions, lake folder, quarantined rows, buffer
    folder and stored contract; 409 names what depends on it."""
    state = daemon_state(request)
    path = f"/v1/admin/datasets/{name}/remove"
    body = _decode(RemoveRequest, await request.body() or b"{}", path)
    async with state.admin_lock:
        removal = await run_with_catalog(state, _remove, state, name, body)
    return _json({"removal": removal.to_dict()})


def _remove(
    catalog: Catalog, state: DaemonState, name: str, body: RemoveRequest
) -> DatasetRemoval:
    with state.ingest.flush_lock:
        removal = remove_dataset(
            catalog,
            state.config,
            name,
            body.ignore_dependents,
            body.drop_buffered_rows,
            buffer=state.ingest,
            after_commit=lambda: _read_views_again(state),
        )
    # The daemon's connection stays open, so the next start compacts the file.
    request_compaction(catalog.home)
    removal.notes.append(COMPACTION_NOTE)
    return removal


def _read_views_again(state: DaemonState) -> None:
    """Read the feature views again, or stop serving them when that fails.

    The views read before may hold the removed dataset's rows, so unlike
    after an ingest they are not kept when the new read fails. A view that
    reads the removed dataset fails, as one that fails on its rows does:
    its models are not served, and it raises a ``feature_view`` alert.
    """
    if not state.features.models:
        return
    before = dict(state.features.failures)
    try:
        state.features.load()
    except ApplianceError as exc:
        state.features.unload()
        logger.warning(
            "feature views unloaded after a dataset removal error=%s",
            one_line(str(exc)),
        )
    if before or state.features.failures:
        update_view_alerts(state, before)


ROUTES = [remove]
"""The route handlers of this module, as `create_app` mounts them."""
