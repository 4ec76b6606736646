"""Retraining routes: start a model's retraining job and follow its runs.

The handlers reach the job through ``state.retraining``; this module does not
import the retraining package, so the routes load without it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

import msgspec
from litestar import Request, Response, get, post
from litestar.params import QueryParameter

from appliance.errors import LimitError, NotFoundError, RequestError, cut, shown
from appliance.serving._body import JSON
from appliance.serving._nesting import reject_deep_nesting
from appliance.serving._openapi import body_operation
from appliance.serving._params import ModelName
from appliance.serving._state import DaemonState, daemon_state

Trigger = Literal["manual", "drift", "schedule"]
_TRIGGERS = get_args(Trigger)
_BODY_MAX_BYTES = 10_000


class RetrainRequest(msgspec.Struct, forbid_unknown_fields=True):
    """What the retraining policy decides for. Every field is optional.

    `_decode` checks the body by hand, so that each error names the field and
    the model. This Struct documents the body and lists its keys.
    """

    trigger: Annotated[
        Trigger,
        msgspec.Meta(description="Trigger that the policy decides for."),
    ] = "manual"
    as_of: Annotated[
        str | None,
        msgspec.Meta(
            description="ISO 8601 time taken as now, else the policy's clock.",
            examples=["2013-06-01T00:00:00Z"],
        ),
    ] = None
    force: Annotated[
        bool,
        msgspec.Meta(
            description="Whether to start a run whatever the policy decides, "
            "which only trigger manual allows."
        ),
    ] = False


_KEYS = RetrainRequest.__struct_fields__


@post(
    "/v1/models/{name:str}/retrain",
    status_code=202,
    summary="Start a retraining of a model",
    description=(
        'Body, optional: {"trigger": "manual"|"drift"|"schedule", "as_of": ISO '
        'time, "force": false}. The policy decides as for that trigger, at time '
        "as_of (else its clock). A run that starts is answered 202 with its "
        "record, outcome 'running'; follow it with GET on the same path. A skip "
        "is answered 200 with the recorded reason. 409 names the running job's "
        "id. force (manual only) starts a run whatever the policy decides."
    ),
    operation_class=body_operation(
        RetrainRequest, "Trigger of the decision; may be empty.", required=False
    ),
)
async def start_retrain(
    name: ModelName, request: Request[Any, Any, Any]
) -> Response[bytes]:
    """Decide on a retraining of `name` and start it when the policy allows."""
    state = daemon_state(request)
    _check_model(state, name)
    body = await request.body()
    subject = f"retrain request for model {name!r}"
    with reject_deep_nesting(body, subject, '{"trigger": "manual"}', model=name):
        trigger, as_of, force = _decode(body, name)
    record, started = await state.retraining.request(name, trigger, as_of, force)
    return _json(record, 202 if started else 200)


@get("/v1/models/{name:str}/retrain", summary="Retraining runs of a model")
async def retrain_history(
    name: ModelName,
    request: Request[Any, Any, Any],
    limit: Annotated[
        int,
        QueryParameter(
            description="Maximum number of records. Values below 1 count as 1."
        ),
    ] = 20,
) -> Response[bytes]:
    """Return whether a job runs and the model's records, newest first."""
    state = daemon_state(request)
    _check_model(state, name)
    running = state.retraining.running(name)
    history = await asyncio.to_thread(state.retraining.history, name, max(limit, 1))
    body = {
        "model": name,
        "running": running is not None,
        "running_id": running.id if running is not None else None,
        "history": history,
    }
    return _json(body, 200)


def _check_model(state: DaemonState, name: str) -> None:
    if name not in state.config.models:
        declared = ", ".join(sorted(state.config.models)) or "none"
        raise NotFoundError(
            f"model {name!r} is not declared in {state.config.path}; declared "
            f"models: {declared}"
        )


def _decode(body: bytes, model: str) -> tuple[str, datetime | None, bool]:
    if len(body) > _BODY_MAX_BYTES:
        raise LimitError(
            f"retrain request for model {model!r} is {len(body)} bytes, above the "
            f"limit of {_BODY_MAX_BYTES} bytes; send only trigger, as_of and force",
            model=model,
            limit=_BODY_MAX_BYTES,
        )
    decoded: Any = {}
    if body.strip():
        try:
            decoded = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise RequestError(
                f"malformed retrain request for model {model!r}: {exc}; send "
                '{"trigger": "manual"} or an empty body',
                model=model,
                malformed=True,
            ) from None
    if not isinstance(decoded, dict):
        raise RequestError(
            f"retrain request for model {model!r} must be a JSON object, got "
            f"{type(decoded).__name__}",
            model=model,
            malformed=True,
        )
    unknown = sorted(set(decoded) - set(_KEYS))
    if unknown:
        raise RequestError(
            f"retrain request for model {model!r} has unknown key {unknown[0]!r}; "
            f"known keys: {', '.join(_KEYS)}",
            model=model,
        )
    trigger = decoded.get("trigger", "manual")
    if trigger not in _TRIGGERS:
        raise RequestError(
            f"trigger {trigger!r} of the retrain request for model {model!r} is "
            f"invalid; use one of {', '.join(_TRIGGERS)}",
            model=model,
        )
    force = decoded.get("force", False)
    if not isinstance(force, bool) or (force and trigger != "manual"):
        raise RequestError(
            f"force of the retrain request for model {model!r} must be true or "
            f'false, and true only with trigger "manual"; got '
            f"{cut(json.dumps(force))} with trigger {json.dumps(trigger)}",
            model=model,
        )
    return trigger, _as_of(decoded.get("as_of"), model), force


def _as_of(value: Any, model: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise RequestError(
            f"as_of {shown(value)} of the retrain request for model {model!r} is not "
            "an ISO 8601 time such as 2013-06-01T00:00:00Z",
            model=model,
        ) from None


def _json(content: Any, status: int) -> Response[bytes]:
    text = json.dumps(content, default=str).encode()
    return Response(text, status_code=status, media_type=JSON)


ROUTES = [start_retrain, retrain_history]
"""The route handlers of this module, as `create_app` mounts them."""
