"""Request bodies: read under a byte limit, decoded from JSON or Arrow IPC."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pyarrow as pa
from litestar.exceptions import InternalServerException

from appliance.errors import LimitError, RequestError
from appliance.jsonnumbers import OverflowedNumber
from appliance.storage import count_keys, keep_repeats, mark_repeats

ARROW_STREAM = "application/vnd.apache.arrow.stream"
JSON = "application/json"

_MAX_INT_DIGITS = 309
_ARROW_FILE_MAGIC = b"ARROW1"
_ACCEPTED_TYPES = (
    "send numbers as integers, float32 or float64, text as string, large_string "
    "or dictionary, and booleans as bool"
)
SMALL_BODY_MAX_BYTES = 1_000_000
"""Largest body of a route that does not read it under [server] max_body_bytes."""
WARNINGS_METADATA_KEY = "warnings"
"""Schema metadata key of an Arrow response's warnings, a JSON list of strings."""


class PredictRequest(msgspec.Struct, forbid_unknown_fields=False):
    """Body of a JSON prediction request."""

    rows: list[Any]


_decoder = msgspec.json.Decoder(PredictRequest)


def is_arrow(content_type: str | None) -> bool:
    """Return whether a Content-Type header names an Arrow IPC stream."""
    return bool(content_type) and content_type.split(";")[0].strip() == ARROW_STREAM


async def read_body(request: Any, max_bytes: int, model: str) -> bytes:
    """Read a Litestar request's body with `receive_body`.

    Raises:
        LimitError: The body is larger than `max_bytes`.
    """
    length = request.headers.get("content-length")
    declared = int(length) if length is not None and length.isdigit() else None
    return await receive_body(request.receive, declared, max_bytes, model)


async def receive_body(
    receive: Callable[[], Awaitable[Any]],
    content_length: int | None,
    max_bytes: int,
    model: str,
) -> bytes:
    """Read an ASGI request body, stopping as soon as it passes `max_bytes`.

    A Content-Length above the limit is rejected before any byte is read, and a
    chunked body is counted as it arrives, so neither is kept whole in memory.

    Raises:
        LimitError: The body is larger than `max_bytes`.
        InternalServerException: The client disconnected before the end of
            the body, as Litestar's own body reader raises.
    """
    if content_length is not None and content_length > max_bytes:
        raise _too_large(model, max_bytes, f"{content_length} bytes")
    message = await receive()
    body = message.get("body", b"")
    if message["type"] == "http.request" and not message.get("more_body"):
        # A small body arrives in one message and is returned without a copy.
        if len(body) > max_bytes:
            raise _too_large(model, max_bytes, f"more than {max_bytes} bytes")
        return body
    chunks = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            raise InternalServerException("client disconnected prematurely")
        size += len(body)
        if size > max_bytes:
            raise _too_large(model, max_bytes, f"more than {max_bytes} bytes")
        chunks.append(body)
        if not message.get("more_body"):
            return b"".join(chunks)
        message = await receive()
        body = message.get("body", b"")


def decode_json_rows(body: bytes, model: str) -> list[Any]:
    """Return the rows of a ``{"rows": [...]}`` body.

    Raises:
        RequestError: The body is empty or malformed (HTTP 400).
    """
    if not body.strip():
        raise RequestError(
            f'empty request body for model {model!r}; send {{"rows": [{{...}}]}}',
            model=model,
            malformed=True,
        )
    try:
        return _decoder.decode(body).rows
    except msgspec.DecodeError as exc:
        rows = decode_with_python(body, str(exc))
        if rows is not None:
            return rows
        raise RequestError(
            f"malformed request body for model {model!r}: {exc}; send "
            '{"rows": [{...}, ...]}',
            model=model,
            malformed=True,
        ) from None


def decode_with_python(body: bytes, error: str) -> list[Any] | None:
    """Return the rows of a body that msgspec rejects but the checks can locate.

    Such a body uses the NaN or Infinity literal, or a number beyond the
    float64 range such as ``1e999``, which msgspec reports as out of range
    in `error`. Python's json module reads the literals as floats and an
    overflowing number as an `OverflowedNumber`, an infinity. The predict
    route's input checks then treat NaN as missing and reject the others
    naming their row and column. The ingest treats them as in files: NaN is
    missing and an infinity is quarantined. Returns None when the body is not
    valid even so.
    """
    if b"NaN" not in body and b"Infinity" not in body and "out of range" not in error:
        return None
    try:
        table = json.loads(body, parse_float=_parse_float, parse_int=_parse_int)
    except ValueError:
        return None
    rows = table.get("rows") if isinstance(table, dict) else None
    return rows if isinstance(rows, list) else None


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"(\s*:)?')
"""A JSON string, and the colon after it when it is an object key."""


def decode_repeated_keys(body: bytes, rows: list[Any]) -> list[Any]:
    """Return `rows` with each object that repeats a key as sent in `body`.

    A JSON decoder keeps the last value of a repeated key, so `body` is
    parsed again, with `keep_repeats` keeping the pairs of such an object,
    only when it has more object keys than `rows` (and the ``rows`` key).
    The count takes one regular expression over the body, which consumes
    every string from its opening quote, so a quote within a string never
    starts one. A body with other top-level fields is parsed again too.
    A row with such an object is marked for `encode_as_sent` by
    `mark_repeats`. For 1,000 rows of 6 keys the check took about 1.8 ms,
    msgspec's decode 0.3 ms and the buffer's encoding of the rows 2.7 ms,
    best of 30 runs on the shared 2-core machine.
    """
    strings = _STRING.findall(body)
    if len(strings) - strings.count(b"") == count_keys(rows) + 1:
        return rows
    try:
        table = json.loads(
            body,
            object_pairs_hook=keep_repeats,
            parse_float=_parse_float,
            parse_int=_parse_int,
        )
    except ValueError:
        return rows
    found = table.get("rows") if isinstance(table, dict) else None
    return [mark_repeats(row) for row in found] if isinstance(found, list) else rows


def _parse_float(text: str) -> float:
    number = float(text)
    return OverflowedNumber(text) if math.isinf(number) else number


def _parse_int(text: str) -> int | float:
    # int() rejects more than 4300 digits (sys.get_int_max_str_digits), and
    # a float64 integer has at most 309 digits, so a longer one overflows.
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        return OverflowedNumber(text)
    return int(text)


def decode_arrow(body: bytes, model: str) -> pa.Table:
    """Return the table of an Arrow IPC stream body.

    Raises:
        RequestError: The body is empty or not an Arrow IPC stream (HTTP 400).
    """
    if not body:
        raise RequestError(
            f"empty request body for model {model!r}; send an Arrow IPC stream "
            "with one column per input",
            model=model,
            malformed=True,
        )
    try:
        return pa.ipc.open_stream(body).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise RequestError(
            f"malformed Arrow IPC stream for model {model!r}: {_not_stream(body, exc)}",
            model=model,
            malformed=True,
        ) from None


def _not_stream(body: bytes, exc: Exception) -> str:
    """Return what a body that pyarrow cannot read as a stream is, and the fix."""
    send = f"send the bytes of pyarrow.ipc.new_stream with Content-Type {ARROW_STREAM}"
    if body.startswith(_ARROW_FILE_MAGIC):
        return (
            "the body is an Arrow IPC file (it starts with ARROW1), not a "
            f"stream; {send}, or convert the file with pyarrow.ipc.open_file"
        )
    if body.lstrip()[:1] in (b"{", b"["):
        return (
            f"the body looks like JSON; send JSON with Content-Type {JSON}, or {send}"
        )
    return f"{exc}; {send}"


def check_table_columns(table: pa.Table, model: str) -> None:
    """Reject an Arrow request with a repeated column name or a float16 column.

    A repeated name leaves no single column to read, and DuckDB, which joins
    feature views and computes derived features, cannot read float16.

    Raises:
        RequestError: Such a column is found; the error names it (HTTP 422).
    """
    names = table.column_names
    repeated = _repeated_name(names)
    if repeated is not None:
        raise RequestError(
            f"column {repeated!r} appears {names.count(repeated)} times in the "
            f"Arrow stream sent to model {model!r}; send each column once",
            model=model,
            column=repeated,
        )
    for name, kind in zip(names, table.schema.types):
        if pa.types.is_float16(kind):
            raise RequestError(
                f"column {name!r} of the Arrow stream sent to model {model!r} is "
                f"float16 (halffloat), which is not accepted; {_ACCEPTED_TYPES}",
                model=model,
                column=name,
            )


def _repeated_name(names: list[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def encode_arrow(table: pa.Table, warnings: list[str] | None = None) -> bytes:
    """Return `table` as the bytes of an Arrow IPC stream.

    `warnings`, when given, go into the schema metadata under ``warnings``
    as a JSON list of strings.
    """
    if warnings:
        table = table.replace_schema_metadata(
            {WARNINGS_METADATA_KEY: json.dumps(warnings)}
        )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def check_rows(rows: int, max_rows: int, model: str) -> None:
    """Raise `LimitError` when a request has more than `max_rows` rows."""
    if rows > max_rows:
        raise LimitError(
            f"request has {rows} rows, above the limit of {max_rows} "
            "([server] max_rows); split it into smaller requests",
            model=model,
            limit=max_rows,
        )


def _too_large(model: str, max_bytes: int, size: str) -> LimitError:
    return LimitError(
        f"request body of {size} is above the limit of {max_bytes} bytes "
        "([server] max_body_bytes); split it into smaller requests",
        model=model,
        limit=max_bytes,
    )
