"""Plain-text formatting of the daemon's values for narrow terminal cells."""

from __future__ import annotations

from datetime import datetime
from typing import Any

NONE = "—"
"""Shown for a value the daemon did not report."""


def number(value: Any, digits: int = 3) -> str:
    """Format a number with a fixed count of decimals, or `NONE`.

    >>> number(0.81234), number(None), number(12)
    ('0.812', '—', '12')
    """
    if value is None:
        return NONE
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def padded(value: float | None, width: int, digits: int) -> str:
    """Format a number right-aligned in `width` characters, so columns and
    lines keep their layout as the value grows.

    >>> padded(8.125, 6, 1), padded(None, 6, 1)
    ('   8.1', '     —')
    """
    text = NONE if value is None else f"{value:.{digits}f}"
    return text.rjust(width)


def percent(value: float | None) -> str:
    """Format a share as a percentage with one decimal.

    >>> percent(0.0123), percent(None)
    ('1.2%', '—')
    """
    return NONE if value is None else f"{value * 100:.1f}%"


def duration(seconds: float | None) -> str:
    """Format a duration with its two largest units.

    >>> duration(42.7), duration(3725), duration(90061)
    ('42s', '1h 2m', '1d 1h')
    """
    if seconds is None:
        return NONE
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def timestamp(value: str | None) -> str:
    """Format an ISO 8601 time from the daemon as ``YYYY-MM-DD HH:MM:SS``.

    >>> timestamp("2026-12-04T17:02:57.123456+00:00"), timestamp(None)
    ('2026-12-04 17:02:57', '—')
    """
    if not value:
        return NONE
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return parsed.strftime("%Y-%m-%d %H:%M:%S")


def short_time(value: str | None) -> str:
    """Format an ISO 8601 time as ``MM-DD HH:MM`` for narrow table columns.

    >>> short_time("2026-12-04T17:02:57+00:00")
    '12-04 17:02'
    """
    if not value:
        return NONE
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return parsed.strftime("%m-%d %H:%M")


def short_id(value: str | None, width: int = 8) -> str:
    """Return the first `width` characters of an id.

    >>> short_id("0123456789abcdef")
    '01234567'
    """
    return NONE if not value else str(value)[:width]


def metrics_line(metrics: dict[str, Any] | None, limit: int = 3) -> str:
    """Format the first `limit` scalar metrics as ``name=value`` pairs.

    >>> metrics_line({"accuracy": 0.9, "f1": 0.85, "confusion": [[1]]})
    'accuracy=0.900 f1=0.850'
    """
    if not metrics:
        return NONE
    scalars = [
        (name, value)
        for name, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    return " ".join(f"{name}={number(value)}" for name, value in scalars[:limit])


def flatten(record: dict[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dictionaries into ``a.b`` keys, for side-by-side tables.

    >>> flatten({"a": 1, "b": {"c": 2}})
    {'a': 1, 'b.c': 2}
    """
    flat: dict[str, Any] = {}
    for key, value in (record or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
