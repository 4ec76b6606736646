"""Numeric request columns of JSON rows: accepted values and rejected ones."""

from __future__ import annotations

import math

import pytest

from appliance.errors import RequestError
from appliance.jsonnumbers import OverflowedNumber
from appliance.serving._inputs import rows_to_columns

REQUEST = [
    {"name": "i", "type": "integer"},
    {"name": "n", "type": "number"},
    {"name": "b", "type": "boolean"},
]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"i": 3, "n": 1, "b": True}, [3.0, 1.0, 1.0]),
        ({"i": 2.0, "n": -0.0, "b": 0}, [2.0, -0.0, 0.0]),
        ({"i": 2**70, "n": 1.5, "b": 1.0}, [2.0**70, 1.5, 1.0]),
        ({"i": None, "n": "NaN", "b": None}, [math.nan] * 3),
        ({"i": 1, "n": math.nan, "b": False}, [1.0, math.nan, 0.0]),
    ],
)
def test_json_numbers_accepted(row: dict, expected: list[float]) -> None:
    columns, _ = rows_to_columns("m", REQUEST, [row])

    got = [float(columns[spec["name"]][0]) for spec in REQUEST]
    assert got == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize(
    ("row", "column", "problem"),
    [
        ({"i": 1.5, "n": 1, "b": 1}, "i", "must be a whole number"),
        ({"i": True, "n": 1, "b": 1}, "i", "must be a number or null"),
        ({"i": 1, "n": math.inf, "b": 1}, "n", "must be finite"),
        ({"i": 1, "n": -math.inf, "b": 1}, "n", "must be finite"),
        ({"i": 1, "n": "x", "b": 1}, "n", "must be a number or null"),
        ({"i": 1, "n": 1, "b": 2}, "b", "must be true, false, 0 or 1"),
        ({"n": 1, "b": 1}, "i", "is missing column 'i'"),
    ],
)
def test_json_numbers_rejected(row: dict, column: str, problem: str) -> None:
    with pytest.raises(RequestError) as raised:
        rows_to_columns("m", REQUEST, [{"i": 0, "n": 0, "b": 0}, row])

    assert raised.value.detail["column"] == column
    assert raised.value.detail["row"] == 1
    assert problem in str(raised.value)


@pytest.mark.parametrize("column", ["i", "n", "b"])
def test_json_integer_beyond_float64_rejected(column: str) -> None:
    row = {"i": 0, "n": 0, "b": 0, column: -(10**400)}

    with pytest.raises(RequestError) as raised:
        rows_to_columns("m", REQUEST, [{"i": 0, "n": 0, "b": 0}, row])

    assert raised.value.detail["column"] == column
    assert raised.value.detail["row"] == 1
    assert "is -1000000000000000000... (402 characters), beyond the float64" in str(
        raised.value
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (OverflowedNumber("1e999"), "is 1e999, beyond the float64 range"),
        (math.inf, "must be finite, got inf"),
        (-math.inf, "must be finite, got -inf"),
    ],
)
def test_sql_column_infinite_rejected(value: float, problem: str) -> None:
    # DuckDB would cast the text "inf" to the infinite timestamp.
    request = [{"name": "t", "type": "sql", "sql_type": "TIMESTAMP"}]
    rows = [{"t": "2024-03-01 10:00:00"}, {"t": value}]

    with pytest.raises(RequestError) as raised:
        rows_to_columns("m", request, rows)

    assert raised.value.detail["column"] == "t"
    assert raised.value.detail["row"] == 1
    assert str(raised.value).startswith(f"row 1, column 't' of model 'm' {problem}")
