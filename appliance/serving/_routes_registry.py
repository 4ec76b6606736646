"""Registry routes: runs, versions, aliases and cards while the daemon runs.

The CLI calls these through `appliance.client` while a daemon runs on the home.
Reads run on a cursor of the daemon's connection in a worker thread; a
promotion or rollback loads and checks the version first, moves the alias
under the admin lock, then serves the new champion with `ModelSet.put`, so
requests in flight finish on the version they started with.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter

from appliance.access import current_actor
from appliance.errors import AliasMovedError, RequestError
from appliance.registry import (
    card_html,
    event_record,
    history,
    is_serving_alias,
    model_versions,
    promote,
    resolve,
    rollback,
    run_details,
    run_summaries,
)
from appliance.serving._admin_lock import (
    ALIAS_CHANGE_WAIT_SECONDS,
    admin_lock_within,
)
from appliance.serving._batcher import MicroBatcher
from appliance.serving._champions import resolve_when_pinned
from appliance.serving._onnx import OnnxModel
from appliance.serving._openapi import body_operation
from appliance.serving._params import ModelFilter, ModelName, VersionReference
from appliance.serving._state import (
    DaemonState,
    daemon_state,
    load_model,
    run_with_catalog,
)
from appliance.signing import trusted_keys, version_check
from appliance.storage import (
    CHAMPION,
    ModelVersion,
    alias_problem,
    get_version,
)

logger = logging.getLogger(__name__)

_encode = msgspec.json.Encoder(enc_hook=str).encode
_PREFIX = "/v1/admin/registry"


_ACTOR = msgspec.Meta(
    description="Who makes the change. The alias history records it only for a "
    "request without an API key; with a key it records the key's name and role, "
    "and this value goes to the audit entry as requested_by.",
    examples=["alice"],
)
_UNNAMED = "unknown"
"""Actor of a request whose body names none."""
_REASON = msgspec.Meta(
    description="Why, as the alias history records it.",
    examples=["better AUC on the holdout"],
)
_ALIAS = msgspec.Meta(
    description=f"Alias to move. The daemon serves the version that {CHAMPION} "
    "points at.",
    examples=[CHAMPION],
)


class PromoteRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of a promotion."""

    version: Annotated[
        int, msgspec.Meta(description="Registered version number.", examples=[1])
    ]
    alias: Annotated[str, _ALIAS] = CHAMPION
    actor: Annotated[str, _ACTOR] = _UNNAMED
    reason: Annotated[str, _REASON] = ""


class RollbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of a rollback; an empty body rolls back the champion."""

    alias: Annotated[str, _ALIAS] = CHAMPION
    actor: Annotated[str, _ACTOR] = _UNNAMED
    reason: Annotated[str, _REASON] = ""


class LookupRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of a lookup of whole runs by id."""

    run_ids: Annotated[
        list[str],
        msgspec.Meta(description="Ids of the runs, in the order to return them."),
    ]
    details: Annotated[
        bool,
        msgspec.Meta(description="Whether to return folds and evaluation too."),
    ] = True


class AliasChange(msgspec.Struct):
    """A recorded change of an alias."""

    model: str
    alias: str
    version: Annotated[int, msgspec.Meta(description="Version the alias points at.")]
    previous_version: Annotated[
        int | None, msgspec.Meta(description="Version it pointed at before.")
    ]
    action: Annotated[
        str,
        msgspec.Meta(
            description="set (promote), rollback, or unchanged when the alias "
            "already pointed at the version. An unchanged promotion records "
            "nothing, and its changed_at, actor and reason are those of the "
            f"change that set the alias. An unchanged promotion of a {CHAMPION} "
            "that the daemon does not serve, because it failed to load, loads "
            "it again and sets serving."
        ),
    ]
    actor: str
    reason: str
    changed_at: Annotated[str, msgspec.Meta(description="ISO 8601 time.")]
    serving: Annotated[
        int | None,
        msgspec.Meta(
            description="Version the daemon serves from now on, present only when "
            f"the alias is {CHAMPION}."
        ),
    ] = None


_ALIAS_CHANGE = ResponseSpec(
    AliasChange, description="The recorded change.", generate_examples=False
)


@get(f"{_PREFIX}/runs", summary="List runs without folds and evaluation")
async def runs(
    request: Request[Any, Any, Any],
    model: ModelFilter = None,
    parent: Annotated[
        str | None,
        QueryParameter(
            description="Only the child runs of the search with this run id."
        ),
    ] = None,
    limit: Annotated[
        int | None,
        QueryParameter(
            ge=0, description="Maximum number of runs, or all runs when absent."
        ),
    ] = None,
) -> Response[bytes]:
    """Return runs newest first, optionally of one model or one search."""
    found = await run_with_catalog(
        daemon_state(request), run_summaries, model, parent, limit
    )
    return _json({"runs": found})


@post(
    f"{_PREFIX}/runs/lookup",
    status_code=200,
    summary="Read whole runs by id",
    operation_class=body_operation(LookupRequest, "Runs to read."),
)
async def lookup(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Return whole runs with artifacts and child run ids, in the order asked."""
    body = _decode(LookupRequest, await request.body())
    found = await run_with_catalog(
        daemon_state(request), run_details, body.run_ids, body.details
    )
    return _json({"runs": found})


@get(f"{_PREFIX}/models", summary="List versions with aliases")
async def versions(
    request: Request[Any, Any, Any], model: ModelFilter = None
) -> Response[bytes]:
    """Return registered versions with their aliases and serving state.

    ``serving`` marks the version this daemon serves, which is not the
    champion while a champion that failed to load is replaced.
    """
    state = daemon_state(request)
    found = await run_with_catalog(state, model_versions, model)
    served = {name: m.version for name, m in state.models.models.items()}
    for record in found:
        record["serving"] = served.get(record["model"]) == record["version"]
    return _json({"versions": found})


@get(f"{_PREFIX}/models/{{name:str}}/history", summary="List alias changes")
async def alias_changes(
    request: Request[Any, Any, Any],
    name: ModelName,
    alias: Annotated[
        str | None,
        QueryParameter(
            description="Only the changes of this alias, or of every alias when absent."
        ),
    ] = None,
) -> Response[bytes]:
    """Return who changed which alias of a model, when and why."""
    found = await run_with_catalog(daemon_state(request), history, name, alias)
    return _json({"events": found})


@get(f"{_PREFIX}/models/{{name:str}}/resolve", summary="Resolve NAME@REFERENCE")
async def resolve_reference(
    request: Request[Any, Any, Any], name: ModelName, reference: VersionReference = None
) -> Response[bytes]:
    """Return the version a number or alias names (the champion by default)."""
    found = await run_with_catalog(daemon_state(request), resolve, name, reference)
    return _json({"version": found})


@get(f"{_PREFIX}/models/{{name:str}}/card", summary="Model card as HTML")
async def card(
    request: Request[Any, Any, Any], name: ModelName, reference: VersionReference = None
) -> Response[bytes]:
    """Return the self-contained HTML model card of a version."""
    state = daemon_state(request)
    trusted = trusted_keys(state.config)
    page = await run_with_catalog(state, card_html, name, reference, trusted)
    return _json({"html": page})


@post(
    f"{_PREFIX}/models/{{name:str}}/promote",
    status_code=200,
    summary="Promote",
    operation_class=body_operation(PromoteRequest, "Version and alias to point."),
    responses={200: _ALIAS_CHANGE},
)
async def promote_version(
    request: Request[Any, Any, Any], name: ModelName
) -> Response[bytes]:
    """Point an alias at a version; a new champion is served at once."""
    state = daemon_state(request)
    body = _decode(PromoteRequest, await request.body())
    _check_alias(body.alias)
    load = _loader(state, body.alias)
    # A champion that failed to load is loaded again by a promotion to it.
    served = state.models.models.get(name)
    load_unchanged = is_serving_alias(body.alias) and (
        served is None or served.version != body.version
    )
    actor, requested_by = _alias_actor(body.actor)
    lock = admin_lock_within(state, name, "promotion", ALIAS_CHANGE_WAIT_SECONDS)
    async with lock:
        event, model = await run_with_catalog(
            state,
            promote,
            name,
            body.version,
            body.alias,
            actor,
            body.reason,
            load,
            load_unchanged,
            requested_by,
        )
    return _json(_serve(state, event_record(event), model))


@post(
    f"{_PREFIX}/models/{{name:str}}/rollback",
    status_code=200,
    summary="Roll back",
    operation_class=body_operation(
        RollbackRequest, "Alias to roll back; may be empty.", required=False
    ),
    responses={200: _ALIAS_CHANGE},
)
async def rollback_version(
    request: Request[Any, Any, Any], name: ModelName
) -> Response[bytes]:
    """Return an alias to its previous version; a champion is served at once."""
    body = _decode(RollbackRequest, await request.body())
    _check_alias(body.alias)
    actor, requested_by = _alias_actor(body.actor)
    record = await rollback_served(
        daemon_state(request),
        name,
        body.alias,
        actor,
        body.reason,
        lock_wait_seconds=ALIAS_CHANGE_WAIT_SECONDS,
        requested_by=requested_by,
    )
    return _json(record)


async def rollback_served(
    state: DaemonState,
    name: str,
    alias: str,
    actor: str,
    reason: str,
    expected_version: int | None = None,
    lock_wait_seconds: float | None = None,
    requested_by: str | None = None,
) -> dict[str, Any]:
    """Return an alias to its previous version and serve it if it is the champion.

    Args:
        state: The daemon state.
        name: The model name.
        alias: The alias to move back.
        actor: Who requested the change, as the alias history records it.
        reason: Why, as the alias history records it.
        expected_version: When set, the rollback happens only while the alias
            still points at this version, checked under the admin lock.
        lock_wait_seconds: Maximum wait for the admin lock; no limit when None.
        requested_by: The actor a keyed request named for itself, kept in the
            audit details only.

    Returns:
        The recorded alias change, with ``serving`` set when it serves now.

    Raises:
        RegistryError: The alias has no previous version.
        AliasMovedError: The alias no longer points at `expected_version`.
        IntegrityError: The previous version's signature or files fail verification.
        JobRunningError: The admin lock stayed taken for `lock_wait_seconds`.
    """
    load = _loader(state, alias)
    lock: Any = state.admin_lock
    if lock_wait_seconds is not None:
        lock = admin_lock_within(state, name, "rollback", lock_wait_seconds)
    async with lock:
        if expected_version is not None:
            current = await run_with_catalog(state, resolve, name, alias)
            if current["version"] != expected_version:
                raise AliasMovedError(
                    f"{alias} of model {name!r} is version {current['version']}, "
                    f"no longer {expected_version}; the rollback was not made"
                )
        event, model = await run_with_catalog(
            state, rollback, name, alias, actor, reason, load, requested_by
        )
    return _serve(state, event_record(event), model)


async def pinned_batcher(state: DaemonState, name: str, version: int) -> MicroBatcher:
    """Return the batcher of version `version` of `name`, loading it once.

    A load that succeeds resolves the ``signature`` alerts of the version, as
    serving the champion does.

    Raises:
        NotFoundError: The version does not exist.
        IntegrityError: Its signature or files fail verification.
    """
    batcher = state.models.pinned.get((name, version))
    if batcher is not None:
        return batcher
    found: ModelVersion = await run_with_catalog(state, get_version, name, version)
    model = await asyncio.to_thread(load_model, state.config, found.path, found.sha256)
    logger.info("model version loaded model=%s version=%d", name, version)
    batcher = state.models.pin(model)
    resolve_when_pinned(state, model)
    return batcher


async def serve_new_version(state: DaemonState, found: ModelVersion) -> bool:
    """Serve a newly trained version unless a champion was promoted.

    Returns:
        True when the new version is served from now on.
    """
    champion = await run_with_catalog(state, resolve, found.model, CHAMPION)
    if champion["version"] != found.version:
        logger.info(
            "new version not served model=%s version=%d champion=%d",
            found.model,
            found.version,
            champion["version"],
        )
        return False
    model = await asyncio.to_thread(load_model, state.config, found.path, found.sha256)
    state.models.put(model)
    return True


def _alias_actor(claimed: str) -> tuple[str, str | None]:
    """Return the alias history's actor of this request, and the claimed actor
    to keep in the audit details.

    A request with an API key is recorded as the key's name and role, because
    the body's `actor` is whatever the client wrote. A request without a key
    has only the body's actor to record.
    """
    key = current_actor()
    if key.role is None:
        return claimed, None
    return f"{key.name} ({key.role})", None if claimed == _UNNAMED else claimed


def _check_alias(alias: str) -> None:
    """Reject an invalid alias name with HTTP 422, naming it and the valid form."""
    problem = alias_problem(alias)
    if problem is not None:
        raise RequestError(problem, alias=alias)


def _loader(state: DaemonState, alias: str) -> Any:
    """Return the artifact check of a promotion: a full load for the champion."""
    if not is_serving_alias(alias):
        return version_check(trusted_keys(state.config))
    return lambda found: load_model(state.config, found.path, found.sha256)


def _serve(
    state: DaemonState, record: dict[str, Any], model: OnnxModel | None
) -> dict[str, Any]:
    if isinstance(model, OnnxModel):
        previous = state.models.put(model)
        record["serving"] = model.version
        logger.info(
            "champion switched model=%s version=%d previous=%s actor=%s",
            model.name,
            model.version,
            previous.version if previous else None,
            record["actor"],
        )
    return record


def _json(content: Any) -> Response[bytes]:
    return Response(_encode(content), media_type="application/json")


def _decode(request_type: type, body: bytes) -> Any:
    try:
        return msgspec.json.decode(body or b"{}", type=request_type)
    except msgspec.DecodeError as exc:
        raise RequestError(f"malformed request body: {exc}", malformed=True) from None


ROUTES = [
    runs,
    lookup,
    versions,
    alias_changes,
    resolve_reference,
    card,
    promote_version,
    rollback_version,
]
"""The route handlers of this module, as `create_app` mounts them."""
