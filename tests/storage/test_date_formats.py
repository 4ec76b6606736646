"""Dates in the allowed date_formats of a dataset and in a contract's date_format.

A column may mix allowed formats, each value read in the one it matches, unless
two formats read a value as different dates. A contract's list of formats
reads each value in the first listed format that matches it. ``%Y`` matches a
year of four digits only, although DuckDB's strptime reads ``24`` as the year 24.
"""

from __future__ import annotations

import pytest
from support import WriteFile

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.storage import Catalog, IngestResult, ingest, list_quarantine, scan_sql

EURO_FORMATS = ("%d.%m.%Y", "%d/%m/%Y")


def dates_of(catalog: Catalog, result: IngestResult, column: str = "d") -> list[str]:
    rows = catalog.db.execute(
        f'SELECT CAST("{column}" AS VARCHAR) FROM ({scan_sql(result.version)})'
    ).fetchall()
    return [value for (value,) in rows]


def euro_settings(name: str) -> DatasetConfig:
    return DatasetConfig(name=name, delimiter=";", date_formats=EURO_FORMATS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id;d\n1;05.01.2024\n2;06/01/2024\n", ["2024-01-05", "2024-01-06"]),
        ("id;d\n1;25.01.2024\n2;26/01/2024\n", ["2024-01-25", "2024-01-26"]),
    ],
    ids=["day-first-or-month-first", "day-first-only"],
)
def test_mixed_allowed_formats_give_date(
    catalog: Catalog, write_file: WriteFile, text: str, expected: list[str]
) -> None:
    path = write_file("euro.csv", text)

    result = ingest(catalog, "euro_d", [path], settings=euro_settings("euro_d"))

    assert result.version.schema == {"id": "BIGINT", "d": "DATE"}
    assert dates_of(catalog, result) == expected
    assert result.warnings == []


def test_second_format_after_sample_read(
    catalog: Catalog, write_file: WriteFile
) -> None:
    lines = [f"{i};05.01.2024" for i in range(3000)] + ["3000;06/01/2024"]
    path = write_file("late.csv", "id;d\n" + "\n".join(lines) + "\n")

    result = ingest(catalog, "late", [path], settings=euro_settings("late"))

    assert result.version.schema["d"] == "DATE"
    assert dates_of(catalog, result)[-2:] == ["2024-01-05", "2024-01-06"]


def test_append_reads_stored_formats(catalog: Catalog, write_file: WriteFile) -> None:
    settings = euro_settings("euro_a")
    first = write_file("first.csv", "id;d\n1;25.01.2024\n2;26/01/2024\n")
    second = write_file("second.csv", "id;d\n3;27/01/2024\n")

    ingest(catalog, "euro_a", [first], settings=settings)
    result = ingest(catalog, "euro_a", [second], mode="append", settings=settings)

    assert result.quarantined == 0
    assert dates_of(catalog, result) == ["2024-01-25", "2024-01-26", "2024-01-27"]


def test_date_and_time_formats_give_timestamp(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("at.csv", "at\n05.01.2024\n06.01.2024 10:30\n")
    settings = DatasetConfig(name="at", date_formats=("%d.%m.%Y", "%d.%m.%Y %H:%M"))

    result = ingest(catalog, "at", [path], settings=settings)

    assert result.version.schema == {"at": "TIMESTAMP"}
    assert dates_of(catalog, result, "at") == [
        "2024-01-05 00:00:00",
        "2024-01-06 10:30:00",
    ]


def test_formats_reading_different_dates_warned(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("orders.csv", "d\n05/01/2024\n25/01/2024\n01/25/2024\n")
    settings = DatasetConfig(name="orders", date_formats=("%d/%m/%Y", "%m/%d/%Y"))

    result = ingest(catalog, "orders", [path], settings=settings)

    assert result.version.schema == {"d": "VARCHAR"}
    assert result.warnings == [
        "column 'd' has values that two allowed date_formats (%d/%m/%Y, "
        "%m/%d/%Y), or one of them and ISO 8601, read as different dates, such "
        "as day-first and month-first, so it stays text; declare its "
        "date_format in the dataset contract"
    ]


def test_one_order_formats_name_other_separator(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("dashes.csv", "id;d\n1;05-01-2024\n2;06-01-2024\n")

    result = ingest(catalog, "dashes", [path], settings=euro_settings("dashes"))

    assert result.version.schema["d"] == "VARCHAR"
    assert result.warnings == [
        "column 'd' looks like dates in a format that is not allowed (allowed: "
        "%d.%m.%Y, %d/%m/%Y), so it stays text; add its format to "
        "[datasets.dashes] date_formats"
    ]


def test_two_digit_year_quarantined(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file(
        "dt.csv",
        "d,t,tz\n05.01.24,2024-01-05 10:00:00,2024-01-05 10:00\n"
        "06.01.2024,2024-01-06 10:00:00,2024-01-06 10:00\n",
    )
    contract = ContractConfig(
        columns={"d": ColumnRule(type="DATE", date_format="%d.%m.%Y")}
    )

    result = ingest(
        catalog, "dt", [path], settings=DatasetConfig("dt", contract=contract)
    )

    assert result.accepted == 1
    assert dates_of(catalog, result) == ["2024-01-06"]
    rows = list_quarantine(catalog, "dt")
    assert [(row.line, row.value) for row in rows] == [(2, "05.01.24")]
    assert rows[0].reason == (
        'value "05.01.24" is not a valid DATE; write it in the date format '
        "'%d.%m.%Y', whose %Y is a year of four digits, or declare date_format "
        "= '%d.%m.%y' in [datasets.dt.contract.columns.d] for years of two digits"
    )


def test_two_digit_year_not_inferred(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("yy.csv", "d\n05.01.24\n06.01.24\n")
    settings = DatasetConfig(name="yy", date_formats=("%d.%m.%Y",))

    result = ingest(catalog, "yy", [path], settings=settings)

    assert result.version.schema == {"d": "VARCHAR"}
    assert dates_of(catalog, result) == ["05.01.24", "06.01.24"]
    assert result.warnings == [
        "column 'd' looks like dates in a format that is not allowed (allowed: "
        "%d.%m.%Y), so it stays text; add its format to [datasets.yy] "
        "date_formats (%Y matches a year of four digits, and %y one of two)"
    ]


def test_two_digit_year_format_reads_century(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("y2.csv", "d\n05.01.24\n06.01.24\n")
    settings = DatasetConfig(name="y2", date_formats=("%d.%m.%Y", "%d.%m.%y"))

    result = ingest(catalog, "y2", [path], settings=settings)

    assert result.version.schema == {"d": "DATE"}
    assert dates_of(catalog, result) == ["2024-01-05", "2024-01-06"]


def contract_settings(name: str, *formats: str, kind: str = "DATE") -> DatasetConfig:
    rule = ColumnRule(type=kind, date_format=formats)
    contract = ContractConfig(columns={"d": rule})
    return DatasetConfig(name=name, delimiter=";", contract=contract)


def test_contract_format_list_reads_any(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file(
        "mixed.csv", "id;d\n1;05.01.2024\n2;06/01/2024\n3;2024-01-07\n4;\n"
    )
    settings = contract_settings("mixed", *EURO_FORMATS)

    result = ingest(catalog, "mixed", [path], settings=settings)

    assert result.accepted == 3
    assert result.quarantined == 1
    assert dates_of(catalog, result) == ["2024-01-05", "2024-01-06", None]
    rows = list_quarantine(catalog, "mixed")
    assert [(row.line, row.column, row.value) for row in rows] == [
        (4, "d", "2024-01-07")
    ]
    assert rows[0].source == str(path)
    assert rows[0].reason == (
        'value "2024-01-07" is not a valid DATE; write it in the date format '
        "'%d.%m.%Y' or '%d/%m/%Y', whose %Y is a year of four digits, or add "
        "'%d.%m.%y' to date_format in [datasets.mixed.contract.columns.d] for "
        "years of two digits"
    )


@pytest.mark.parametrize(
    ("formats", "expected"),
    [
        (("%d/%m/%Y", "%m/%d/%Y"), ["2024-02-01", "2024-01-13", "2024-01-13"]),
        (("%m/%d/%Y", "%d/%m/%Y"), ["2024-01-02", "2024-01-13", "2024-01-13"]),
    ],
    ids=["day-first-listed-first", "month-first-listed-first"],
)
def test_contract_first_listed_format_wins(
    catalog: Catalog,
    write_file: WriteFile,
    formats: tuple[str, ...],
    expected: list[str],
) -> None:
    # 01/02/2024 matches both formats; 13/01 and 01/13 match one each.
    path = write_file("orders.csv", "id;d\n1;01/02/2024\n2;13/01/2024\n3;01/13/2024\n")

    result = ingest(
        catalog, "orders", [path], settings=contract_settings("orders", *formats)
    )

    assert result.quarantined == 0
    assert result.warnings == []
    assert dates_of(catalog, result) == expected


def test_contract_format_list_gives_timestamp(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("at.csv", "id;d\n1;05.01.2024 10:30\n2;06.01.2024\n")
    settings = contract_settings("at", "%d.%m.%Y %H:%M", "%d.%m.%Y", kind="TIMESTAMP")

    result = ingest(catalog, "at", [path], settings=settings)

    assert result.version.schema == {"id": "BIGINT", "d": "TIMESTAMP"}
    assert dates_of(catalog, result) == [
        "2024-01-05 10:30:00",
        "2024-01-06 00:00:00",
    ]


def test_contract_format_list_in_json_lines(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file(
        "mixed.jsonl",
        '{"id": 1, "d": "05.01.2024"}\n{"id": 2, "d": "06/01/2024"}\n'
        '{"id": 3, "d": "Jan 7 2024"}\n',
    )
    settings = contract_settings("mixed_json", *EURO_FORMATS)

    result = ingest(catalog, "mixed_json", [path], settings=settings)

    assert dates_of(catalog, result) == ["2024-01-05", "2024-01-06"]
    rows = list_quarantine(catalog, "mixed_json")
    assert [(row.line, row.column, row.value) for row in rows] == [
        (3, "d", "Jan 7 2024")
    ]
    assert "write it in the date format '%d.%m.%Y' or '%d/%m/%Y'" in rows[0].reason


ISO_MIXED = DatasetConfig(name="iso_mixed", date_formats=("%d.%m.%Y", "%m/%d/%Y"))
"""Allowed formats of both orders, which a column may mix with ISO 8601."""


def test_iso_mixed_with_format_gives_date(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("m.csv", "id,m\n1,13.01.2024\n2,2024-03-01\n3,02/14/2024\n")

    result = ingest(catalog, "iso_mixed", [path], settings=ISO_MIXED)

    assert result.version.schema == {"id": "BIGINT", "m": "DATE"}
    assert dates_of(catalog, result, "m") == ["2024-01-13", "2024-03-01", "2024-02-14"]
    assert result.warnings == []


def test_iso_time_mixed_with_format_gives_timestamp(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("at.csv", "at\n05.01.2024 10:30\n2024-01-06T11:00:00\n")
    settings = DatasetConfig(name="at", date_formats=("%d.%m.%Y %H:%M",))

    result = ingest(catalog, "at", [path], settings=settings)

    assert result.version.schema == {"at": "TIMESTAMP"}
    assert dates_of(catalog, result, "at") == [
        "2024-01-05 10:30:00",
        "2024-01-06 11:00:00",
    ]


def test_iso_clash_with_format_warned(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("ydm.csv", "d\n2024-13-01\n2024-01-31\n2024-03-01\n")
    settings = DatasetConfig(name="ydm", date_formats=("%Y-%d-%m",))

    result = ingest(catalog, "ydm", [path], settings=settings)

    assert result.version.schema == {"d": "VARCHAR"}
    assert (
        "or one of them and ISO 8601, read as different dates" in (result.warnings[0])
    )


def test_append_iso_onto_format_column(catalog: Catalog, write_file: WriteFile) -> None:
    first = write_file("first.csv", "id,m\n1,13.01.2024\n")
    second = write_file("second.csv", "id,m\n7,2024-05-01\n8,14.02.2024\n")
    ingest(catalog, "iso_mixed", [first], settings=ISO_MIXED)

    result = ingest(catalog, "iso_mixed", [second], mode="append", settings=ISO_MIXED)

    assert (result.accepted, result.quarantined) == (2, 0)
    assert result.version.schema == {"id": "BIGINT", "m": "DATE"}
    assert dates_of(catalog, result, "m") == ["2024-01-13", "2024-05-01", "2024-02-14"]
    assert result.warnings == []


def test_append_to_later_column_not_new(
    catalog: Catalog, write_file: WriteFile
) -> None:
    ids = write_file("ids.csv", "id\n1\n")
    dated = write_file("dated.csv", "id,m\n2,13.01.2024\n")
    mixed = write_file("mixed.csv", "id,m\n7,2024-05-01\n8,14.02.2024\n")
    ingest(catalog, "iso_mixed", [ids], settings=ISO_MIXED)
    ingest(catalog, "iso_mixed", [dated], mode="append", settings=ISO_MIXED)

    result = ingest(catalog, "iso_mixed", [mixed], mode="append", settings=ISO_MIXED)

    assert result.version.schema == {"id": "BIGINT", "m": "DATE"}
    assert result.warnings == []


def test_retyped_later_column_named(catalog: Catalog, write_file: WriteFile) -> None:
    ids = write_file("ids.csv", "id\n1\n")
    dated = write_file("dated.csv", "id,m\n2,13.01.2024\n")
    text = write_file("text.csv", "id,m\n7,2024-05-01\n8,soon\n")
    ingest(catalog, "iso_mixed", [ids], settings=ISO_MIXED)
    parent = ingest(catalog, "iso_mixed", [dated], mode="append", settings=ISO_MIXED)

    result = ingest(catalog, "iso_mixed", [text], mode="append", settings=ISO_MIXED)

    reference = f"iso_mixed@{parent.version.version}"
    assert result.version.schema == {"id": "BIGINT", "m": "VARCHAR"}
    assert not any("new column" in warning for warning in result.warnings)
    assert (
        f"column 'm' is DATE in {reference} and VARCHAR in these files, so the new "
        "version stores it as VARCHAR; declare its type in "
        "[datasets.iso_mixed.contract] to keep DATE"
    ) in "\n".join(result.warnings)


def test_append_misfit_hint_names_iso(catalog: Catalog, write_file: WriteFile) -> None:
    first = write_file("first.csv", "id,m\n1,13.01.2024\n")
    second = write_file("second.csv", "id,m\n2,2024-01-05\n3,5.1.24\n")
    ingest(catalog, "iso_mixed", [first], settings=ISO_MIXED)

    result = ingest(catalog, "iso_mixed", [second], mode="append", settings=ISO_MIXED)

    (row,) = list_quarantine(catalog, "iso_mixed")
    assert (result.accepted, result.quarantined) == (1, 1)
    assert row.line == 3
    assert row.reason.startswith(
        'value "5.1.24" is not a valid DATE; write it in ISO 8601 or in the '
        "date format '%d.%m.%Y', whose %Y is a year of four digits"
    )


@pytest.mark.parametrize(
    "values",
    [
        ["01/05/2024 10:30", "01/06/2024 11:30"],
        ["01/05/2024 10:30 PM", "01/06/2024 11:30 AM"],
        ["05.01.2024 10:30:15", "06.01.2024"],
    ],
    ids=["24-hour", "12-hour", "with-date-only"],
)
def test_date_times_not_allowed_warned(
    catalog: Catalog, write_file: WriteFile, values: list[str]
) -> None:
    path = write_file("at.csv", "at\n" + "\n".join(values) + "\n")

    result = ingest(catalog, "at", [path])

    assert result.version.schema == {"at": "VARCHAR"}
    assert result.warnings == [
        "column 'at' looks like dates and times in a format that is not allowed "
        "(allowed: none), so it stays text; add its format, such as "
        "'%d/%m/%Y %H:%M', or '%m/%d/%Y %I:%M %p' for a 12-hour clock, to "
        "[datasets.at] date_formats"
    ]


def test_date_times_in_allowed_format_typed(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("at.csv", "at\n01/05/2024 10:30 PM\n01/06/2024 11:30 AM\n")
    settings = DatasetConfig(name="at", date_formats=("%m/%d/%Y %I:%M %p",))

    result = ingest(catalog, "at", [path], settings=settings)

    assert result.version.schema == {"at": "TIMESTAMP"}
    assert dates_of(catalog, result, "at") == [
        "2024-01-05 22:30:00",
        "2024-01-06 11:30:00",
    ]
    assert result.warnings == []
