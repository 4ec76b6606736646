"""Text with a NUL byte in request columns and entity keys is rejected."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from appliance.errors import RequestError
from appliance.serving._inputs import rows_to_columns, table_to_columns
from appliance.serving._text_checks import check_table_texts, check_texts

REQUEST = [
    {"name": "n", "type": "number"},
    {"name": "s", "type": "string"},
    {"name": "q", "type": "sql"},
]
CLEAN = {"n": 1, "s": "a", "q": "b"}


@pytest.mark.parametrize("column", ["s", "q"])
def test_rows_nul_text_rejected(column: str) -> None:
    rows = [CLEAN, {**CLEAN, column: "ab\0"}]

    with pytest.raises(RequestError) as raised:
        rows_to_columns("m", REQUEST, rows)

    assert raised.value.detail == {"model": "m", "row": 1, "column": column}
    assert str(raised.value) == (
        f"row 1, column '{column}' of model 'm' is the text 'ab\\0', which "
        "contains a NUL byte (0x00) at character 3; remove NUL bytes from the text"
    )


@pytest.mark.parametrize("column", ["s", "q"])
def test_table_nul_text_rejected(column: str) -> None:
    table = pa.Table.from_pylist([CLEAN, {**CLEAN, column: None}, CLEAN])
    values = table.column(column).to_pylist()
    values[2] = "\0x"
    table = table.set_column(table.column_names.index(column), column, [values])

    with pytest.raises(RequestError) as raised:
        table_to_columns("m", REQUEST, table)

    assert raised.value.detail == {"model": "m", "row": 2, "column": column}
    assert "is the text '\\0x', which contains a NUL byte" in str(raised.value)
    assert "at character 1;" in str(raised.value)


def test_rows_text_without_nul_kept() -> None:
    rows = [CLEAN, {"n": None, "s": None, "q": None}, {**CLEAN, "s": "\\0"}]

    columns, _ = rows_to_columns("m", REQUEST, rows)

    assert list(columns["s"]) == ["a", "", "\\0"]
    assert columns["q"] == ["b", None, "b"]


def test_check_texts_entity_keys() -> None:
    rows: list[Any] = ["not an object", {"origin": 1}, {"origin": "EWR", "k": "J\0"}]

    check_texts("m", rows[:2], ["origin", "k"])
    with pytest.raises(RequestError) as raised:
        check_texts("m", rows, ["origin", "k"])

    assert raised.value.detail == {"model": "m", "row": 2, "column": "k"}


def test_check_table_texts_skips_others() -> None:
    table = pa.table({"origin": [1, 2], "tail": ["N1", None], "k": ["a", "b\0"]})

    check_table_texts("m", table, ["origin", "tail", "absent"])
    with pytest.raises(RequestError) as raised:
        check_table_texts("m", table, ["origin", "k"])

    assert raised.value.detail == {"model": "m", "row": 1, "column": "k"}
