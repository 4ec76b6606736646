"""Times given by a user: the ISO 8601 parser of the CLI and the HTTP API."""

from __future__ import annotations

from datetime import datetime, timezone

from appliance.errors import shown

TIME_EXAMPLES = "2026-01-31, 2026-01-31T08:00 or 2026-01-31T08:00:00+01:00"
"""Times that `parse_time` reads, for help texts and error messages."""


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 date or time. A time without an offset is taken as UTC.

    Raises:
        ValueError: `text` is not such a time. The message shows the text
            and examples of valid times.
    """
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"invalid time {shown(text)}; use ISO 8601 such as {TIME_EXAMPLES} "
            "(UTC unless an offset is given)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def days_text(days: float) -> str:
    """Return a number of days for a message: ``1 day``, ``0.5 days``, ``7 days``."""
    return f"{days:g} day" if days == 1 else f"{days:g} days"
