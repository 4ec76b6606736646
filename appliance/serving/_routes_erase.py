"""Erasure routes: a data subject's rows removed while the daemon serves.

An erasure runs under the admin lock, so no ingest or training of this
daemon runs meanwhile, and under the ingest buffer's flush lock, so no flush
writes a version that still reads the old folders. The daemon goes on
serving and logging predictions, and the prediction log writer waits while
the log is rewritten. The feature views are read again once the versions read their
new folders, so the in-memory indexes drop the subject's rows, and the
caches of derived values are emptied.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import QueryParameter

from appliance.derive import clear_feature_caches
from appliance.erasure import Receipt, erase, list_receipts, subject_from_keys
from appliance.serving._openapi import body_operation
from appliance.serving._routes_admin import _decode, _json
from appliance.serving._state import (
    DaemonState,
    daemon_state,
    reload_features,
    run_with_catalog,
)
from appliance.storage import Catalog

logger = logging.getLogger(__name__)


class EraseRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The data subject whose rows to erase."""

    dataset: Annotated[str, msgspec.Meta(description="Name of the dataset.")]
    keys: Annotated[
        dict[str, str],
        msgspec.Meta(
            description="Key columns and their values as text; a row is erased "
            "when it matches all of them."
        ),
    ]
    dry_run: Annotated[
        bool,
        msgspec.Meta(description="Whether to count the rows instead of erasing."),
    ] = False


@post(
    "/v1/admin/erase",
    status_code=200,
    summary="Erase a data subject's rows",
    operation_class=body_operation(EraseRequest, "The subject and the mode."),
)
async def erase_subject(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Erase the subject's rows from every place, or count them in a dry run."""
    state = daemon_state(request)
    body = _decode(EraseRequest, await request.body(), "/v1/admin/erase")
    subject = subject_from_keys(body.dataset, body.keys)
    async with state.admin_lock:
        try:
            receipt = await run_with_catalog(
                state, _erase, state, subject, body.dry_run
            )
        finally:
            if not body.dry_run:
                # The caches of derived values are keyed by request values,
                # which may be the subject's. A failed erasure may have
                # erased some places too.
                state.features.clear_derived()
                clear_feature_caches()
    return _json({"receipt": receipt.to_dict()})


def _erase(
    catalog: Catalog, state: DaemonState, subject: Any, dry_run: bool
) -> Receipt:
    with state.ingest.flush_lock:
        return erase(
            catalog,
            state.config,
            subject,
            dry_run,
            log=state.predictions,
            buffer=state.ingest,
            # The views are read from the new folders before the old go.
            after_commit=lambda: reload_features(state),
        )


@get("/v1/admin/erasures", summary="List erasure receipts")
async def erasures(
    request: Request[Any, Any, Any],
    dataset: Annotated[
        str | None, QueryParameter(description="Only the receipts of this dataset.")
    ] = None,
) -> Response[bytes]:
    """Return the stored erasure receipts, newest first."""
    state = daemon_state(request)
    receipts = await run_with_catalog(state, list_receipts, dataset)
    return _json({"receipts": [r.to_dict() for r in receipts]})


ROUTES = [erase_subject, erasures]
"""The route handlers of this module, as `create_app` mounts them."""
