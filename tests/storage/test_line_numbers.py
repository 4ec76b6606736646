"""Line numbers of quarantined rows and errors: the file's real lines, from 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import WriteFile

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.errors import IngestError
from appliance.storage import Catalog, ingest

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


_BREAK_CASES = [
    ("blank.jsonl", b'{"a": 1}\n\n{"a": 50}\n{"a": 2}\n', 3),
    ("whitespace.jsonl", b'{"a": 1}\n   \n\t\n{"a": 50}\n', 4),
    ("crlf.jsonl", b'{"a": 1}\r\n\r\n{"a": 50}\r\n', 3),
    ("bom.jsonl", _BOM + b'{"a": 1}\n\n{"a": 50}\n', 3),
    ("bom_line.jsonl", _BOM + b'\n{"a": 1}\n{"a": 50}\n', 3),
    ("leading.jsonl", b'\n\n{"a": 1}\n{"a": 50}\n', 4),
    ("no_end.jsonl", b'{"a": 1}\n\n{"a": 50}', 3),
    ("escaped.jsonl", b'{"a": 1, "b": "x\\ny"}\n\n{"a": 50, "b": "z"}\n', 3),
    ("trailing.jsonl", b'{"a": 1}\n{"a": 50}\n\n\n', 2),
    ("no_end.csv", b"a,b\n1,x\n\n50,y", 4),
    ("crlf_no_end.csv", b"a,b\r\n1,x\r\n\r\n50,y", 4),
    ("bom_blank.csv", _BOM + b"a,b\n\n1,x\n50,y\n", 4),
    ("crlf_quoted.csv", b'a,b\r\n1,"x\r\ny"\r\n\r\n50,y\r\n', 5),
    ("inner_quote.csv", b'a,b\n1,ab"c\n\n50,"x\ny"\n2,z\n', 4),
    ("spaced_quote.csv", b'a,b\n1, "x\ny"\n\n50,z\n', 5),
    ("trailing.csv", b"a,b\n1,x\n50,y\n\n\n", 3),
]
"""File name, content, and the line of its row with the value 50."""


@pytest.mark.parametrize(
    ("name", "content", "line"),
    _BREAK_CASES,
    ids=[name for name, _, _ in _BREAK_CASES],
)
def test_quarantine_line_after_breaks(
    catalog: Catalog, write_file: WriteFile, name: str, content: bytes, line: int
) -> None:
    path = write_file(name, content)

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
    ("content", "lines"),
    [
        (b'{"a": 1}\n\n{"a": 2, b: 3}\n', [3]),
        (b'\r\n{"a": 1}\r\n\r\n{"a": }\r\n', [4]),
        (_BOM + b'\n{"a": 1}\n{"a": 2,\n "b": 3}\n', [3, 4]),
        (b'{"a": 1}\n\n[1, 2]\n', [3]),
    ],
    ids=["blank", "crlf", "bom-multiline", "array"],
)
def test_json_lines_malformed_line(
    catalog: Catalog, write_file: WriteFile, content: bytes, lines: list[int]
) -> None:
    path = write_file("bad.jsonl", content)

    rows = quarantined_lines(catalog, path, {"a": ColumnRule(type="BIGINT")})

    assert [line for line, _, _ in rows] == lines


def test_json_lines_empty_key_line(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("bad.jsonl", b'{"a": 1}\n\n\n{"": 2}\n')

    with pytest.raises(IngestError, match=r'line 4: the key "" is an empty column'):
        ingest(catalog, "bad", [path])


def test_csv_text_read_line(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("text.csv", b'a,b\r\n1,"x\r\ny"\r\n\r\nz,y')

    rows = quarantined_lines(catalog, path, {"a": ColumnRule(type="BIGINT")})

    assert rows == [(5, "a", "z")]


def test_csv_open_quote_lines(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("open.csv", b'a,b\n1,x\n\n50,y\n2,"open\n3,z\n')

    rows = quarantined_lines(catalog, path, {"a": ColumnRule(type="BIGINT", max=10)})

    assert rows == [(4, "a", "50"), (5, "b", '2,"open'), (6, None, "3,z")]
