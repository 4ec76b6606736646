"""Malformed lines of JSON-lines files: quarantined by line, the rest ingested."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import WriteFile, load_config_text, run_appliance

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.crypto import column_cipher
from appliance.erasure._erase import _quarantine
from appliance.erasure._subject import Subject
from appliance.errors import IngestError
from appliance.storage import (
    Catalog,
    IngestResult,
    ingest,
    list_quarantine,
    list_versions,
    scan_sql,
)

GOOD = [json.dumps({"id": i, "city": f"c{i}"}) for i in range(1, 6)]
"""Five object lines."""
MIXED = "\n".join(
    [
        GOOD[0],
        '{"id": 10, "city" "x"}',
        "",
        GOOD[1],
        "[1, 2]",
        GOOD[2],
        "42",
        '"text"',
        "null",
        "  \t",
        GOOD[3],
        "{}",
        GOOD[4],
        '{"id": 11, "ci',
    ]
)
"""Five good lines, an empty object and one bad line of each kind, the last
cut short without a line break."""
MIXED_BAD = [
    (
        2,
        '{"id": 10, "city" "x"}',
        "invalid JSON: Expecting ':' delimiter at character 19",
    ),
    (5, "[1, 2]", "an array where a JSON object was expected"),
    (7, "42", "a single value where a JSON object was expected"),
    (8, '"text"', "a single value where a JSON object was expected"),
    (9, "null", "a single value where a JSON object was expected"),
    (
        14,
        '{"id": 11, "ci',
        "invalid JSON: Unterminated string starting at character 12",
    ),
]
"""Line, text and reason of each malformed line of `MIXED`."""


def rows_of(catalog: Catalog, result: IngestResult) -> list[tuple]:
    return catalog.db.execute(scan_sql(result.version) + " ORDER BY ALL").fetchall()


def quarantined(catalog: Catalog, dataset: str) -> list[tuple]:
    return [
        (q.line, q.column, q.value, q.reason, q.row)
        for q in list_quarantine(catalog, dataset)
    ]


def test_malformed_lines_quarantined(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("mixed.jsonl", MIXED)

    result = ingest(catalog, "mixed", [path])

    assert (result.accepted, result.quarantined) == (6, 6)
    assert result.warnings == []
    assert result.version.schema == {"id": "BIGINT", "city": "VARCHAR"}
    assert rows_of(catalog, result) == [
        (1, "c1"),
        (2, "c2"),
        (3, "c3"),
        (4, "c4"),
        (5, "c5"),
        (None, None),
    ]
    assert quarantined(catalog, "mixed") == [
        (line, None, text, reason, {"json_line": text})
        for line, text, reason in MIXED_BAD
    ]
    assert {q.source for q in list_quarantine(catalog, "mixed")} == {
        str(path.resolve())
    }


def test_malformed_lines_strict_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("mixed.jsonl", MIXED)

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "mixed", [path], strict=True)

    message = str(raised.value)
    assert message.startswith("strict ingest of 'mixed' rejected; 6 of 12 rows ")
    assert (
        f"; {path.resolve()}, line 2: invalid JSON: Expecting ':' delimiter at "
        "character 19;" in message
    )
    assert list_versions(catalog, "mixed") == []
    assert quarantined(catalog, "mixed") == []


def test_contract_lines_after_malformed(
    catalog: Catalog, write_file: WriteFile
) -> None:
    text = '{"a": 1}\n[3]\n\n{"a": 50}\n{"a": \n{"a": 2}\r\n{"a": "x"}\n{"a": 60}\n'
    path = write_file("late.jsonl", text)
    contract = ContractConfig(columns={"a": ColumnRule(type="BIGINT", max=10)})

    result = ingest(
        catalog, "late", [path], settings=DatasetConfig("late", contract=contract)
    )

    assert (result.accepted, result.quarantined) == (2, 5)
    assert rows_of(catalog, result) == [(1,), (2,)]
    assert [(line, column) for line, column, *_ in quarantined(catalog, "late")] == [
        (2, None),
        (4, "a"),
        (5, None),
        (7, "a"),
        (8, "a"),
    ]


def test_bom_crlf_malformed_lines(catalog: Catalog, write_file: WriteFile) -> None:
    content = b'\xef\xbb\xbf[0]\r\n{"a": 1}\r\n\r\n{"a": 2,\r\n "b": 3}\r\n{"a": 4}'
    path = write_file("crlf.jsonl", content)

    result = ingest(catalog, "crlf", [path])

    assert (result.accepted, result.quarantined) == (2, 3)
    assert rows_of(catalog, result) == [(1,), (4,)]
    assert [(line, value) for line, _, value, *_ in quarantined(catalog, "crlf")] == [
        (1, "[0]"),
        (4, '{"a": 2,'),
        (5, ' "b": 3}'),
    ]


def test_repeated_key_after_malformed_line(
    catalog: Catalog, write_file: WriteFile
) -> None:
    text = '{"a": 1}\nnot json\n{"a": 2, "a": 3}\n{"a": 4}\n'
    path = write_file("repeat.jsonl", text)

    result = ingest(catalog, "repeat", [path])

    assert (result.accepted, result.quarantined) == (2, 2)
    assert rows_of(catalog, result) == [(1,), (4,)]
    assert [(line, column) for line, column, *_ in quarantined(catalog, "repeat")] == [
        (2, None),
        (3, "a"),
    ]


def test_every_line_malformed_quarantined(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("bad.jsonl", '[1]\n\n7\n{"a": \n')
    contract = ContractConfig(columns={"a": ColumnRule(type="BIGINT")})

    result = ingest(
        catalog, "bad", [path], settings=DatasetConfig("bad", contract=contract)
    )

    assert (result.accepted, result.quarantined) == (0, 3)
    assert result.version.row_count == 0
    assert result.version.schema == {"a": "BIGINT"}
    assert [line for line, *_ in quarantined(catalog, "bad")] == [1, 3, 4]


def test_every_line_malformed_no_contract(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("bad.jsonl", '[\n  {"a": 1,\n   "b": 2}\n]\n')

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "bad", [path])

    assert str(raised.value) == (
        f"{path}: no line is a JSON object, so the file has no columns; line 1: "
        "a JSON value spread over several lines, where JSON Lines has one object "
        "per line; write one object per line (JSON Lines), or declare the "
        "dataset's columns in its contract to quarantine every line"
    )
    assert list_versions(catalog, "bad") == []


SECRET = "N42SECRET"
"""A tail number whose bytes no stored file may contain."""


def test_malformed_line_encrypted(tmp_path: Path) -> None:
    config = load_config_text(
        tmp_path,
        '[storage]\nhome = "home"\n\n[datasets.flights]\nsensitive = ["tailnum"]\n',
    )
    lines = [json.dumps({"tailnum": f"N{i}", "distance": i}) for i in range(5)]
    lines.insert(2, '{"tailnum": "' + SECRET + '", "distance": }')
    path = tmp_path / "flights.jsonl"
    path.write_text("\n".join(lines) + "\n")

    with Catalog(config.storage.home) as catalog:
        result = ingest(
            catalog,
            "flights",
            [path],
            settings=config.dataset("flights"),
            cipher=column_cipher(config),
        )
        (row,) = list_quarantine(catalog, "flights")
        cipher = column_cipher(config)
        other = _quarantine(
            catalog, Subject("flights", (("tailnum", "N1"),)), False, cipher
        )
        erasable = _quarantine(
            catalog, Subject("flights", (("tailnum", SECRET),)), False, cipher
        )
    shown = run_appliance(
        tmp_path / "config.toml",
        config.storage.home,
        "datasets",
        "quarantine",
        "flights",
        "--decrypt",
        "--json",
    )
    stored = [
        str(p)
        for p in config.storage.home.rglob("*")
        if p.is_file() and SECRET.encode() in p.read_bytes()
    ]

    assert (result.accepted, result.quarantined) == (5, 1)
    assert stored == []
    assert row.line == 3
    assert row.reason == "invalid JSON: Expecting value at character 38"
    assert SECRET not in row.value
    assert row.row == {"json_line": row.value}
    assert column_cipher(config).decrypt_text(row.value) == lines[2]
    assert other == 0
    assert erasable == 1
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["value"] == lines[2]
    assert json.loads(shown.stdout)["row"] == {"json_line": lines[2]}


def test_malformed_line_erasable(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("rows.jsonl", '{"k": "a1"}\n{"k": "zz9", oops}\n{"k": "b2"}\n')
    ingest(catalog, "rows", [path])

    count = _quarantine(catalog, Subject("rows", (("k", "zz9"),)), False, None)
    other = _quarantine(catalog, Subject("rows", (("k", "a1"),)), False, None)

    assert count == 1
    assert other == 0


def test_blank_lines_only_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("blank.jsonl", "\n\n  \n")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "v_blank", [path])

    assert str(raised.value) == (
        f"{path}: the file has only blank lines and no JSON object, so it has no "
        "columns; write one object per line (JSON Lines), or declare the "
        "dataset's columns in its contract to store an empty version"
    )
    assert list_versions(catalog, "v_blank") == []


def test_empty_objects_only_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("empty.jsonl", "{}\n\n{ }\n")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "v_empty", [path])

    message = str(raised.value)
    assert message.startswith(f"{path}: every JSON object of the file is empty")
    assert message.endswith("to store each {} as a row of missing values")
    assert list_versions(catalog, "v_empty") == []


KEYED = DatasetConfig(
    "keyed",
    contract=ContractConfig(
        columns={"id": ColumnRule(type="BIGINT"), "city": ColumnRule(type="VARCHAR")}
    ),
)
"""A dataset whose contract declares its columns."""


def test_blank_lines_get_contract_columns(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("blank.jsonl", "\n\n  \n")

    result = ingest(catalog, "keyed", [path], settings=KEYED)

    assert (result.accepted, result.quarantined) == (0, 0)
    assert result.version.schema == {"id": "BIGINT", "city": "VARCHAR"}
    assert result.warnings == []


def test_empty_objects_rows_of_missing(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("empty.jsonl", "{}\n\n{}\n")

    result = ingest(catalog, "keyed", [path], settings=KEYED)

    assert (result.accepted, result.quarantined) == (2, 0)
    assert result.version.schema == {"id": "BIGINT", "city": "VARCHAR"}
    assert result.warnings == []
    assert rows_of(catalog, result) == [(None, None), (None, None)]


def test_empty_objects_quarantined_by_nullable(
    catalog: Catalog, write_file: WriteFile
) -> None:
    rules = {"id": ColumnRule(type="BIGINT", nullable=False)}
    settings = DatasetConfig("strict_id", contract=ContractConfig(columns=rules))
    path = write_file("empty.jsonl", '[1]\n{}\n\n{"id": 3}\n')
    only_empty = write_file("only.jsonl", "{}\n")

    result = ingest(catalog, "strict_id", [path], settings=settings)
    appended = ingest(
        catalog, "strict_id", [only_empty], mode="append", settings=settings
    )

    assert (result.accepted, result.quarantined) == (1, 2)
    assert {(q.line, q.column) for q in list_quarantine(catalog, "strict_id")} == {
        (1, None),
        (2, "id"),
        (1, "id"),
    }
    assert (appended.accepted, appended.quarantined) == (0, 1)


def test_blank_append_keeps_inferred_columns(
    catalog: Catalog, write_file: WriteFile
) -> None:
    first = write_file("first.jsonl", '{"id": 1, "city": "c1"}\n')
    blank = write_file("blank.jsonl", "\n\n  \n")
    ingest(catalog, "inferred", [first])

    result = ingest(catalog, "inferred", [blank], mode="append")

    assert (result.accepted, result.quarantined) == (0, 0)
    assert result.version.schema == {"id": "BIGINT", "city": "VARCHAR"}
    assert result.warnings == []
    assert rows_of(catalog, result) == [(1, "c1")]
