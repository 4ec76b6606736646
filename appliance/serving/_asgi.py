"""Plain ASGI plumbing: what the predict route reads from a scope and sends.

`PredictLane` serves predict requests without Litestar's request and response
objects. These helpers read the headers and query of the ASGI scope and send
the response messages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from litestar.exceptions import ValidationException

Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
PredictResponse = tuple[bytes, bytes, Headers | None]
"""Body, Content-Type and extra headers of a successful prediction."""


def request_headers(scope: dict[str, Any]) -> tuple[str | None, int | None]:
    """Return the Content-Type and the Content-Length of a request.

    A Content-Length that is not a whole number is returned as None, so the
    body is then counted as it arrives.
    """
    content_type = None
    content_length = None
    # ASGI servers send header names in lower case.
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value.decode("latin-1")
        elif name == b"content-length" and value.isdigit():
            content_length = int(value)
    return content_type, content_length


def query_int(scope: dict[str, Any], name: str) -> int | None:
    """Return the integer query parameter `name`, or None when it is absent.

    Raises:
        ValidationException: The value is not an integer. Its response is
            the 400 Litestar gives for an invalid parameter of a handler.
    """
    query = scope["query_string"]
    if not query:
        return None
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key != name:
            continue
        try:
            return int(value)
        except ValueError:
            pass
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is not None and number.is_integer():
            return int(number)
        path = f"{scope['path']}?{query.decode('latin-1')}"
        raise ValidationException(
            detail=f"Validation failed for {scope['method']} {path}",
            extra=[
                {
                    "message": f"Expected `int | null`, got {value!r}",
                    "key": name,
                    "source": "query",
                }
            ],
        )
    return None


async def send_response(
    send: Send,
    body: bytes,
    content_type: bytes,
    headers: Headers | None = None,
    status: int = 200,
) -> None:
    """Send a response with `body` in two ASGI messages."""
    raw = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
    ]
    if headers:
        raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
