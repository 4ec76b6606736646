"""Type inference of several text columns at once, on real DuckDB tables."""

from __future__ import annotations

import duckdb
import pytest

from appliance.storage._types import _VALUE, _tests, infer_types


@pytest.fixture
def db() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    yield connection
    connection.close()


def _table(db: duckdb.DuckDBPyConnection, columns: dict[str, list[str | None]]) -> str:
    """Create table ``texts`` of VARCHAR `columns`, one list of values each."""
    if not any(columns.values()):
        empty = ", ".join(f"NULL::VARCHAR AS {name}" for name in columns)
        db.execute(f"CREATE TABLE texts AS SELECT {empty} LIMIT 0")
        return "texts"
    selects = ", ".join(f"CAST(unnest(?) AS VARCHAR) AS {name}" for name in columns)
    db.execute(f"CREATE TABLE texts AS SELECT {selects}", list(columns.values()))
    return "texts"


def test_columns_keep_own_types(db: duckdb.DuckDBPyConnection) -> None:
    table = _table(
        db,
        {
            "whole": ["1", "2", None, "30"],
            "fraction": ["1.5", "2", "-0.25", None],
            "comma": ["1,5", "2,25", "3", "4"],
            "day": ["2024-01-01", "2024-02-29", None, "2024-12-31"],
            "zoned": ["2024-01-01 10:00:00Z"] * 4,
            "word": ["a", "1", "b", "c"],
            "missing": [None] * 4,
        },
    )
    names = ["whole", "fraction", "comma", "day", "zoned", "word", "missing"]
    found = infer_types(db, table, names, dataset="texts")
    types = {name: column.type for name, column in found.types.items()}
    assert types["whole"] == "BIGINT"
    assert types["fraction"] == "DOUBLE"
    assert types["comma"] == "DOUBLE"
    assert found.types["comma"].decimal_comma
    assert types["day"] == "DATE"
    assert types["zoned"] == "TIMESTAMPTZ"
    assert types["word"] == "VARCHAR"
    assert types["missing"] == "VARCHAR"
    assert found.empty == {"missing"}


def test_value_after_sample_decides(db: duckdb.DuckDBPyConnection) -> None:
    # The first 2,048 rows fit BIGINT in both columns; a later value makes
    # one of them text, which only the scan over every row finds.
    numbers = [str(i) for i in range(5000)]
    table = _table(db, {"late_text": [*numbers, "x"], "numbers": [*numbers, "7"]})
    found = infer_types(db, table, ["late_text", "numbers"], dataset="texts")
    assert found.types["late_text"].type == "VARCHAR"
    assert found.types["numbers"].type == "BIGINT"


def test_empty_table_gives_text(db: duckdb.DuckDBPyConnection) -> None:
    table = _table(db, {"a": [], "b": []})
    found = infer_types(db, table, ["a", "b"], dataset="texts")
    assert found.types["a"].type == "VARCHAR"
    assert found.types["b"].type == "VARCHAR"
    assert found.empty == {"a", "b"}


def test_repeated_values_keep_types(db: duckdb.DuckDBPyConnection) -> None:
    # The sample tests each distinct value of a column once.
    table = _table(
        db,
        {
            "whole": ["7"] * 10 + [None] * 10,
            "day": ["2024-01-01"] * 19 + ["2024-02-30"],
            "word": ["1"] * 19 + ["x"],
            "missing": [None] * 20,
        },
    )
    names = ["whole", "day", "word", "missing"]
    found = infer_types(db, table, names, dataset="texts")
    assert found.types["whole"].type == "BIGINT"
    assert found.types["day"].type == "VARCHAR"
    assert found.invalid_dates == {"day"}
    assert found.types["word"].type == "VARCHAR"
    assert found.empty == {"missing"}


@pytest.mark.parametrize("date_formats", [(), ("%d/%m/%Y", "%m/%d/%Y")])
def test_sample_tests_ignore_repeats(date_formats: tuple[str, ...]) -> None:
    # The sample drops repeated values, which only these aggregates ignore.
    for name, test in _tests(_VALUE, date_formats).items():
        repeat_safe = test.startswith(("bool_and(", "bool_or(")) or (
            test == f'count("{_VALUE}") > 0'
        )
        assert repeat_safe, f"test {name!r} counts repeated values: {test}"
