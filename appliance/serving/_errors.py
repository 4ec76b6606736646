"""Error responses: `ApplianceError` subclasses mapped to HTTP statuses."""

from __future__ import annotations

import json
import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

from appliance.errors import (
    SHOWN_CHARACTERS,
    ApiKeyError,
    ApplianceError,
    ColumnKeyError,
    ConfigError,
    ExportError,
    IngestError,
    IntegrityError,
    InUseError,
    JobRunningError,
    LimitError,
    MediaTypeError,
    NotFoundError,
    RegistryError,
    RequestError,
    ServingConfigError,
    StorageError,
    TrainingError,
    cut,
)
from appliance.serving._body import SMALL_BODY_MAX_BYTES
from appliance.serving._ids import new_request_id

logger = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
LOGGED_ERROR_CHARACTERS = 1000
"""Maximum characters of an error message in a log line. Messages cut the
request values they show with `shown`, so this bounds the rest, such as a
message that lists many column names."""
_STATUS: dict[type[ApplianceError], int] = {
    NotFoundError: 404,
    RegistryError: 409,
    ApiKeyError: 409,
    JobRunningError: 409,
    InUseError: 409,
    LimitError: 413,
    MediaTypeError: 415,
    RequestError: 422,
    IngestError: 422,
    TrainingError: 422,
    ConfigError: 422,
    ServingConfigError: 503,
    ExportError: 422,
    StorageError: 503,
    # The request is valid, but the files of the model version it needs do not
    # match their signature or recorded hash. A 5xx would count that in the
    # server error rate as a failure of the daemon.
    IntegrityError: 409,
    ColumnKeyError: 500,
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

    The body is ``{"error": message, "request_id": ..., ...}`` plus the
    fields that locate the problem (model, row, column, limit). The request
    id is new, and the log line of the rejection or failure names it.
    """
    request_id = new_request_id()
    if isinstance(exc, HTTPException):
        body: dict[str, Any] = {"error": exc.detail, "request_id": request_id}
        path, method = cut(request.url.path), request.method
        # The router found no route, or none for this method; the document
        # at /schema lists them.
        if exc.status_code == 404:
            body["error"] = (
                f"{exc.detail}: no route {method} {path}; GET /schema lists the "
                "routes and their parameters"
            )
        elif exc.status_code == 405:
            body["error"] = (
                f"{exc.detail}: {path} takes no {method} request; GET /schema "
                "lists the methods of each route"
            )
        elif exc.status_code == 413:
            body["error"] = (
                f"request body of {method} {path} is above the limit of "
                f"{SMALL_BODY_MAX_BYTES} bytes of this route; send a smaller body"
            )
            body["limit"] = SMALL_BODY_MAX_BYTES
        invalid = _invalid_parameters(exc.extra)
        if invalid:
            body["error"] = f"{exc.detail}; " + "; ".join(invalid.values())
            body["parameters"] = list(invalid)
        if exc.status_code not in (404, 405):
            # A request for a route that does not exist is not logged, so
            # that a scanner's requests cannot fill the log. It has no type
            # either, so a client can see that this daemon lacks the route.
            body["type"] = type(exc).__name__
            _log_rejection(request, request_id, exc.status_code, body["error"])
        return _json(body, exc.status_code)
    if isinstance(exc, ApplianceError):
        status = status_of(exc)
        _log_rejection(request, request_id, status, _logged_text(request, exc))
        detail = getattr(exc, "detail", {})
        body = {
            "error": str(exc),
            "type": type(exc).__name__,
            "request_id": request_id,
            **{k: v for k, v in detail.items() if k != "malformed"},
        }
        return _json(body, status)
    logger.exception(
        "request failed request_id=%s method=%s path=%s",
        request_id,
        request.method,
        log_text(request.url.path),
    )
    body = {
        "error": "internal error; see the daemon log line of this request_id",
        "request_id": request_id,
    }
    return _json(body, 500)


def _logged_text(request: Request[Any, Any, Any], exc: ApplianceError) -> str:
    """Return the message of `exc` for the log, unless it is about a sensitive
    column: such a message may show the value, which is stored only encrypted."""
    column = getattr(exc, "detail", {}).get("column")
    try:
        sensitive = request.app.state.daemon.config.sensitive_columns
    except AttributeError:
        sensitive = frozenset()
    if column in sensitive:
        return (
            f"invalid value of sensitive column {column!r}; the message is not "
            "logged because it may show the value"
        )
    return str(exc)


def _log_rejection(
    request: Request[Any, Any, Any], request_id: str, status: int, error: str
) -> None:
    logger.warning(
        "request rejected request_id=%s method=%s path=%s status=%d error=%s",
        request_id,
        request.method,
        log_text(request.url.path),
        status,
        log_text(error, LOGGED_ERROR_CHARACTERS),
    )


def log_text(text: str, limit: int = SHOWN_CHARACTERS) -> str:
    """Return `text` cut as `cut` does and quoted, for a ``key=value`` log field.

    The quoted form is a JSON string, so a space, quote or line break in the
    text cannot end the field early.
    """
    return json.dumps(cut(text, limit), ensure_ascii=False)


def _json(body: dict[str, Any], status: int) -> Response[bytes]:
    return Response(_encode(body), status_code=status, media_type="application/json")


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
