"""CSV line breaks: a carriage return alone fails naming file, line and the fix."""

from __future__ import annotations

import re

import pytest
from support import WriteFile

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.errors import IngestError
from appliance.storage import Catalog, ingest, scan_sql

_ROWS = b"".join(b"%d,x\n" % i for i in range(5000))
"""Rows past the CSV sniffer's sample, so that only the full read meets what
follows them."""

_BARE_CASES = [
    ("mac.csv", b"a,b\r1,2\r3,4\r", 1),
    ("mac_no_end.csv", b"a,b\r1,x\r50,y", 1),
    ("mixed_start.csv", b"a,b\n1,2\r3,4\n5,6\n", 2),
    ("mixed_crlf.csv", b"a,b\r\n1,2\r\n3,4\r5,6\r\n", 3),
    ("late.csv", b"a,b\n" + _ROWS + b"7,y\r8,z\n9,w\n", 5002),
    ("late_in_field.csv", b"a,b\n" + _ROWS + b"7\r,y\n9,w\n", 5002),
    ("late_at_end.csv", b"a,b\n" + _ROWS + b"7,y\r", 5002),
    ("quoted_then_bare.csv", b'a,b\n1,"x\ry"\n2,z\r3,w\n', 3),
]
"""File name, content, and the line (counted by line feeds) named in the error."""


@pytest.mark.parametrize(
    ("name", "content", "line"),
    _BARE_CASES,
    ids=[name for name, _, _ in _BARE_CASES],
)
def test_bare_carriage_return_named(
    catalog: Catalog, write_file: WriteFile, name: str, content: bytes, line: int
) -> None:
    path = write_file(name, content)

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "breaks", [path])

    message = str(raised.value)
    assert message.startswith(
        f"{path}, line {line}: a line ends with a carriage return (\\r) alone"
    )
    assert f"perl -pe 's/\\r\\n?/\\n/g' < {name} > converted.csv" in message
    assert catalog.db.execute("SELECT count(*) FROM dataset_versions").fetchall() == [
        (0,)
    ]


def test_bare_carriage_return_latin1_named(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("mac_latin1.csv", "a,b\r1,caf\xe9\r".encode("latin-1"))
    settings = DatasetConfig("latin", encoding="latin-1")

    with pytest.raises(IngestError, match=r"mac_latin1.csv, line 1: a line ends"):
        ingest(catalog, "latin", [path], settings=settings)


def test_quoted_carriage_return_loads(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("quoted.csv", b'a,b\n1,"x\ry"\n3,z\n')

    result = ingest(catalog, "quoted", [path])

    rows = catalog.db.execute(scan_sql(result.version) + " ORDER BY a").fetchall()
    assert rows == [(1, "x\ry"), (3, "z")]


def test_converted_file_lines_correct(catalog: Catalog, write_file: WriteFile) -> None:
    original = b"a,b\r1,x\r\r50,y\r2,z\r"
    # The conversion that the error message suggests, done in Python.
    converted = write_file("converted.csv", re.sub(rb"\r\n?", b"\n", original))
    contract = ContractConfig(columns={"a": ColumnRule(type="BIGINT", max=10)})
    settings = DatasetConfig("converted", contract=contract)

    result = ingest(catalog, "converted", [converted], settings=settings)

    assert result.accepted == 2
    assert result.quarantined == 1
    quarantine = catalog.db.execute(
        "SELECT line, column_name, value FROM quarantine"
    ).fetchall()
    assert quarantine == [(4, "a", "50")]
