"""Orphan folder routes: the lake folders under ``HOME/orphans``.

The listing reads the file system only, as ``appliance orphans list`` does,
and needs role ``reader``, so the terminal UI's datasets screen can show the
folders. The removal runs in the daemon because its audit entry goes to the
catalog that the daemon holds. It needs role ``admin``, as an erasure does,
because it deletes rows that may exist nowhere else.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import QueryParameter

from appliance.serving._openapi import body_operation
from appliance.serving._routes_admin import _decode, _json
from appliance.serving._state import daemon_state, run_with_catalog
from appliance.storage import Catalog, list_orphans, orphans_dir, remove_orphans


class OrphanRemoveRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The orphan folders to delete."""

    dataset: Annotated[
        str | None,
        msgspec.Meta(description="Dataset whose folders to delete; null for all."),
    ] = None
    folders: Annotated[
        list[str],
        msgspec.Meta(
            description="Names of the dataset's folders to delete, such as "
            "version=0123456789abcdef; empty for all of them."
        ),
    ] = msgspec.field(default_factory=list)


@get("/v1/admin/orphans", summary="List orphan folders")
async def orphan_folders(
    request: Request[Any, Any, Any],
    dataset: Annotated[
        str | None,
        QueryParameter(description="Only the folders of this dataset."),
    ] = None,
) -> Response[bytes]:
    """Return the orphan folders with their size, file count and newest file
    time, and the folder that contains them."""
    home = daemon_state(request).config.storage.home
    found = await asyncio.to_thread(list_orphans, home, dataset)
    return _json(
        {"orphans": [o.to_dict() for o in found], "path": str(orphans_dir(home))}
    )


@post(
    "/v1/admin/orphans/remove",
    status_code=200,
    summary="Delete orphan folders",
    operation_class=body_operation(OrphanRemoveRequest, "The folders to delete."),
)
async def remove_orphan_folders(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Delete orphan folders and return them; each dataset's are audited."""
    state = daemon_state(request)
    path = "/v1/admin/orphans/remove"
    body = _decode(OrphanRemoveRequest, await request.body(), path)
    removed = await run_with_catalog(state, _remove, body.dataset, body.folders)
    return _json({"removed": removed})


def _remove(
    catalog: Catalog, dataset: str | None, folders: list[str]
) -> list[dict[str, Any]]:
    return [orphan.to_dict() for orphan in remove_orphans(catalog, dataset, folders)]


ROUTES = [orphan_folders, remove_orphan_folders]
"""The route handlers of this module, as `create_app` mounts them."""
