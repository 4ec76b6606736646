"""A value that turns a numeric column into text is named wherever it is.

The CSV sniffer takes a column for text when one value of its first rows is
not a number, and a JSON-lines column mixes numbers and strings from its
first line. Such a column gets the warning of a value further down, naming
the value with its file and line.
"""

from __future__ import annotations

import json

import pytest
from support import WriteFile

from appliance.storage import Catalog, ingest


def numbers_with(value: str, line: int, count: int = 999) -> str:
    """Return a CSV column ``x`` of `count` numbers with `value` at `line`."""
    values = [str(i) for i in range(count)]
    values.insert(line - 2, value)
    return "x\n" + "\n".join(values) + "\n"


@pytest.mark.parametrize("line", [2, 5, 5002])
def test_csv_word_named_at_any_line(
    catalog: Catalog, write_file: WriteFile, line: int
) -> None:
    path = write_file("x.csv", numbers_with("oops", line, count=5000))

    result = ingest(catalog, "numbers", [path])

    assert result.version.schema == {"x": "VARCHAR"}
    assert result.warnings == [
        f"column 'x' looks like BIGINT in the first rows of {path} but has "
        f"'oops' at line {line}, so the whole column is read as text; fix that "
        "value, or declare the column's type in [datasets.numbers.contract] to "
        "quarantine such rows instead"
    ]


def test_csv_missing_marker_names_null_values(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("x.csv", numbers_with("N/A", 5))

    result = ingest(catalog, "numbers", [path])

    (warning,) = result.warnings
    assert warning.startswith(
        f"column 'x' looks like BIGINT in the first rows of {path} but has "
        "'N/A' at line 5"
    )
    assert "add 'N/A' to [datasets.numbers] null_values" in warning


def test_csv_decimals_named_as_double(catalog: Catalog, write_file: WriteFile) -> None:
    text = "x\n1.5\noops\n" + "".join(f"{i}.25\n" for i in range(100))
    path = write_file("x.csv", text)

    result = ingest(catalog, "decimals", [path])

    (warning,) = result.warnings
    assert warning.startswith("column 'x' looks like DOUBLE in the first rows")
    assert "'oops' at line 3" in warning


def test_csv_mostly_text_not_warned(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("codes.csv", "code\nA1\n2\n3\nB4\n5\n")

    result = ingest(catalog, "codes", [path])

    assert result.version.schema == {"code": "VARCHAR"}
    assert result.warnings == []


def test_json_string_named_at_any_line(catalog: Catalog, write_file: WriteFile) -> None:
    lines = [json.dumps({"x": 1.5}) for _ in range(20)]
    lines.insert(1, json.dumps({"x": "str"}))
    path = write_file("x.jsonl", "\n".join(lines) + "\n")

    result = ingest(catalog, "mixed", [path])

    assert result.version.schema == {"x": "VARCHAR"}
    (warning,) = result.warnings
    assert warning.startswith(
        f"column 'x' looks like DOUBLE in the first rows of {path} but has "
        "'str' at line 2"
    )
    assert "null_values" not in warning
