"""Files that break readers: each loads correctly or fails naming file and line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from support import WriteFile

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.errors import IngestError
from appliance.storage import (
    Catalog,
    IngestResult,
    ingest,
    list_quarantine,
    scan_sql,
)
from appliance.storage._compressed import DecompressedFiles
from appliance.storage._contracts import violations_sql
from appliance.storage._sources import open_source
from appliance.storage._types import ColumnType


def rows_of(catalog: Catalog, result: IngestResult) -> list[tuple]:
    return catalog.db.execute(scan_sql(result.version)).fetchall()


def test_bom_header_names_clean(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("bom.csv", b"\xef\xbb\xbfid,name\n1,alpha\n2,beta\n")

    result = ingest(catalog, "bom", [path])

    assert list(result.version.schema) == ["id", "name"]
    assert result.version.row_count == 2
    assert rows_of(catalog, result) == [(1, "alpha"), (2, "beta")]


def test_duplicate_header_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("dup.csv", "id,id,name\n1,2,a\n")

    with pytest.raises(IngestError, match=r"line 1: duplicate column name 'id'"):
        ingest(catalog, "dup", [path])


def test_empty_header_name_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("blank.csv", "id,,name\n1,2,a\n")

    with pytest.raises(
        IngestError, match=r"line 1, column 2: the header name is empty"
    ):
        ingest(catalog, "blank", [path])


def test_blank_line_above_header_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("gap.csv", "\n\nid,name\n1,a\n")

    with pytest.raises(
        IngestError, match=r"gap.csv, line 1: the line is empty, and the header"
    ):
        ingest(catalog, "gap", [path])


def test_semicolon_decimal_comma_detected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    text = "text;number\n" + "".join("foo;123,5\n" for _ in range(3000))
    path = write_file("semi.csv", text)

    result = ingest(catalog, "semi", [path])

    assert result.version.schema == {"text": "VARCHAR", "number": "DOUBLE"}
    rows = rows_of(catalog, result)
    assert len(rows) == 3000
    assert {number for _, number in rows} == {123.5}


def test_semicolon_decimal_comma_declared(
    catalog: Catalog, write_file: WriteFile
) -> None:
    text = "text;number\n" + "".join("foo;123,5\n" for _ in range(3000))
    path = write_file("semi.csv", text)
    settings = DatasetConfig(name="semi", delimiter=";", decimal_separator=",")

    result = ingest(catalog, "semi", [path], settings=settings)

    assert result.version.schema["number"] == "DOUBLE"
    assert {number for _, number in rows_of(catalog, result)} == {123.5}


def test_tab_delimiter_detected(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("tab.tsv", "a\tb\n1\t2.5\n")

    result = ingest(catalog, "tab", [path])

    assert result.version.schema == {"a": "BIGINT", "b": "DOUBLE"}
    assert rows_of(catalog, result) == [(1, 2.5)]


def test_quoted_newlines_stay_one_field(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("nl.csv", 'a,b\n1,"x\ny, z"\n2,"end\n"\n3,w\n')

    result = ingest(catalog, "nl", [path])

    assert rows_of(catalog, result) == [(1, "x\ny, z"), (2, "end\n"), (3, "w")]


def test_quoted_newline_line_numbers(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("nl.csv", 'a,b\n1,"x\ny"\n2,"p\nq\n"\nbad,w\n')
    contract = ContractConfig(columns={"a": ColumnRule(type="BIGINT")})

    result = ingest(
        catalog, "nl", [path], settings=DatasetConfig("nl", contract=contract)
    )

    rows = catalog.db.execute("SELECT line, column_name FROM quarantine").fetchall()
    assert result.quarantined == 1
    assert rows == [(7, "a")]


def test_type_change_after_thousands_of_rows(
    catalog: Catalog, write_file: WriteFile
) -> None:
    text = "a\n" + "".join(f"{i}\n" for i in range(5000)) + "n/a-code\n"
    path = write_file("late.csv", text)

    result = ingest(catalog, "late", [path])

    assert result.version.schema == {"a": "VARCHAR"}
    assert result.version.row_count == 5001
    assert rows_of(catalog, result)[-1] == ("n/a-code",)
    assert result.warnings == [
        f"column 'a' looks like BIGINT in the first rows of {path} but has "
        "'n/a-code' at line 5002, so the whole column is read as text; fix that "
        "value, or declare the column's type in [datasets.late.contract] to "
        "quarantine such rows instead"
    ]


def test_type_change_line_after_breaks(catalog: Catalog, write_file: WriteFile) -> None:
    rows = "".join(f"{i},{i}.5,z\r\n" for i in range(3000))
    first = write_file("first.csv", "a,b,c\r\n1,2.5,x\r\n")
    text = f'a,b,c\r\n1,3.5,"x\r\ny"\r\n\r\n{rows}\r\n2,warm,z\r\n3,cold,z\r\n'
    second = write_file("second.csv", b"\xef\xbb\xbf" + text.encode())

    result = ingest(catalog, "late", [first, second])

    assert result.version.schema == {"a": "BIGINT", "b": "VARCHAR", "c": "VARCHAR"}
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith(
        f"column 'b' looks like DOUBLE in the first rows of {second} but has "
        "'warm' at line 3006, so the whole column is read as text"
    )


def test_json_type_change_late_warned(catalog: Catalog, write_file: WriteFile) -> None:
    lines = "".join(json.dumps({"a": i, "b": True}) + "\n" for i in range(5000))
    text = lines + '\n{"a": "n/a-code", "b": true}\n{"a": 7, "b": "maybe"}\n'
    path = write_file("late.jsonl", text)

    result = ingest(catalog, "late", [path])

    assert result.version.schema == {"a": "VARCHAR", "b": "VARCHAR"}
    assert result.version.row_count == 5002
    assert result.warnings == [
        f"column 'a' looks like BIGINT in the first rows of {path} but has "
        "'n/a-code' at line 5002, so the whole column is read as text; fix that "
        "value, or declare the column's type in [datasets.late.contract] to "
        "quarantine such rows instead",
        f"column 'b' looks like BOOLEAN in the first rows of {path} but has "
        "'maybe' at line 5003, so the whole column is read as text; fix that "
        "value, or declare the column's type in [datasets.late.contract] to "
        "quarantine such rows instead",
    ]


def test_json_type_change_across_files_warned(
    catalog: Catalog, write_file: WriteFile
) -> None:
    first = write_file("first.jsonl", '{"a": 1.5}\n{"a": 2}\n')
    second = write_file("second.jsonl", '{"a": 3.5}\n\n{"a": "warm"}\n')

    result = ingest(catalog, "late", [first, second])

    assert result.version.schema == {"a": "VARCHAR"}
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith(
        f"column 'a' looks like DOUBLE in the first rows of {second} but has "
        "'warm' at line 3, so the whole column is read as text"
    )


def test_json_null_first_rows_not_warned(
    catalog: Catalog, write_file: WriteFile
) -> None:
    lines = '{"a": null, "b": 1}\n' * 3000
    path = write_file("nulls.jsonl", lines + '{"a": 1, "b": 2}\n{"a": "x", "b": 3}\n')

    result = ingest(catalog, "nulls", [path])

    assert result.version.schema == {"a": "VARCHAR", "b": "BIGINT"}
    assert result.warnings == []


def test_json_text_from_start_not_warned(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("text.jsonl", '{"a": "x"}\n{"a": 2}\n{"a": 3}\n')

    result = ingest(catalog, "text", [path])

    assert result.version.schema == {"a": "VARCHAR"}
    assert result.warnings == []


def test_type_change_rejected_when_strict(
    catalog: Catalog, write_file: WriteFile
) -> None:
    text = "a,b\n" + "".join(f"{i},{i}.5\n" for i in range(5000)) + "1,warm\n"
    path = write_file("late.csv", text)

    with pytest.raises(IngestError, match=r"column 'b' looks like DOUBLE"):
        ingest(catalog, "late", [path], strict=True)


def test_type_change_against_contract_quarantined(
    catalog: Catalog, write_file: WriteFile
) -> None:
    text = "a\n" + "".join(f"{i}\n" for i in range(5000)) + "oops\n"
    path = write_file("late.csv", text)
    contract = ContractConfig(columns={"a": ColumnRule(type="BIGINT")})

    result = ingest(
        catalog, "late", [path], settings=DatasetConfig("late", contract=contract)
    )

    rows = catalog.db.execute(
        "SELECT source, line, column_name, value, reason FROM quarantine"
    ).fetchall()
    assert result.accepted == 5000
    assert rows == [
        (str(path.resolve()), 5002, "a", "oops", 'value "oops" is not a valid BIGINT')
    ]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("latin.csv", b"a,b\n1,ok\n2,caf\xe9\n"),
        ("latin.jsonl", b'{"a": 1, "b": "ok"}\n\n{"a": 2, "b": "caf\xe9"}\n'),
    ],
    ids=["csv", "json"],
)
def test_non_utf8_byte_named(
    catalog: Catalog, write_file: WriteFile, name: str, content: bytes
) -> None:
    path = write_file(name, content)

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "latin_1", [path])

    assert str(raised.value) == (
        f"{path}, line 3, byte {content.splitlines()[2].index(0xE9) + 1}: 0xe9 is "
        "not valid UTF-8; convert the file to UTF-8 or declare its encoding as "
        "[datasets.latin_1] encoding = 'latin-1' in the configuration"
    )


@pytest.mark.parametrize(
    ("content", "where"),
    [
        # In a number column: the typed read fails on the number, not the byte.
        (b"a,b\n1,ok\n2\xff,x\n", r"line 3, byte 2: 0xff"),
        # In the header line, which is read before DuckDB reads the file.
        (b"a,b\xe9\n1,ok\n", r"line 1, byte 4: 0xe9"),
        # In a quoted value that spans lines.
        (b'a,b\n1,"ok\nstill \xc3(ok"\n2,x\n', r"line 3, byte 7: 0xc3"),
        # Far past the rows DuckDB's sniffer and the header reader look at.
        (b"a,b\n" + b"1,ok\n" * 300_000 + b"2,caf\xe9\n", r"line 300002, byte 6"),
    ],
    ids=["number", "header", "quoted", "late"],
)
def test_non_utf8_byte_anywhere_named(
    catalog: Catalog, write_file: WriteFile, content: bytes, where: str
) -> None:
    path = write_file("bad.csv", content)

    with pytest.raises(IngestError, match=rf"bad.csv, {where}.* not valid UTF-8"):
        ingest(catalog, "bad", [path])

    assert not list((catalog.lake / "bad").glob("version=*"))


def test_utf8_ending_mid_character_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("cut.csv", "a,b\n1,café".encode()[:-1])

    with pytest.raises(IngestError, match=r"cut.csv: .*UTF-8"):
        ingest(catalog, "cut", [path])


def test_wrong_declared_encoding_named(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("plain.csv", b"a,b\n1,\xff\xfe\xd8\n")
    settings = DatasetConfig(name="plain", encoding="utf-16")

    with pytest.raises(IngestError, match=r"plain.csv: .* not valid utf-16") as raised:
        ingest(catalog, "plain", [path], settings=settings)

    assert str(raised.value).endswith(
        "; declare the file's encoding as [datasets.plain] encoding in the "
        "configuration"
    )


def test_latin1_declared_loads(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("latin.csv", b"a,b\n1,ok\n2,caf\xe9\n")
    settings = DatasetConfig(name="latin", encoding="latin-1")

    result = ingest(catalog, "latin", [path], settings=settings)

    assert rows_of(catalog, result) == [(1, "ok"), (2, "café")]
    assert result.warnings == []


def test_utf8_declared_latin1_warned(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("utf8.csv", "a,b\n1,ok\n2,café\n".encode())
    settings = DatasetConfig(name="latin", encoding="latin-1")

    result = ingest(catalog, "latin", [path], settings=settings)

    assert rows_of(catalog, result) == [(1, "ok"), (2, "cafÃ©")]
    assert result.warnings == [
        f"{path} is valid UTF-8 with characters outside ASCII, but "
        "[datasets.latin] encoding = 'latin-1' reads each of them as two or "
        "three others, such as 'é' as 'Ã©'; remove that setting to read the "
        "file as UTF-8, and ingest it again"
    ]


def test_zero_byte_file_empty_error(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("empty.csv", b"")

    with pytest.raises(IngestError, match=r"empty.csv: file is empty \(0 bytes\)"):
        ingest(catalog, "empty", [path])


def test_header_only_keeps_declared_types(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("header.csv", "id,day\n")
    contract = ContractConfig(
        columns={"id": ColumnRule(type="BIGINT"), "day": ColumnRule(type="DATE")}
    )

    result = ingest(
        catalog, "header", [path], settings=DatasetConfig("header", contract=contract)
    )

    assert result.version.row_count == 0
    assert result.version.schema == {"id": "BIGINT", "day": "DATE"}
    described = catalog.db.execute(f"DESCRIBE {scan_sql(result.version)}").fetchall()
    assert [(name, kind) for name, kind, *_ in described] == [
        ("id", "BIGINT"),
        ("day", "DATE"),
    ]
    assert result.warnings == []


def test_missing_tokens_read_as_null(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("na.csv", "a,b\n1,NA\n2,null\n3,\nNA,x\n")

    result = ingest(catalog, "na", [path])

    assert result.version.schema == {"a": "BIGINT", "b": "VARCHAR"}
    assert rows_of(catalog, result) == [(1, None), (2, None), (3, None), (None, "x")]


def test_iso_dates_and_timestamps_typed(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file(
        "iso.csv", "d,t,z\n2024-01-31,2024-01-31 10:00:00,2013-01-01T10:00:00Z\n"
    )

    result = ingest(catalog, "iso", [path])

    assert result.version.schema == {"d": "DATE", "t": "TIMESTAMP", "z": "TIMESTAMPTZ"}


def test_other_date_format_allowed_parses(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("dates.csv", "d\n31-OCT-2023\n01-JAN-2024\n")
    settings = DatasetConfig(name="dates", date_formats=("%d-%b-%Y",))

    result = ingest(catalog, "dates", [path], settings=settings)

    assert result.version.schema == {"d": "DATE"}
    assert [str(d) for (d,) in rows_of(catalog, result)] == ["2023-10-31", "2024-01-01"]
    assert result.warnings == []


def test_other_date_format_not_allowed_warns(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("dates.csv", "d\n31-OCT-2023\n01-JAN-2024\n")

    result = ingest(catalog, "dates", [path])

    assert result.version.schema == {"d": "VARCHAR"}
    assert rows_of(catalog, result) == [("31-OCT-2023",), ("01-JAN-2024",)]
    assert result.warnings == [
        "column 'd' looks like dates in a format that is not allowed (allowed: "
        "none), so it stays text; add its format to [datasets.dates] date_formats"
    ]
    assert result.version.report["warnings"] == result.warnings


def test_spaces_around_header_name_warned(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("s.csv", " id ,val\n1,2\n")

    result = ingest(catalog, "s", [path])

    assert list(result.version.schema) == [" id ", "val"]
    assert result.warnings == [
        "column ' id ' has spaces around its name, and it is stored with them, so "
        "queries, views and requests must name it so; remove them from the header "
        "to store 'id'"
    ]


def test_bom_only_file_rejected(catalog: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf")

    with pytest.raises(IngestError, match="contains only a UTF-8 byte-order mark"):
        ingest(catalog, "bom", [path])


def test_invalid_iso_date_named_as_invalid(
    catalog: Catalog, write_file: WriteFile
) -> None:
    first = write_file("first.csv", "id,d\n1,2024-01-01\n")
    text = 'id,d\n2,2024-01-02\n3,"2024-01-03"\n\n4,2024-02-30\n5,2024-13-01\n'
    second = write_file("second.csv", text)

    result = ingest(catalog, "days", [first, second])

    assert result.version.schema == {"id": "BIGINT", "d": "VARCHAR"}
    assert result.warnings == [
        "column 'd' looks like ISO 8601 dates (YYYY-MM-DD), but has '2024-02-30' "
        f"at line 5 of {second}, which is not a valid date, so it stays text; fix "
        "such values, or declare the column as DATE in [datasets.days.contract] "
        "so that they are quarantined with their line"
    ]


def test_late_invalid_json_date_named(catalog: Catalog, write_file: WriteFile) -> None:
    days = ["2024-01-01"] * 3000 + [None, "2024-02-31"]
    lines = "".join(json.dumps({"id": i, "d": d}) + "\n" for i, d in enumerate(days))
    path = write_file("days.jsonl", lines)

    result = ingest(catalog, "json_days", [path])

    assert result.version.schema == {"id": "BIGINT", "d": "VARCHAR"}
    assert result.warnings == [
        "column 'd' looks like ISO 8601 dates (YYYY-MM-DD), but has '2024-02-31' "
        f"at line 3002 of {path}, which is not a valid date, so it stays text; "
        "fix such values, or declare the column as DATE in "
        "[datasets.json_days.contract] so that they are quarantined with their "
        "line"
    ]


def test_day_month_ambiguous_flagged(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("amb.csv", "d\n01/02/2024\n03/04/2024\n")
    settings = DatasetConfig(name="amb", date_formats=("%d/%m/%Y", "%m/%d/%Y"))

    result = ingest(catalog, "amb", [path], settings=settings)

    assert result.version.schema == {"d": "VARCHAR"}
    assert len(result.warnings) == 1
    assert "column 'd' holds ambiguous dates" in result.warnings[0]
    assert (
        "date_formats (%d/%m/%Y, %m/%d/%Y) do not settle which" in (result.warnings[0])
    )


def test_thousands_separators_flagged(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("amounts.csv", 'id,amount\n1,"1,234.5"\n2,12.5\n3,"2,000"\n')

    result = ingest(catalog, "amounts", [path])

    assert result.version.schema == {"id": "BIGINT", "amount": "VARCHAR"}
    assert result.warnings == [
        "column 'amount' contains numbers with ',' between thousands (such as "
        "1,234.5), so it stays text; remove the separators from the file to "
        "store it as numbers"
    ]


def test_dotted_thousands_with_decimal_comma_flagged(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("amounts.csv", "id;amount\n1;1.234,5\n2;2,5\n")
    settings = DatasetConfig(name="amounts", delimiter=";", decimal_separator=",")

    result = ingest(catalog, "amounts", [path], settings=settings)

    assert result.version.schema == {"id": "BIGINT", "amount": "VARCHAR"}
    assert result.warnings == [
        "column 'amount' contains numbers with '.' between thousands (such as "
        "1.234,5), so it stays text; remove the separators from the file to "
        "store it as numbers"
    ]


def test_text_with_commas_not_flagged(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("notes.csv", 'id,note\n1,"1,234.5"\n2,"red, blue"\n')

    result = ingest(catalog, "notes", [path])

    assert result.version.schema["note"] == "VARCHAR"
    assert result.warnings == []


def test_day_first_unambiguous_parses(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("dmy.csv", "d\n01/02/2024\n25/12/2024\n")
    settings = DatasetConfig(name="dmy", date_formats=("%d/%m/%Y", "%m/%d/%Y"))

    result = ingest(catalog, "dmy", [path], settings=settings)

    assert result.version.schema == {"d": "DATE"}
    assert [str(d) for (d,) in rows_of(catalog, result)] == ["2024-02-01", "2024-12-25"]


@pytest.mark.parametrize(
    ("fmt", "text"), [("%d.%m.%Y", "31.01.2024"), ("%d-%m-%Y", "31-01-2024")]
)
def test_dotted_or_dashed_day_first_parses(
    catalog: Catalog, write_file: WriteFile, fmt: str, text: str
) -> None:
    path = write_file("dots.csv", f"d\n{text}\n13{text[2]}02{text[5:]}\n")
    settings = DatasetConfig(name="dots", date_formats=(fmt,))

    result = ingest(catalog, "dots", [path], settings=settings)

    assert result.version.schema == {"d": "DATE"}
    assert [str(d) for (d,) in rows_of(catalog, result)] == ["2024-01-31", "2024-02-13"]
    assert result.warnings == []


def test_dotted_dates_without_format_named(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("dots.csv", "d\n31.01.2024\n13.02.2024\n")

    result = ingest(catalog, "dots", [path])

    assert result.version.schema == {"d": "VARCHAR"}
    assert len(result.warnings) == 1
    assert "looks like dates in a format that is not allowed" in result.warnings[0]


def test_one_allowed_order_reads_ambiguous_dates(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("amb.csv", "d\n01/02/2024\n03/04/2024\n")
    settings = DatasetConfig(name="amb", date_formats=("%d/%m/%Y",))

    result = ingest(catalog, "amb", [path], settings=settings)

    assert [str(d) for (d,) in rows_of(catalog, result)] == ["2024-02-01", "2024-04-03"]
    assert result.warnings == []


def test_declared_date_format_resolves_ambiguity(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("amb.csv", "d\n01/02/2024\n03/04/2024\n")
    contract = ContractConfig(
        columns={"d": ColumnRule(type="DATE", date_format="%m/%d/%Y")}
    )

    result = ingest(
        catalog, "amb", [path], settings=DatasetConfig("amb", contract=contract)
    )

    assert [str(d) for (d,) in rows_of(catalog, result)] == ["2024-01-02", "2024-03-04"]


def test_version_column_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("v.csv", "id,version\n1,2\n")

    with pytest.raises(IngestError, match="column 'version' is reserved"):
        ingest(catalog, "v", [path])


def test_ragged_rows_quarantined(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("ragged.csv", "a,b\n1,2\n3,4,5\n6\nx,8\n9,10\n")
    contract = ContractConfig(columns={"a": ColumnRule(type="BIGINT")})

    result = ingest(
        catalog, "ragged", [path], settings=DatasetConfig("ragged", contract=contract)
    )

    rows = catalog.db.execute(
        "SELECT line, column_name, value, reason FROM quarantine ORDER BY line"
    ).fetchall()
    assert result.accepted == 2
    assert result.quarantined == 3
    assert [(line, value) for line, _, value, _ in rows] == [
        (3, "3,4,5"),
        (4, "6"),
        (5, "x"),
    ]
    assert rows[0][3] == "too many fields (3; the header has 2 columns)"
    assert rows[1][3] == "too few fields (1; the header has 2 columns)"
    assert rows[2][3] == 'value "x" is not a valid BIGINT'
    assert catalog.db.execute(scan_sql(result.version)).fetchall() == [(1, 2), (9, 10)]


def test_multiline_malformed_record_lines(
    catalog: Catalog, write_file: WriteFile
) -> None:
    text = 'a,b\n1,x\n2,"multi\nline",extra\n3,y\n\n4,"q\nr"\n5,6,7\nbad,z\n8,w\n'
    path = write_file("multi.csv", text)
    contract = ContractConfig(columns={"a": ColumnRule(type="BIGINT")})

    result = ingest(
        catalog, "multi", [path], settings=DatasetConfig("multi", contract=contract)
    )

    rows = catalog.db.execute(
        "SELECT line, value, reason FROM quarantine ORDER BY line"
    ).fetchall()
    assert result.accepted == 4
    assert [(line, value) for line, value, _ in rows] == [
        (3, '2,"multi\nline",extra'),
        (9, "5,6,7"),
        (10, "bad"),
    ]
    assert rows[0][2].startswith("too many fields")
    assert rows[2][2] == 'value "bad" is not a valid BIGINT'


def test_crlf_bom_malformed_record_lines(
    catalog: Catalog, write_file: WriteFile
) -> None:
    text = 'a,b\r\n1,x\r\n2,"two\r\nlines",extra\r\n\r\n3\r\nok,y\r\n4,z\r\n'
    path = write_file("crlf.csv", b"\xef\xbb\xbf" + text.encode())
    contract = ContractConfig(columns={"a": ColumnRule(type="BIGINT")})

    result = ingest(
        catalog, "crlf", [path], settings=DatasetConfig("crlf", contract=contract)
    )

    rows = catalog.db.execute(
        "SELECT line, reason FROM quarantine ORDER BY line"
    ).fetchall()
    assert result.accepted == 2
    assert [line for line, _ in rows] == [3, 6, 7]
    assert rows[1][1].startswith("too few fields")
    assert rows[2][1] == 'value "ok" is not a valid BIGINT'


def test_blank_and_multiline_rows_typed_lines(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("typed.csv", 'a,b\n1,"x\ny"\n\n50,z\n2,w\n')
    contract = ContractConfig(
        columns={"a": ColumnRule(type="BIGINT", max=10), "b": ColumnRule()}
    )

    result = ingest(
        catalog, "typed", [path], settings=DatasetConfig("typed", contract=contract)
    )

    rows = catalog.db.execute("SELECT line, value FROM quarantine").fetchall()
    assert result.accepted == 2
    assert rows == [(5, "50")]


def test_overlong_line_error_short(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("long.csv", "a,b\n1," + "x" * 3_000_000 + "\n2,y\n")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "long", [path])

    message = str(raised.value)
    assert len(message) < 400
    assert message.startswith(
        f"{path}, line 2: the record of 3000002 bytes is longer than the maximum "
        "of 1999999 bytes"
    )
    assert message.endswith("or shorten or remove the record")


def test_malformed_json_strict_error_short(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("bad.jsonl", 'not json\n{"a": 1}\n')

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "bad", [path], strict=True)

    message = str(raised.value)
    assert "LINE 1" not in message
    assert "CREATE" not in message
    assert message == (
        "strict ingest of 'bad' rejected; 1 of 2 rows break the contract; "
        f"{path.resolve()}, line 1: invalid JSON: Expecting value at character 1; "
        "fix the file or ingest without --strict to quarantine"
    )


@pytest.mark.parametrize(
    ("text", "line", "rows"),
    [
        ('{"a": 1}\n{"a": 2, b: 3}\n{"a": 4}\n', 2, [(1,), (4,)]),
        ('{"a": 1}\n{"a": 2}\n{"a": 3}\n{"a": 4, b: 5}\n', 4, [(1,), (2,), (3,)]),
        ('{"a": 1}\n\n{"a": 2\n', 3, [(1,)]),
    ],
)
def test_malformed_json_line_quarantined(
    catalog: Catalog, write_file: WriteFile, text: str, line: int, rows: list
) -> None:
    path = write_file("bad.jsonl", text)

    result = ingest(catalog, "bad", [path])

    (row,) = list_quarantine(catalog, "bad")
    assert (result.accepted, result.quarantined) == (len(rows), 1)
    assert rows_of(catalog, result) == rows
    assert row.line == line
    assert row.reason.startswith("invalid JSON: ")
    assert row.value == text.splitlines()[line - 1]


def test_nul_byte_row_quarantined(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file(
        "nul.csv", b'id,name,v\n1,"two\nlines",1.5\n2,a\x00b,2.5\n3,c,3.5\n'
    )

    result = ingest(catalog, "nul", [path])

    assert (result.accepted, result.quarantined) == (2, 1)
    assert rows_of(catalog, result) == [(1, "two\nlines", 1.5), (3, "c", 3.5)]
    (row,) = list_quarantine(catalog, "nul")
    assert (row.source, row.line, row.column, row.value) == (
        str(path.resolve()),
        4,
        "name",
        "a\\0b",
    )
    assert row.reason == (
        'value "a\\0b" contains a NUL byte (0x00) at character 2; remove NUL bytes '
        "from the source"
    )
    assert row.row == {"id": 2, "name": "a\x00b", "v": 2.5}


@pytest.mark.parametrize(
    ("name", "content", "nul_free"),
    [
        ("clean.csv", b"id,name\n1,a\n", True),
        ("nul.csv", b"id,name\n1,a\x00b\n", False),
        ("clean.csv.gz", gzip.compress(b"id,name\n1,a\n"), False),
        ("clean.jsonl", b'{"id": 1}\n', False),
    ],
    ids=["csv", "csv-with-nul", "gzip-csv", "json-lines"],
)
def test_nul_free_only_for_searched_csv(
    write_file: WriteFile, tmp_path: Path, name: str, content: bytes, nul_free: bool
) -> None:
    # Only an uncompressed CSV file is searched for a 0x00 byte; a JSON
    # string can write a NUL as \u0000 without one.
    path = write_file(name, content)

    with DecompressedFiles(tmp_path) as copies:
        source = open_source(path, "x", copies=copies)

    assert source.nul_free is nul_free


def test_nul_free_column_not_checked() -> None:
    types = {"a": ColumnType("VARCHAR"), "b": ColumnType("VARCHAR")}
    source_types = {"a": "VARCHAR", "b": "VARCHAR"}

    sql = violations_sql(ContractConfig(), types, source_types, nul_free={"a"})

    assert 'contains("b", chr(0))' in sql
    assert 'contains("a", chr(0))' not in sql


def test_nul_byte_in_second_file_quarantined(
    catalog: Catalog, write_file: WriteFile
) -> None:
    clean = write_file("clean.csv", b"id,name\n1,a\n")
    nul = write_file("nul.csv", b"id,name\n2,b\x00\n")

    result = ingest(catalog, "nul", [clean, nul])

    assert (result.accepted, result.quarantined) == (1, 1)
    (row,) = list_quarantine(catalog, "nul")
    assert (row.source, row.line, row.column) == (str(nul.resolve()), 2, "name")


def test_nul_byte_in_gzip_file_quarantined(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("nul.csv.gz", gzip.compress(b"id,name\n1,a\n2,b\x00\n"))

    result = ingest(catalog, "nul", [path])

    assert (result.accepted, result.quarantined) == (1, 1)
    (row,) = list_quarantine(catalog, "nul")
    assert (row.line, row.column, row.value) == (3, "name", "b\\0")


def test_nul_byte_in_number_keeps_type(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("nulnum.csv", b"id,v\n1,1.5\n2,2\x00.5\n3,3.5\n")

    result = ingest(catalog, "nulnum", [path])

    assert result.version.schema == {"id": "BIGINT", "v": "DOUBLE"}
    assert rows_of(catalog, result) == [(1, 1.5), (3, 3.5)]
    assert [(q.line, q.column) for q in list_quarantine(catalog, "nulnum")] == [
        (3, "v")
    ]


def test_nul_byte_rejected_when_strict(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("nul.csv", b"id,name\n1,a\n2,b\x00\n")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "nul", [path], strict=True)

    assert (
        f"{path.resolve()}, line 3, column 'name': value \"b\\0\" contains a NUL"
        in (str(raised.value))
    )


def test_nul_byte_in_header_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("nulhead.csv", b"id,na\x00me\n1,a\n")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "nulhead", [path])

    assert str(raised.value) == (
        f"{path}, line 1, column 2: the header name 'na\\0me' contains a NUL byte "
        "(0x00); remove NUL bytes from the file"
    )


def test_mixed_json_types_read_as_text(catalog: Catalog, write_file: WriteFile) -> None:
    text = (
        '{"id": 1, "city": "z", "n": 1}\n'
        '{"id": 2, "city": {"a": [1]}, "n": "2"}\n'
        '{"id": 3, "city": "y z", "n": null}\n'
    )
    path = write_file("mixed.jsonl", text)

    result = ingest(catalog, "mixed", [path])

    assert result.version.schema == {"id": "BIGINT", "city": "VARCHAR", "n": "BIGINT"}
    assert rows_of(catalog, result) == [
        (1, "z", 1),
        (2, '{"a":[1]}', 2),
        (3, "y z", None),
    ]


def test_json_empty_key_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("blank.jsonl", '{"id": 1}\n{"id": 2, "": 3}\n')

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "blank", [path])

    assert str(raised.value) == (
        f'{path}, line 2: the key "" is an empty column name; name the column, '
        "or remove the key from that object"
    )


def test_json_nul_key_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("nulkey.jsonl", '{"id": 1}\n{"id": 2, "a\\u0000b": 3}\n')

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "nulkey", [path])

    assert str(raised.value) == (
        f"{path}, line 2: the key 'a\\0b' contains a NUL byte (0x00); remove NUL "
        "bytes from the file"
    )


def test_wide_json_keeps_columns(catalog: Catalog, write_file: WriteFile) -> None:
    row = {f"c{i}": i for i in range(300)}
    path = write_file("wide.jsonl", json.dumps(row) + "\n")

    result = ingest(catalog, "wide", [path])

    assert len(result.version.schema) == 300
    assert result.version.schema["c299"] == "BIGINT"
    assert rows_of(catalog, result) == [tuple(range(300))]


def test_mixed_json_append_quarantines_value(
    catalog: Catalog, write_file: WriteFile
) -> None:
    first = write_file("first.jsonl", '{"id": 1, "city": "a"}\n')
    ingest(catalog, "mixed", [first])
    second = write_file(
        "second.jsonl", '{"id": 2, "city": "b"}\n{"id": "x", "city": 5}\n'
    )

    result = ingest(catalog, "mixed", [second], mode="append")

    assert result.version.schema == {"id": "BIGINT", "city": "VARCHAR"}
    assert sorted(rows_of(catalog, result)) == [(1, "a"), (2, "b")]
    quarantined = catalog.db.execute(
        "SELECT line, column_name, value FROM quarantine"
    ).fetchall()
    assert quarantined == [(2, "id", "x")]


@pytest.mark.parametrize("name", ["folder", "folder.csv"])
def test_directory_path_named(catalog: Catalog, tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    folder.mkdir()

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "folder", [folder])

    message = str(raised.value)
    assert message.startswith(f"{folder}: is a directory; name the files in it")
    assert str(folder / "*.csv") in message


def test_long_dataset_name_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("a.csv", "a\n1\n")

    with pytest.raises(
        IngestError,
        match=r"'nnnnnnnnnnnnnnnnnnnn'\.\.\. of 300 characters; use at most",
    ):
        ingest(catalog, "n" * 300, [path])
    assert ingest(catalog, "n" * 100, [path]).created


@pytest.mark.parametrize(
    ("text", "line", "kind"),
    [
        ('{"a": 1}\n\n[1, 2]\n{"a": 3}\n', 3, "an array"),
        ('{"a": 1}\n7\n', 2, "a single value"),
    ],
)
def test_json_line_not_object_quarantined(
    catalog: Catalog, write_file: WriteFile, text: str, line: int, kind: str
) -> None:
    path = write_file("rows.json", text)

    result = ingest(catalog, "rows", [path])

    (row,) = list_quarantine(catalog, "rows")
    assert result.quarantined == 1
    assert (row.line, row.reason) == (
        line,
        f"{kind} where a JSON object was expected",
    )


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('[{"a": 1}, {"a": 2}]', "an array"),
        ('[\n  {"a": 1,\n   "b": 2}\n]\n', "a JSON value spread over"),
    ],
)
def test_json_file_without_object_named(
    catalog: Catalog, write_file: WriteFile, text: str, kind: str
) -> None:
    path = write_file("rows.json", text)

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "rows", [path])

    message = str(raised.value)
    assert message.startswith(f"{path}: no line is a JSON object, so the file has no")
    assert f"; line 1: {kind}" in message
    assert "write one object per line (JSON Lines)" in message


def test_json_column_named_json_loads(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("rows.jsonl", '{"json": "a"}\n{"json": "b"}\n')

    result = ingest(catalog, "rows", [path])

    assert rows_of(catalog, result) == [("a",), ("b",)]


def test_same_file_twice_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    first = write_file("a.csv", "a\n1\n")
    copy = write_file("b.csv", "a\n1\n")

    with pytest.raises(IngestError, match=r"a\.csv has the same content as .*a\.csv"):
        ingest(catalog, "twice", [first, first])
    with pytest.raises(IngestError, match=r"b\.csv has the same content as .*a\.csv"):
        ingest(catalog, "twice", [first, copy])


def test_ragged_rows_rejected_when_strict(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("ragged.csv", "a,b\n1,2\n3,4,5\n6,7\n")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "ragged", [path], strict=True)

    message = str(raised.value)
    assert (
        f"{path.resolve()}, line 3: too many fields (3; the header has 2 columns);"
    ) in message
    assert "None" not in message


def test_blank_lines_file_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("blank.csv", "\n\n \r\n\n")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "blank", [path])

    assert str(raised.value) == (
        f"{path}: the file contains only blank lines; nothing to ingest"
    )


def test_utf16_mark_names_encoding(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("utf16.csv", "\ufeffid,t\n1,2\n".encode("utf-16-le"))

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "wide", [path])

    assert str(raised.value) == (
        f"{path}: the file starts with a UTF-16 (little-endian) byte order mark; "
        "declare [datasets.wide] encoding = 'utf-16' in the configuration, or "
        "convert the file to UTF-8"
    )
    settings = DatasetConfig("wide", encoding="utf-16")
    result = ingest(catalog, "wide", [path], settings=settings)
    assert rows_of(catalog, result) == [(1, 2)]


def test_utf16_big_endian_mark_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("utf16be.csv", "\ufeffid,t\n1,2\n".encode("utf-16-be"))

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "wide", [path])

    assert str(raised.value).startswith(
        f"{path}: the file starts with a UTF-16 big-endian byte order mark"
    )


def test_other_date_format_hint(catalog: Catalog, write_file: WriteFile) -> None:
    first = write_file("iso.csv", "id,at\n1,2024-01-31 09:00:00\n")
    ingest(catalog, "times", [first])
    other = write_file("us.csv", "id,at\n2,02/01/2024 09:00\n3,2024-02-03 10:00:00\n")

    result = ingest(catalog, "times", [other], "append")

    rows = list_quarantine(catalog, "times", result.version.version)
    assert [(row.line, row.column) for row in rows] == [(2, "at")]
    assert rows[0].reason == (
        'value "02/01/2024 09:00" is not a valid TIMESTAMP; write it in ISO 8601 '
        "without a UTC offset or time zone name, such as 2024-01-31 09:00:00, or "
        "declare type = 'TIMESTAMPTZ' or its strptime format, such as "
        "date_format = '%m/%d/%Y %H:%M', in [datasets.times.contract.columns.at]"
    )


def test_json_strings_read_allowed_date_formats(
    catalog: Catalog, write_file: WriteFile
) -> None:
    lines = [
        {"id": 1, "day": "31/01/2024", "code": "123", "at": "2024-01-01 10:00 PM"},
        {"id": 2, "day": "01/02/2024", "code": "456", "at": "2024-01-02 09:30 AM"},
    ]
    path = write_file("days.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    settings = DatasetConfig("days", date_formats=("%d/%m/%Y", "%Y-%m-%d %I:%M %p"))

    result = ingest(catalog, "days", [path], settings=settings)

    assert result.version.schema == {
        "id": "BIGINT",
        "day": "DATE",
        "code": "VARCHAR",
        "at": "TIMESTAMP",
    }
    assert [(str(d), c, str(a)) for _, d, c, a in rows_of(catalog, result)] == [
        ("2024-01-31", "123", "2024-01-01 22:00:00"),
        ("2024-02-01", "456", "2024-01-02 09:30:00"),
    ]
    assert result.warnings == []


def test_twelve_hour_times_warned(catalog: Catalog, write_file: WriteFile) -> None:
    csv_path = write_file("pm.csv", "id,at\n1,2024-01-01 10:00 PM\n")
    json_path = write_file("pm.jsonl", '{"id": 1, "at": "2024-01-01 10:00 PM"}\n')

    for dataset, path in (("pm_csv", csv_path), ("pm_json", json_path)):
        result = ingest(catalog, dataset, [path])

        assert result.version.schema["at"] == "VARCHAR"
        assert result.warnings == [
            "column 'at' has times on a 12-hour clock (such as "
            "'2024-01-01 10:00 PM'), so it stays text; add their format, such as "
            f"'%Y-%m-%d %I:%M %p', to [datasets.{dataset}] date_formats"
        ]


def test_mixed_date_formats_warned(catalog: Catalog, write_file: WriteFile) -> None:
    text = "id,day\n1,2013-01-01\n2,01/02/2013\n3,2013-01-01T05:00:00Z\n"
    path = write_file("mixed.csv", text)

    result = ingest(catalog, "mixed", [path])

    assert result.version.schema == {"id": "BIGINT", "day": "VARCHAR"}
    assert result.warnings == [
        "column 'day' mixes ISO 8601 dates or times with other values, so it "
        "stays text; write every value in one format, or add the other format "
        "to [datasets.mixed] date_formats"
    ]
