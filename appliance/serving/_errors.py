"""Error responses: `ApplianceError` subclasses mapped to HTTP statuses."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

from appliance.errors import (
    ApplianceError,
    ConfigError,
    ExportError,
    IngestError,
    IntegrityError,
    JobRunningError,
    LimitError,
    NotFoundError,
    RegistryError,
    RequestError,
    StorageError,
    TrainingError,
)

logger = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
_STATUS: dict[type[ApplianceError], int] = {
    NotFoundError: 404,
    RegistryError: 409,
    JobRunningError: 409,
    LimitError: 413,
    RequestError: 422,
    IngestError: 422,
    TrainingError: 422,
    ConfigError: 422,
    ExportError: 422,
    StorageError: 503,
    IntegrityError: 500,
}


def status_of(exc: ApplianceError) -> int:
    """Return the HTTP status of an error; 400 for a malformed request."""
    if isinstance(exc, RequestError) and exc.detail.get("malformed"):
        return 400
    for kind in type(exc).__mro__:
        if kind in _STATUS:
            return _STATUS[kind]
    return 400


def error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Return the JSON error response of any exception raised by a route.

    The body is ``{"error": message, ...}`` plus the fields that locate the
    problem (model, row, column, limit).
    """
    if isinstance(exc, HTTPException):
        body: dict[str, Any] = {"error": exc.detail}
        invalid = _invalid_parameters(exc.extra)
        if invalid:
            body["error"] = f"{exc.detail}; " + "; ".join(invalid.values())
            body["parameters"] = list(invalid)
        return Response(
            _encode(body), status_code=exc.status_code, media_type="application/json"
        )
    if isinstance(exc, ApplianceError):
        status = status_of(exc)
        logger.warning(
            "request rejected path=%s status=%d error=%s", request.url.path, status, exc
        )
        detail = getattr(exc, "detail", {})
        body = {
            "error": str(exc),
            "type": type(exc).__name__,
            **{k: v for k, v in detail.items() if k != "malformed"},
        }
        return Response(
            _encode(body), status_code=status, media_type="application/json"
        )
    logger.exception("request failed path=%s", request.url.path)
    body = {"error": "internal error; see the daemon log"}
    return Response(_encode(body), status_code=500, media_type="application/json")


def _invalid_parameters(extra: Any) -> dict[str, str]:
    """Return the reason for each request parameter Litestar rejected, by name.

    Litestar's ``ValidationException`` lists them in ``extra`` as dicts with
    ``key``, ``source`` and ``message``. Other exceptions give an empty dict.
    """
    if not isinstance(extra, list):
        return {}
    reasons = {}
    for entry in extra:
        if not isinstance(entry, dict) or not entry.get("key"):
            continue
        source = getattr(entry.get("source"), "value", entry.get("source"))
        place = f"{source} parameter" if source else "parameter"
        key = str(entry["key"])
        reasons[key] = f"{place} {key!r}: {entry.get('message')}"
    return reasons
