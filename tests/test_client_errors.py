"""Wording of the daemon's error responses in `DaemonClient`'s errors."""

from __future__ import annotations

import io
import json
import urllib.error
from typing import Any

import pytest

from appliance.client import _error_message

REQUEST_ID = "0" * 32


def _response(status: int, body: dict[str, Any]) -> urllib.error.HTTPError:
    content = io.BytesIO(json.dumps(body).encode())
    return urllib.error.HTTPError("http://127.0.0.1/x", status, "Reason", {}, content)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(404, "NotFoundError"), (409, "ApiKeyError"), (422, "RequestError")],
)
def test_appliance_error_message_as_is(status: int, kind: str) -> None:
    body = {"error": "alert 99 does not exist", "type": kind, "request_id": REQUEST_ID}
    assert _error_message(_response(status, body)) == "alert 99 does not exist"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, "AuthenticationError"),
        (403, "AuthorizationError"),
        (400, "ValidationException"),
        (503, "StorageError"),
        (500, None),
    ],
)
def test_other_error_keeps_status(status: int, kind: str | None) -> None:
    body = {"error": "failed", "type": kind, "request_id": REQUEST_ID}
    assert _error_message(_response(status, body)) == (
        f"the daemon rejected the request: failed (HTTP {status}, request_id "
        f"{REQUEST_ID})"
    )


def test_body_without_json_keeps_reason() -> None:
    failed = urllib.error.HTTPError(
        "http://127.0.0.1/x", 502, "Bad Gateway", {}, io.BytesIO(b"<html>")
    )
    assert _error_message(failed) == (
        "the daemon rejected the request: Bad Gateway (HTTP 502)"
    )
