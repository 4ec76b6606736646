"""JSON numbers beyond the float64 range, such as ``1e999``, kept as written.

The request decoders read such a number as an `OverflowedNumber`: an
infinity that carries its text. The predict route's input checks show that
text in their errors. The ingest buffer writes it back with `dumps_as_sent`,
so the quarantine shows ``1e999`` as the client wrote it, as it does for a
file. The prediction log stores it as a string through `overflowed_text`.
"""

from __future__ import annotations

import json
from typing import Any, Self

_SHOWN_DIGITS = 20


class OverflowedNumber(float):
    """A JSON number beyond the float64 range, such as ``1e999``.

    Its value is infinity with the number's sign, and its repr is the number as
    sent, so the input checks reject it naming the value the client wrote.
    """

    __slots__ = ("text",)

    text: str

    def __new__(cls, text: str) -> Self:
        """Return the infinity of the sign of `text`, keeping `text` for errors."""
        number = super().__new__(cls, "-inf" if text.startswith("-") else "inf")
        number.text = text
        return number

    def __repr__(self) -> str:
        if len(self.text) <= _SHOWN_DIGITS + 4:
            return self.text
        return f"{self.text[:_SHOWN_DIGITS]}... ({len(self.text)} characters)"


def dumps_as_sent(value: Any) -> str:
    """Encode `value` as compact JSON, each `OverflowedNumber` as its text.

    `json.dumps` writes an `OverflowedNumber` as ``Infinity``. Only a result
    with that word in it is encoded again value by value, so a value without
    such a number costs one `json.dumps` call. Values that JSON cannot
    encode are written as their `str`.
    """
    text = json.dumps(value, separators=(",", ":"), default=str)
    if "Infinity" not in text:
        return text
    return _encode(value)


def _encode(value: Any) -> str:
    if type(value) is OverflowedNumber:
        return value.text
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    return json.dumps(value, separators=(",", ":"), default=str)


def overflowed_text(value: Any) -> str:
    """Return the text of an `OverflowedNumber`, as a msgspec ``enc_hook``.

    JSON has no number beyond the float64 range that decoders read back, so
    the prediction log stores it as a string of the text the client sent.

    Raises:
        TypeError: `value` is of any other type that msgspec cannot encode.
    """
    if type(value) is OverflowedNumber:
        return value.text
    raise TypeError(f"cannot encode objects of type {type(value).__name__}")
