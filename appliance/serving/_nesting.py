"""JSON bodies nested too deeply for the decoders, rejected with HTTP 422.

msgspec and Python's json module both recurse once per nested array or object
and raise `RecursionError` near Python's recursion limit (1000 frames unless
changed), so a body of about 1000 ``[`` characters would end in a 500.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from appliance.errors import RequestError

# A JSON string with its escapes, so that brackets inside strings do not count.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_OPENERS = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSERS = np.frombuffer(b"]}", dtype=np.uint8)

FLAT_ROWS = 'rows of plain values: {"rows": [{"column": value, ...}, ...]}'
"""Body shape that the predict and rows routes expect, for their messages."""


def nesting_depth(body: bytes) -> int:
    """Return how many levels deep the arrays and objects of a JSON body nest."""
    codes = np.frombuffer(_STRING.sub(b"", body), dtype=np.uint8)
    steps = np.isin(codes, _OPENERS).astype(np.int64)
    steps -= np.isin(codes, _CLOSERS)
    return int(steps.cumsum().max(initial=0))


@contextmanager
def reject_deep_nesting(
    body: bytes, subject: str, expected: str, **detail: Any
) -> Iterator[None]:
    """Turn a `RecursionError` of decoding `body` into a `RequestError`.

    `subject` names the body in the message ("request body for model 'm'"),
    `expected` is the body shape to send instead, and `detail` locates the
    problem in the error response.

    Raises:
        RequestError: Decoding `body` raised `RecursionError` (HTTP 422).
    """
    try:
        yield
    except RecursionError:
        depth = nesting_depth(body)
        limit = sys.getrecursionlimit()
        raise RequestError(
            f"{subject} is JSON nested {depth} levels deep, too deep to decode "
            f"within Python's recursion limit of {limit} frames; send {expected}",
            depth=depth,
            **detail,
        ) from None
