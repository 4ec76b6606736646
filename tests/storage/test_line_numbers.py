"""Line numbers of quarantined rows and errors: the file's real lines, from 1."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.errors import IngestError
from appliance.storage import Catalog, ingest

WriteFile = Callable[[str, bytes | str], Path]

_BOM = b"\xef\xbb\xbf"


def quarantined_lines(
    catalog: Catalog, path: Path, columns: dict[str, ColumnRule]
) -> list[tuple[int, str | None, str]]:
    """Ingest `path` under a contract of `columns` and return its quarantine."""
    contract = ContractConfig(columns=columns)
    ingest(catalog, "lines", [path], settings=DatasetConfig("lines", contract=contract))
    return catalog.db.execute(
        "SELECT line, column_name, value FROM quarantine ORDER BY line, column_name"
    ).fetchall()


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b'{"a": 1}\n\n{"a": 50}\n{"a": 2}\n', 3),
        (b'{"a": 1}\n   \n\t\n{"a": 50}\n', 4),
        (b'{"a": 1}\r\n\r\n{"a": 50}\r\n', 3),
        (_BOM + b'{"a": 1}\n\n{"a": 50}\n', 3),
        (_BOM + b'\n{"a": 1}\n{"a": 50}\n', 3),
        (b'\n\n{"a": 1}\n{"a": 50}\n', 4),
        (b'{"a": 1}\n\n{"a": 50}', 3),
        (b'{"a": 1, "b": "x\\ny"}\n\n{"a": 50, "b": "z"}\n', 3),
        (b'{"a": 1}\n{"a": 50}\n\n\n', 2),
    ],
    ids=[
        "blank",
        "whitespace",
        "crlf",
        "bom",
        "bom-then-blank",
        "leading-blanks",
        "no-final-newline",
        "escaped-newline",
        "trailing-blanks",
    ],
)
def test_json_lines_quarantine_line(
    catalog: Catalog, write_file: WriteFile, content: bytes, line: int
) -> None:
    path = write_file("rows.jsonl", content)

    rows = quarantined_lines(catalog, path, {"a": ColumnRule(type="BIGINT", max=10)})

    assert rows == [(line, "a", "50")]


def test_json_lines_mixed_type_line(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("mixed.jsonl", '{"a": 1}\n\n{"a": 2}\n\n{"a": "x"}\n')

    rows = quarantined_lines(catalog, path, {"a": ColumnRule(type="BIGINT")})

    assert rows == [(5, "a", "x")]


def test_json_lines_repeated_key_line(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("repeat.jsonl", '{"a": 1}\n\n{"a": 2, "a": 3}\n')

    rows = quarantined_lines(catalog, path, {"a": ColumnRule(type="BIGINT")})

    assert [(line, column) for line, column, _ in rows] == [(3, "a")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"a": 1}\n\n{"a": 2, b: 3}\n', r"line 3: invalid JSON: .* at column 10;"),
        (b'\r\n{"a": 1}\r\n\r\n{"a": }\r\n', r"line 4: invalid JSON: .* at column 7;"),
        (_BOM + b'\n{"a": 1}\n{"a": 2,\n "b": 3}\n', r"line 3: invalid JSON: .* 9;"),
        (b'{"a": 1}\n\n[1, 2]\n', r"line 3: an array where a JSON object"),
        (b'{"a": 1}\n\n\n{"": 2}\n', r'line 4: the key "" is an empty column'),
    ],
    ids=["blank", "crlf", "bom-multiline", "array", "empty-key"],
)
def test_json_lines_error_line(
    catalog: Catalog, write_file: WriteFile, content: bytes, message: str
) -> None:
    path = write_file("bad.jsonl", content)

    with pytest.raises(IngestError, match=message) as raised:
        ingest(catalog, "bad", [path])

    assert str(raised.value).startswith(f"{path}, line ")


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b"a,b\n1,x\n\n50,y", 4),
        (b"a,b\r\n1,x\r\n\r\n50,y", 4),
        (_BOM + b"a,b\n\n1,x\n50,y\n", 4),
        (b'a,b\r\n1,"x\r\ny"\r\n\r\n50,y\r\n', 5),
        (b'a,b\n1,ab"c\n\n50,"x\ny"\n2,z\n', 4),
        (b"a,b\n1,x\n50,y\n\n\n", 3),
    ],
    ids=[
        "no-final-newline",
        "crlf-no-final-newline",
        "bom-blank",
        "crlf-quoted-break",
        "quote-inside-field",
        "trailing-blanks",
    ],
)
def test_csv_quarantine_line(
    catalog: Catalog, write_file: WriteFile, content: bytes, line: int
) -> None:
    path = write_file("rows.csv", content)

    rows = quarantined_lines(catalog, path, {"a": ColumnRule(type="BIGINT", max=10)})

    assert rows == [(line, "a", "50")]


def test_csv_text_read_line(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("text.csv", b'a,b\r\n1,"x\r\ny"\r\n\r\nz,y')

    rows = quarantined_lines(catalog, path, {"a": ColumnRule(type="BIGINT")})

    assert rows == [(5, "a", "z")]


def test_csv_open_quote_lines(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("open.csv", b'a,b\n1,x\n\n50,y\n2,"open\n3,z\n')

    rows = quarantined_lines(catalog, path, {"a": ColumnRule(type="BIGINT", max=10)})

    assert rows == [(4, "a", "50"), (5, "b", '2,"open\n3,z\n')]
