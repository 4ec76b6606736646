"""Admin routes of the registry: promote, roll back and reload served models.

The handlers only decode the request and call a promoter (`Promoter` in
`appliance.registry`) off the event loop; the promoter checks the artifact,
moves the alias in the catalog and swaps the served model.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import msgspec
from litestar import Request, Response, post

from appliance.errors import RequestError

_JSON = "application/json"


class PromoteRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of a promotion."""

    version: int
    alias: str = "champion"
    actor: str = "unknown"
    reason: str = ""


class RollbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of a rollback."""

    alias: str = "champion"
    actor: str = "unknown"
    reason: str = ""


class AliasChanger(Protocol):
    """What the admin routes need from a promoter."""

    def promote(
        self, model: str, version: int, alias: str, actor: str, reason: str
    ) -> dict[str, Any]: ...

    def rollback(
        self, model: str, alias: str, actor: str, reason: str
    ) -> dict[str, Any]: ...

    def reload(self) -> list[dict[str, Any]]: ...


def admin_routes(promoter: AliasChanger) -> list[Any]:
    """Return the route handlers of the registry's admin API."""
    encoder = msgspec.json.Encoder()

    def respond(content: Any) -> Response[bytes]:
        return Response(encoder.encode(content), media_type=_JSON)

    @post("/v1/admin/models/{name:str}/promote", status_code=200)
    async def promote(name: str, request: Request[Any, Any, Any]) -> Response[bytes]:
        body = _decode(PromoteRequest, await request.body(), name)
        event = await asyncio.to_thread(
            promoter.promote, name, body.version, body.alias, body.actor, body.reason
        )
        return respond(event)

    @post("/v1/admin/models/{name:str}/rollback", status_code=200)
    async def rollback(name: str, request: Request[Any, Any, Any]) -> Response[bytes]:
        body = _decode(RollbackRequest, await request.body(), name)
        event = await asyncio.to_thread(
            promoter.rollback, name, body.alias, body.actor, body.reason
        )
        return respond(event)

    @post("/v1/admin/reload", status_code=200)
    async def reload() -> Response[bytes]:
        changed = await asyncio.to_thread(promoter.reload)
        return respond({"activated": changed})

    return [promote, rollback, reload]


def _decode(kind: type[Any], body: bytes, model: str) -> Any:
    try:
        return msgspec.json.decode(body or b"{}", type=kind)
    except msgspec.DecodeError as exc:
        raise RequestError(
            f"malformed admin request for model {model!r}: {exc}",
            model=model,
            malformed=True,
        ) from None
