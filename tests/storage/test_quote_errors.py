"""CSV quotes left open or followed by text: reasons, lines and counts.

A quote that no later quote closes makes the rest of the file one field, and
one left open can run on to the next quote in the file. Each line of such a
record is quarantined on its own, so the counts add up to the file's data
lines.
"""

from __future__ import annotations

import gzip
import json
import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from support import WriteFile

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.errors import IngestError
from appliance.storage import Catalog, ingest, scan_sql

_OPEN_REASON = (
    "unterminated quote: the quoted field that starts at line {quote} runs to "
    "the end of the file, so none of the {count} non-blank lines from line "
    "{first} to {last} could be read as a row; close the quote, or write it "
    'twice ("") if it is part of the value'
)
_PART_REASON = (
    "unterminated quote: the line is part of the quoted field that starts at "
    "line {quote} and runs to the end of the file; close that quote"
)
_STRAY_REASON = (
    "stray quote: the quoted field has text after its closing quote; write a "
    'quote inside a quoted value twice (""), or remove the quotes around the field'
)


def quarantine_of(catalog: Catalog) -> list[tuple]:
    return catalog.db.execute(
        "SELECT line, column_name, value, reason FROM quarantine "
        "ORDER BY line, column_name"
    ).fetchall()


def test_open_quote_each_line_quarantined(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("uq2.csv", 'id,note\n1,"ok\n2,fine\n3,good\n')

    result = ingest(catalog, "uq2", [path])

    first = _OPEN_REASON.format(quote=2, count=3, first=2, last=4)
    part = _PART_REASON.format(quote=2)
    assert result.accepted == 0
    assert result.quarantined == 3
    assert quarantine_of(catalog) == [
        (2, "note", '1,"ok', first),
        (3, None, "2,fine", part),
        (4, None, "3,good", part),
    ]


def test_open_quote_on_last_line(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("eof.csv", 'a,b\n1,x\n2,"open')

    result = ingest(catalog, "eof", [path])

    assert result.accepted == 1
    assert result.quarantined == 1
    assert quarantine_of(catalog) == [
        (
            3,
            "b",
            '2,"open',
            "unterminated quote: the quoted field that starts at line 3 runs to "
            'the end of the file; close the quote, or write it twice ("") if it '
            "is part of the value",
        )
    ]


def test_stray_quote_own_reason(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("mid.csv", 'id,note,x\n1,a,3\n2,"x"y,3\n3,b,4\n')

    result = ingest(catalog, "mid", [path])

    assert result.accepted == 2
    assert result.quarantined == 1
    assert quarantine_of(catalog) == [(3, "note", '2,"x"y,3', _STRAY_REASON)]
    assert catalog.db.execute(scan_sql(result.version)).fetchall() == [
        (1, "a", 3),
        (3, "b", 4),
    ]


def test_quote_closed_later_each_line(catalog: Catalog, write_file: WriteFile) -> None:
    rows = [f"{n},n{n},{n % 97}" for n in range(1, 2_001)]
    rows[764] = '765,"broken,765'
    rows[999] = '1000,"a, b",30'
    path = write_file("late.csv", "id,note,value\n" + "\n".join(rows) + "\n")

    result = ingest(catalog, "late", [path])

    entries = quarantine_of(catalog)
    assert result.accepted == 1_764
    assert result.quarantined == 236
    assert entries[0] == (
        766,
        "note",
        '765,"broken,765',
        "stray quote: the record from line 766 to 1001 has a quoted field with "
        "text after its closing quote, so none of its 236 non-blank lines could "
        "be read as a row; look for a quote that is not closed, and write a quote "
        'inside a quoted value twice ("")',
    )
    assert entries[-1] == (
        1001,
        None,
        '1000,"a, b",30',
        "stray quote: the line is part of the record from line 766 to 1001, "
        "which has a quoted field with text after its closing quote",
    )
    assert [line for line, *_ in entries] == list(range(766, 1002))


@pytest.mark.parametrize(
    ("content", "first", "accepted"),
    [
        ('a,b,c\n1,k,l\n2,"x\ny"z,3\n3,m,n\n', 3, 2),
        ('a,b,c\n1,k,l\n\n\n2,"x\ny"z,3\n3,m,n\n', 5, 2),
        ('a,b,c\n\n2,"x\ny"z,3\n3,m,n\n', 3, 1),
    ],
    ids=["plain", "blank-before", "first-record"],
)
def test_stray_quote_over_two_lines(
    catalog: Catalog, write_file: WriteFile, content: str, first: int, accepted: int
) -> None:
    path = write_file("two.csv", content)

    result = ingest(catalog, "two", [path])

    entries = quarantine_of(catalog)
    assert result.accepted == accepted
    assert result.quarantined == 2
    assert [(line, column, value) for line, column, value, _ in entries] == [
        (first, "b", '2,"x'),
        (first + 1, None, 'y"z,3'),
    ]


def test_open_quote_after_breaks_lines(catalog: Catalog, write_file: WriteFile) -> None:
    text = 'a,b\n1,x\n\n50,"two\nlines"\n2,"x"y\n3,ok\n4, "open\n\n5,z\n6,w\n'
    path = write_file("breaks.csv", text)
    contract = ContractConfig(columns={"a": ColumnRule(type="BIGINT", max=10)})

    result = ingest(
        catalog, "breaks", [path], settings=DatasetConfig("breaks", contract=contract)
    )

    part = _PART_REASON.format(quote=8)
    assert result.accepted == 2
    assert result.quarantined == 5
    assert quarantine_of(catalog) == [
        (4, "a", "50", 'value "50" is above the maximum 10'),
        (6, "b", '2,"x"y', _STRAY_REASON),
        (8, "b", '4, "open', _OPEN_REASON.format(quote=8, count=3, first=8, last=11)),
        (10, None, "5,z", part),
        (11, None, "6,w", part),
    ]


def test_open_quote_after_multiline_field(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("late.csv", 'a,b,c\n1,"x\ny",z\n2,"p\nq",w,"open\n3,k,l\n')

    result = ingest(catalog, "late", [path])

    assert result.accepted == 1
    assert result.quarantined == 3
    assert quarantine_of(catalog) == [
        # The quote opens a fourth field, past the header's columns.
        (4, None, '2,"p', _OPEN_REASON.format(quote=5, count=3, first=4, last=6)),
        (5, None, 'q",w,"open', _PART_REASON.format(quote=5)),
        (6, None, "3,k,l", _PART_REASON.format(quote=5)),
    ]


def test_open_quote_counts_large_file(
    catalog: Catalog, write_file: WriteFile, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [f"{n},n{n},{n % 97}" for n in range(1, 20_001)]
    rows[7764] = '7765,"broken,7765'
    path = write_file("big.csv", "id,note,value\n" + "\n".join(rows) + "\n")

    with caplog.at_level(logging.WARNING):
        result = ingest(catalog, "big", [path])

    entries = quarantine_of(catalog)
    assert result.accepted == 7764
    assert result.quarantined == 12_236
    assert entries[0] == (
        7766,
        "note",
        '7765,"broken,7765',
        _OPEN_REASON.format(quote=7766, count=12_236, first=7766, last=20_001),
    )
    assert [line for line, *_ in entries] == list(range(7766, 20_002))
    assert entries[-1][2] == "20000,n20000,18"
    assert "line numbers estimated" not in caplog.text


def test_open_quote_gzip_lines(catalog: Catalog, write_file: WriteFile) -> None:
    content = b'id,note\n1,"a\nb"\n\n2,"ok\n3,fine\n4,good\n'
    path = write_file("uq.csv.gz", gzip.compress(content))

    result = ingest(catalog, "uq", [path])

    part = _PART_REASON.format(quote=5)
    assert result.accepted == 1
    assert result.quarantined == 3
    assert quarantine_of(catalog) == [
        (5, "note", '2,"ok', _OPEN_REASON.format(quote=5, count=3, first=5, last=7)),
        (6, None, "3,fine", part),
        (7, None, "4,good", part),
    ]


def test_open_quote_rejected_when_strict(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("uq2.csv", 'id,note\n1,"ok\n2,fine\n3,good\n')

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "uq2", [path], strict=True)

    message = str(raised.value)
    assert "3 of 3 rows break the contract" in message
    assert (
        f"{path.resolve()}, line 2, column 'note': "
        + _OPEN_REASON.format(quote=2, count=3, first=2, last=4)
    ) in message
    assert f"{path.resolve()}, line 4: " + _PART_REASON.format(quote=2) in message
    assert catalog.db.execute("SELECT count(*) FROM quarantine").fetchall() == [(0,)]


def test_open_quote_replace_counts_lines(
    catalog: Catalog, write_file: WriteFile
) -> None:
    ingest(catalog, "uq2", [write_file("ok.csv", "id,note\n1,a\n")])
    path = write_file("uq2.csv", 'id,note\n1,"ok\n2,fine\n3,good\n')

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "uq2", [path])

    message = str(raised.value)
    assert f"{path} has no row to store: all 3 rows break the contract; " in message
    assert f"{path.resolve()}, line 4: " + _PART_REASON.format(quote=2) in message


def test_open_quote_second_file_lines(catalog: Catalog, write_file: WriteFile) -> None:
    first = write_file("a.csv", "id,note\n1,x\n2\n3,y\n")
    second = write_file("b.csv", 'id,note\n4,z\n5,"open\n6,w\n\n7,v\n')

    result = ingest(catalog, "two", [first, second])

    rows = catalog.db.execute(
        "SELECT source, line, column_name, value FROM quarantine ORDER BY source, line"
    ).fetchall()
    assert result.accepted == 3
    assert result.quarantined == 4
    assert rows == [
        (str(first.resolve()), 3, "note", "2"),
        (str(second.resolve()), 3, "note", '5,"open'),
        (str(second.resolve()), 4, None, "6,w"),
        (str(second.resolve()), 6, None, "7,v"),
    ]


def test_open_quote_counts_from_cli(
    tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("")
    path = tmp_path / "uq2.csv"
    path.write_text('id,note\n1,"ok\n2,fine\n3,good\n')

    ingested = cli(config, tmp_path / "home", "ingest", "uq2", str(path))
    listed = cli(config, tmp_path / "home", "datasets", "quarantine", "uq2", "--json")

    assert ingested.returncode == 0, ingested.stderr
    assert "rows=0 mode=replace accepted=0 quarantined=3 " in ingested.stdout
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(row["line"], row["reason"]) for row in rows] == [
        (2, _OPEN_REASON.format(quote=2, count=3, first=2, last=4)),
        (3, _PART_REASON.format(quote=2)),
        (4, _PART_REASON.format(quote=2)),
    ]
    assert [row["row"] for row in rows] == [
        {"csv_line": '1,"ok'},
        {"csv_line": "2,fine"},
        {"csv_line": "3,good"},
    ]


def test_unmatched_quote_error_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    # DuckDB 2.0.1 reads this file into rows that no scan of its lines
    # matches, so the ingest cannot count its rows by line.
    path = write_file("odd.csv", 'a,b,c\n1,ok,ok\n2,"x"y,"3\n4,a,b\n5,c,"d"\n')

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "odd", [path])

    assert str(raised.value) == (
        f"{path}, line 3: a quote is not closed, or has text after it, and the "
        "rows that the CSV reader made of the lines after it cannot be matched "
        "to those lines, so they cannot be counted; check the quotes from that "
        'line on, and write a quote inside a quoted value twice ("")'
    )
