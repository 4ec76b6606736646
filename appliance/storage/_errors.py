"""Short texts of DuckDB errors, for messages that name a file and what to do.

A DuckDB reader error carries the whole record that failed (which can be
megabytes long), the SQL statement with a caret under it, suggested
options and a list of every reader setting. `short_error` keeps the error
type and its cause.
"""

from __future__ import annotations

import duckdb

_MAX_PART = 200
"""Characters kept of each part of the message."""
_SKIPPED = ("Original Line:", "LINE ")
_ENDS = ("Possible Solution", "Possible fixes", "* ", "file = ")


def short_error(exc: duckdb.Error) -> str:
    """Return the first line of a DuckDB error and, for a CSV error, its cause.

    >>> short_error(duckdb.InvalidInputException(
    ...     "Invalid Input Error: CSV Error on Line: 1\\nOriginal Line: 1,xxxx\\n"
    ...     "Maximum line size of 2000000 bytes exceeded.\\nPossible Solution: ..."))
    'Invalid Input Error: CSV Error on Line: 1: Maximum line size of 2000000 bytes exceeded'
    """
    lines = str(exc).splitlines()
    head = lines[0].strip() if lines else ""
    if not head:
        return type(exc).__name__
    cause = ""
    for line in lines[1:]:
        text = line.strip()
        if text.startswith(_ENDS):
            break
        if text.startswith(_SKIPPED) or set(text) == {"^"}:
            continue
        # The failed record may span lines, so the cause is the last line
        # before the suggestions, not the first after the record.
        if text:
            cause = text
    parts = [_clip(head)] + ([_clip(cause)] if cause else [])
    return ": ".join(part.rstrip(".") for part in parts)


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_PART else text[: _MAX_PART - 3] + "..."
