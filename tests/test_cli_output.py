"""Listing output: times read the same with and without a running daemon."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from appliance.cli._output import print_rows

STARTED = datetime(2026, 12, 4, 20, 36, 17, 996278, tzinfo=UTC)
ROWS = [{"started_at": STARTED, "outcome": "skipped", "score": 0.65432}]


def test_print_rows_json_iso_times(capsys: pytest.CaptureFixture[str]) -> None:
    print_rows(ROWS, True, ["started_at", "outcome"])

    row = json.loads(capsys.readouterr().out)
    assert row["started_at"] == "2026-12-04T20:36:17.996278+00:00"
    assert row["outcome"] == "skipped"


def test_print_rows_table_iso_times(capsys: pytest.CaptureFixture[str]) -> None:
    print_rows(ROWS, False, ["started_at", "outcome", "score"])

    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == [
        "2026-12-04T20:36:17.996278+00:00",
        "skipped",
        "0.65432",
    ]


@pytest.mark.parametrize(
    ("value", "shown"), [(1234.5, "1234.5"), (98765.4321, "98765.4321"), (2.0, "2")]
)
def test_print_rows_floats_as_stored(
    capsys: pytest.CaptureFixture[str], value: float, shown: str
) -> None:
    print_rows([{"value": value}], False, ["value"])

    assert capsys.readouterr().out.splitlines()[1] == shown


def test_print_rows_escapes_line_breaks(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"id": 1, "note": "first\nsecond\tthird\r"}]

    print_rows(rows, False, ["id", "note"])
    table = capsys.readouterr().out.splitlines()
    print_rows(rows, True, ["id", "note"])
    listed = json.loads(capsys.readouterr().out)

    assert table[1] == "1   first\\nsecond\\tthird\\r"
    assert len(table) == 2
    assert listed["note"] == "first\nsecond\tthird\r"
