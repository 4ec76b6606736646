"""Key and audit routes: manage API keys and read the audit log (role admin).

A key created or revoked here takes effect at once: the route reads the
active keys again into ``state.access`` after the catalog changed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import PathParameter, QueryParameter

from appliance.access import (
    MAX_LIFETIME,
    ROLES,
    Anchor,
    active_keys,
    create_key,
    list_entries,
    list_keys,
    revoke_key,
    verify_chain,
)
from appliance.errors import RequestError
from appliance.serving._openapi import body_operation
from appliance.serving._routes_admin import time_parameter
from appliance.serving._state import DaemonState, daemon_state, run_with_catalog
from appliance.times import TIME_EXAMPLES

_encode = msgspec.json.Encoder(enc_hook=str).encode
MAX_AUDIT_ENTRIES = 10_000
"""Most entries one audit listing returns."""

KeyName = Annotated[str, PathParameter(description="Name of the API key.")]


class KeyRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of a key creation."""

    name: Annotated[
        str,
        msgspec.Meta(
            description="Name that audit entries show; 1 to 64 ASCII letters, "
            "digits, '_', '.' or '-'.",
            examples=["line-3-scanner"],
        ),
    ]
    role: Annotated[
        str,
        msgspec.Meta(
            description=f"One of {', '.join(ROLES)}; each includes the ones before.",
            examples=["predictor"],
        ),
    ]
    expires_in_seconds: Annotated[
        int | None,
        msgspec.Meta(
            description="Lifetime of the key in seconds, from 1 to "
            f"{int(MAX_LIFETIME.total_seconds())} ({MAX_LIFETIME.days} days); "
            "requests with it get 401 from then on. Omitted or null: the key "
            "never expires.",
            examples=[2592000],
        ),
    ] = None


@get("/v1/admin/keys", summary="List API keys without their tokens")
async def keys(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Return every key, revoked ones too, by name."""
    found = await run_with_catalog(daemon_state(request), list_keys)
    return _json({"keys": [key.to_dict() for key in found]})


@post(
    "/v1/admin/keys",
    status_code=201,
    summary="Create an API key",
    description="The response contains the token, which no later call returns.",
    operation_class=body_operation(
        KeyRequest, "Name, role and lifetime of the new key."
    ),
)
async def new_key(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Create a key and return it with its token."""
    state = daemon_state(request)
    body = await request.body()
    try:
        requested = msgspec.json.decode(body, type=KeyRequest)
    except msgspec.DecodeError as exc:
        raise RequestError(
            f"malformed body for POST /v1/admin/keys: {exc}; send "
            '{"name": "NAME", "role": "reader"}, plus "expires_in_seconds": '
            "SECONDS for a key that expires",
            malformed=True,
        ) from None
    seconds = requested.expires_in_seconds
    lifetime = None if seconds is None else _lifetime(requested.name, seconds)
    async with state.admin_lock:
        key, token = await run_with_catalog(
            state, create_key, requested.name, requested.role, lifetime
        )
        await _reload_keys(state)
    return _json({**key.to_dict(), "token": token}, 201)


@post("/v1/admin/keys/{name:str}/revoke", status_code=200, summary="Revoke a key")
async def revoke(request: Request[Any, Any, Any], name: KeyName) -> Response[bytes]:
    """Revoke a key; requests with it get 401 from now on."""
    state = daemon_state(request)
    async with state.admin_lock:
        key = await run_with_catalog(state, revoke_key, name)
        await _reload_keys(state)
    return _json(key.to_dict())


@get("/v1/admin/audit", summary="List audit log entries, oldest first")
async def audit(
    request: Request[Any, Any, Any],
    since: Annotated[
        str | None,
        QueryParameter(
            description="Only entries recorded at or after this time, ISO 8601 "
            f"such as {TIME_EXAMPLES}; UTC unless an offset is given."
        ),
    ] = None,
    action: Annotated[
        str | None,
        QueryParameter(
            description="Only this action, or every action under a prefix such "
            "as model for model.promote and model.rollback."
        ),
    ] = None,
    limit: Annotated[
        int,
        QueryParameter(
            ge=1,
            le=MAX_AUDIT_ENTRIES,
            description=f"The newest entries, at most {MAX_AUDIT_ENTRIES}.",
        ),
    ] = 1000,
) -> Response[bytes]:
    """Return the newest `limit` entries that match, oldest first."""
    start = time_parameter("since", since)
    found = await run_with_catalog(
        daemon_state(request), list_entries, start, action, limit
    )
    return _json({"entries": [entry.to_dict() for entry in found]})


@get("/v1/admin/audit/verify", summary="Check the hash chain of the audit log")
async def verify(
    request: Request[Any, Any, Any],
    anchor: Annotated[
        str | None,
        QueryParameter(
            description="SEQ:HASH of an entry kept off the box, as the daemon "
            "logs each one; the log must still contain it.",
        ),
    ] = None,
) -> Response[bytes]:
    """Return the number of entries checked and the first broken one, if any."""
    try:
        kept = Anchor.parse(anchor) if anchor is not None else None
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    check = await run_with_catalog(daemon_state(request), verify_chain, kept)
    return _json(check.to_dict())


def _lifetime(name: str, seconds: int) -> timedelta:
    """Return `seconds` as a lifetime; `create_key` checks its range."""
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise RequestError(
            f"invalid expires_in_seconds {seconds} for key {name!r}; give at "
            f"most {int(MAX_LIFETIME.total_seconds())} ({MAX_LIFETIME.days} days)"
        ) from None


async def _reload_keys(state: DaemonState) -> None:
    state.access.keys = await run_with_catalog(state, active_keys)


def _json(content: Any, status: int = 200) -> Response[bytes]:
    return Response(_encode(content), status_code=status, media_type="application/json")


ROUTES = [keys, new_key, revoke, audit, verify]
"""The route handlers of this module, as `create_app` mounts them."""
