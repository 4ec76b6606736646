"""Signing key route: the home's key rotated while the daemon serves.

The rotation runs under the admin lock, so no training, retraining or alias
change of this daemon signs or loads a version meanwhile. Models in memory
keep serving, because their files do not change. Versions loaded later, such
as for requests pinned with ``?version=N``, verify with the new key, which
the daemon reads from the home at each verification.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post

from appliance.serving._routes_admin import _json
from appliance.serving._state import daemon_state, run_with_catalog
from appliance.signing import rotate_and_record
from appliance.storage import Catalog


@post(
    "/v1/admin/signing/rotate",
    status_code=200,
    summary="Rotate the home's signing key",
    description=(
        "Makes a new key pair, verifies every registered version and re-signs "
        "those that the old home key signed, then retires the old key. A call "
        "after an interrupted rotation finishes it. Needs role admin."
    ),
)
async def rotate_signing_key(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Rotate the home's signing key and return what happened to each version."""
    state = daemon_state(request)
    async with state.admin_lock:
        rotation = await run_with_catalog(state, _rotate, state.config)
    return _json({"rotation": rotation.to_dict()})


def _rotate(catalog: Catalog, config: Any) -> Any:
    return rotate_and_record(catalog, config)


ROUTES = [rotate_signing_key]
"""The route handlers of this module, as `create_app` mounts them."""
