"""Request values shown in messages: cut after a fixed number of characters."""

from __future__ import annotations

import pytest

from appliance.errors import SHOWN_CHARACTERS, cut, shown
from appliance.times import parse_time


def test_short_value_shown_whole() -> None:
    assert shown("a" * SHOWN_CHARACTERS) == repr("a" * SHOWN_CHARACTERS)
    assert shown(1.5) == "1.5"
    assert shown(None) == "None"


def test_long_text_cut_with_length() -> None:
    text = "b" * (SHOWN_CHARACTERS + 1)

    assert shown(text) == "'" + "b" * SHOWN_CHARACTERS + (
        f"... ({SHOWN_CHARACTERS + 1} characters)"
    )
    assert shown("x" * 200_000).endswith("... (200000 characters)")
    assert len(shown("x" * 200_000)) < 2 * SHOWN_CHARACTERS


def test_long_list_cut_by_repr() -> None:
    value = ["c" * 300]

    assert shown(value) == repr(value)[:SHOWN_CHARACTERS] + "... (304 characters)"


def test_cut_keeps_short_text() -> None:
    assert cut("abc") == "abc"
    assert cut("abcdef", 3) == "abc... (6 characters)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-05T08:32", "2026-12-05T08:32:00+00:00"),
        ("2026-12-05", "2026-12-05T00:00:00+00:00"),
        ("2026-12-05T08:32:00+02:00", "2026-12-05T08:32:00+02:00"),
        ("2026-12-05T08:32:00Z", "2026-12-05T08:32:00+00:00"),
    ],
)
def test_parse_time_reads_iso(text: str, expected: str) -> None:
    assert parse_time(text).isoformat() == expected


def test_parse_time_rejects_with_example() -> None:
    with pytest.raises(ValueError, match=r"invalid time 'noon'; use ISO 8601 such"):
        parse_time("noon")
