"""Ingest never changes a value by a lenient cast to the column's type.

DuckDB casts ``2.5`` to the BIGINT 3, ``0x10`` to 16, ``2024-01-01 10:00``
to a DATE without its time, ``10:00+05`` or ``10:00 Europe/Paris`` to a
TIMESTAMP without its offset or time zone name, and ``yes`` or ``t`` to the
BOOLEAN true. These tests put such values past the CSV sniffer's first rows,
where the typed read used to store them changed, and into declared columns.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.storage import Catalog, IngestResult, ingest, list_quarantine, scan_sql

WriteFile = Callable[[str, bytes | str], Path]
_SNIFFED_ROWS = 5000
"""Rows before the odd value: more than the 2,048 rows the sniffer reads."""


def rows_of(catalog: Catalog, result: IngestResult) -> list[tuple]:
    return catalog.db.execute(scan_sql(result.version)).fetchall()


def late_value_csv(write_file: WriteFile, name: str, first: str, late: str) -> Path:
    lines = [f"{i},{first}\n" for i in range(_SNIFFED_ROWS)]
    return write_file(name, "id,v\n" + "".join(lines) + f"{_SNIFFED_ROWS},{late}\n")


def test_late_fraction_kept_as_double(catalog: Catalog, write_file: WriteFile) -> None:
    path = late_value_csv(write_file, "frac.csv", "7", "2.5")

    result = ingest(catalog, "frac", [path])

    assert result.version.schema["v"] == "DOUBLE"
    assert rows_of(catalog, result)[-1] == (_SNIFFED_ROWS, 2.5)


def test_late_hex_kept_as_text(catalog: Catalog, write_file: WriteFile) -> None:
    path = late_value_csv(write_file, "hex.csv", "7", "0x10")

    result = ingest(catalog, "hex", [path])

    assert result.version.schema["v"] == "VARCHAR"
    assert rows_of(catalog, result)[-1] == (_SNIFFED_ROWS, "0x10")
    assert result.warnings == [
        f"column 'v' looks like BIGINT in the first rows of {path} but has '0x10' "
        f"at line {_SNIFFED_ROWS + 2}, so the whole column is read as text; fix "
        "that value, or declare the column's type in [datasets.hex.contract] to "
        "quarantine such rows instead"
    ]


def test_boolean_words_kept_as_written(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file(
        "flags.csv",
        "yes_no,y_n,t_f,on_off,bit,word,cased\n"
        "yes,Y,t,on,0,true,TRUE\n"
        "no,N,f,off,1,false,False\n"
        "Yes,y,T,ON,1,true,true\n",
    )

    result = ingest(catalog, "flags", [path])

    assert result.version.schema == {
        "yes_no": "VARCHAR",
        "y_n": "VARCHAR",
        "t_f": "VARCHAR",
        "on_off": "VARCHAR",
        "bit": "BIGINT",
        "word": "BOOLEAN",
        "cased": "BOOLEAN",
    }
    assert rows_of(catalog, result) == [
        ("yes", "Y", "t", "on", 0, True, True),
        ("no", "N", "f", "off", 1, False, False),
        ("Yes", "y", "T", "ON", 1, True, True),
    ]
    assert result.warnings == []


def test_boolean_words_read_on_typed_path(
    catalog: Catalog, write_file: WriteFile, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_file("words.csv", "id,flag\n1,yes\n2,no\n3,yes\n")

    with caplog.at_level(logging.DEBUG, logger="appliance.storage._loading"):
        result = ingest(catalog, "words", [path])

    assert result.version.schema == {"id": "BIGINT", "flag": "VARCHAR"}
    assert rows_of(catalog, result) == [(1, "yes"), (2, "no"), (3, "yes")]
    assert "typed read failed" not in caplog.text


def test_late_yes_kept_in_boolean_column(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = late_value_csv(write_file, "late.csv", "true", "yes")

    result = ingest(catalog, "late_yes", [path])

    assert result.version.schema["v"] == "VARCHAR"
    assert rows_of(catalog, result)[0] == (0, "true")
    assert rows_of(catalog, result)[-1] == (_SNIFFED_ROWS, "yes")
    assert result.warnings == [
        f"column 'v' looks like BOOLEAN in the first rows of {path} but has 'yes' "
        f"at line {_SNIFFED_ROWS + 2}, so the whole column is read as text; fix "
        "that value, or declare the column's type in [datasets.late_yes.contract] "
        "to quarantine such rows instead"
    ]


def test_json_yes_after_booleans_warned(
    catalog: Catalog, write_file: WriteFile
) -> None:
    lines = [{"b": i % 2 == 0} for i in range(_SNIFFED_ROWS)] + [{"b": "yes"}]
    path = write_file("b.jsonl", "".join(json.dumps(line) + "\n" for line in lines))

    result = ingest(catalog, "json_flags", [path])

    assert result.version.schema == {"b": "VARCHAR"}
    assert rows_of(catalog, result)[0] == ("true",)
    assert rows_of(catalog, result)[-1] == ("yes",)
    assert result.warnings == [
        f"column 'b' looks like BOOLEAN in the first rows of {path} but has 'yes' "
        f"at line {_SNIFFED_ROWS + 1}, so the whole column is read as text; fix "
        "that value, or declare the column's type in "
        "[datasets.json_flags.contract] to quarantine such rows instead"
    ]


def test_late_time_kept_in_date_column(catalog: Catalog, write_file: WriteFile) -> None:
    path = late_value_csv(write_file, "when.csv", "2024-01-01", "2024-01-02 10:30:00")

    result = ingest(catalog, "when", [path])

    assert result.version.schema["v"] == "TIMESTAMP"
    rows = rows_of(catalog, result)
    assert rows[0] == (0, dt.datetime(2024, 1, 1))
    assert rows[-1] == (_SNIFFED_ROWS, dt.datetime(2024, 1, 2, 10, 30))


def test_late_offset_kept_in_timestamp_column(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = late_value_csv(
        write_file, "zone.csv", "2024-01-01 10:00:00", "2024-01-01 10:00:00+05"
    )

    result = ingest(catalog, "zone", [path])

    assert result.version.schema["v"] == "TIMESTAMPTZ"
    last = rows_of(catalog, result)[-1][1]
    assert last == dt.datetime(2024, 1, 1, 5, tzinfo=dt.timezone.utc)


def test_exact_integers_stay_typed(catalog: Catalog, write_file: WriteFile) -> None:
    path = late_value_csv(write_file, "ints.csv", "-3", " +12 ")

    result = ingest(catalog, "ints", [path])

    assert result.version.schema["v"] == "BIGINT"
    assert rows_of(catalog, result)[-1] == (_SNIFFED_ROWS, 12)


def test_late_large_integer_kept_exact(catalog: Catalog, write_file: WriteFile) -> None:
    path = late_value_csv(write_file, "big.csv", "7", "9007199254740993")

    result = ingest(catalog, "big", [path])

    assert result.version.schema["v"] == "BIGINT"
    assert rows_of(catalog, result)[-1] == (_SNIFFED_ROWS, 2**53 + 1)


def test_late_non_finite_leaves_integers(
    catalog: Catalog, write_file: WriteFile
) -> None:
    # NaN and the infinities read as DOUBLE but are no integer, so the typed
    # read of the integer column fails and the text path decides the type.
    cases = {"nan": "not_a_number", "inf": "infinity", "-inf": "minus_infinity"}
    for late, dataset in cases.items():
        path = late_value_csv(write_file, f"{dataset}.csv", "7", late)

        result = ingest(catalog, dataset, [path])

        assert result.version.schema["v"] == "DOUBLE", late


def test_missing_value_keeps_integers(catalog: Catalog, write_file: WriteFile) -> None:
    path = late_value_csv(write_file, "gap.csv", "7", "")

    result = ingest(catalog, "gap", [path])

    assert result.version.schema["v"] == "BIGINT"
    assert rows_of(catalog, result)[-1] == (_SNIFFED_ROWS, None)


def test_late_negative_offset_kept(catalog: Catalog, write_file: WriteFile) -> None:
    path = late_value_csv(
        write_file, "west.csv", "2024-01-01 10:00:00", "2024-01-01 10:00:00-05"
    )

    result = ingest(catalog, "west", [path])

    assert result.version.schema["v"] == "TIMESTAMPTZ"
    last = rows_of(catalog, result)[-1][1]
    assert last == dt.datetime(2024, 1, 1, 15, tzinfo=dt.timezone.utc)


def test_late_zone_name_converted(catalog: Catalog, write_file: WriteFile) -> None:
    path = late_value_csv(
        write_file,
        "named.csv",
        "2024-01-01 10:00:00",
        "2013-07-01 05:00 America/New_York",
    )

    result = ingest(catalog, "named", [path])

    assert result.version.schema["v"] == "TIMESTAMPTZ"
    assert result.warnings == []
    last = rows_of(catalog, result)[-1][1]
    # New York is 4 hours behind UTC in July (daylight saving time).
    assert last == dt.datetime(2013, 7, 1, 9, tzinfo=dt.timezone.utc)


def test_zone_names_converted_from_start(
    catalog: Catalog, write_file: WriteFile
) -> None:
    text = "id,v\n1,2013-01-01 05:00 America/New_York\nx,2013-01-01 05:00 Asia/Tokyo\n"
    path = write_file("zones.csv", text)

    result = ingest(catalog, "zones", [path])

    assert result.version.schema == {"id": "VARCHAR", "v": "TIMESTAMPTZ"}
    assert rows_of(catalog, result) == [
        ("1", dt.datetime(2013, 1, 1, 10, tzinfo=dt.timezone.utc)),
        ("x", dt.datetime(2012, 12, 31, 20, tzinfo=dt.timezone.utc)),
    ]


def test_late_unknown_word_kept_as_text(
    catalog: Catalog, write_file: WriteFile
) -> None:
    for late in ("2024-01-02 10:00 PM", "2024-01-02 10:00 Nowhere/Land"):
        dataset = "pm" if late.endswith("PM") else "nowhere"
        path = late_value_csv(write_file, f"{dataset}.csv", "2024-01-01 10:00", late)

        result = ingest(catalog, dataset, [path])

        assert result.version.schema["v"] == "VARCHAR"
        assert rows_of(catalog, result)[-1] == (_SNIFFED_ROWS, late)
        assert len(result.warnings) == 1
        assert result.warnings[0].startswith(
            f"column 'v' looks like TIMESTAMP in the first rows of {path} but has "
            f"{late!r} at line {_SNIFFED_ROWS + 2}, so the whole column is read as "
            "text"
        )


def test_declared_timestamp_quarantines_zone_name(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = late_value_csv(
        write_file, "declared.csv", "2024-01-01 10:00", "2024-01-02 10:00 Europe/Paris"
    )
    contract = ContractConfig(columns={"v": ColumnRule(type="TIMESTAMP")})
    settings = DatasetConfig("declared", contract=contract)

    result = ingest(catalog, "declared", [path], settings=settings)

    assert result.accepted == _SNIFFED_ROWS
    rows = list_quarantine(catalog, "declared")
    assert [(row.line, row.column, row.value) for row in rows] == [
        (_SNIFFED_ROWS + 2, "v", "2024-01-02 10:00 Europe/Paris")
    ]
    assert rows[0].reason.startswith(
        'value "2024-01-02 10:00 Europe/Paris" is not a valid TIMESTAMP; write it '
        "in ISO 8601 without a UTC offset or time zone name"
    )


def test_declared_types_quarantine_changed_values(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file(
        "m.csv",
        "n,d,t\n"
        "1,2024-01-01,2024-01-01 10:00:00\n"
        "2.5,2024-01-02,2024-01-01 11:00:00\n"
        "0x10,2024-01-03 13:00:00,2024-01-01 12:00:00\n"
        "4,2024-01-04,2024-01-01 10:00:00+05\n",
    )
    contract = ContractConfig(
        columns={
            "n": ColumnRule(type="BIGINT"),
            "d": ColumnRule(type="DATE"),
            "t": ColumnRule(type="TIMESTAMP"),
        }
    )

    result = ingest(
        catalog, "m", [path], settings=DatasetConfig("m", contract=contract)
    )

    rows = list_quarantine(catalog, "m", result.version.version)
    found = [(row.line, row.column, row.value) for row in rows]
    assert found == [
        (3, "n", "2.5"),
        (4, "d", "2024-01-03 13:00:00"),
        (4, "n", "0x10"),
        (5, "t", "2024-01-01 10:00:00+05"),
    ]
    assert rows[0].reason == 'value "2.5" is not a valid BIGINT'
    assert rows[1].reason.startswith(
        'value "2024-01-03 13:00:00" is not a valid DATE; write it as an ISO 8601 '
        "date without a time"
    )
    assert rows[3].reason.startswith(
        'value "2024-01-01 10:00:00+05" is not a valid TIMESTAMP; write it in '
        "ISO 8601 without a UTC offset"
    )
    assert rows_of(catalog, result) == [
        (1, dt.date(2024, 1, 1), dt.datetime(2024, 1, 1, 10))
    ]


def test_declared_date_keeps_loose_dates(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("d.csv", "d\n 2024-01-02 \n2024-1-3\n")
    contract = ContractConfig(columns={"d": ColumnRule(type="DATE")})

    result = ingest(
        catalog, "d", [path], settings=DatasetConfig("d", contract=contract)
    )

    assert result.quarantined == 0
    assert rows_of(catalog, result) == [(dt.date(2024, 1, 2),), (dt.date(2024, 1, 3),)]


def test_declared_integer_quarantines_json_fraction(
    catalog: Catalog, write_file: WriteFile
) -> None:
    lines = [{"n": 1, "d": "2024-01-01"}, {"n": 2.5, "d": "2024-01-02 13:00:00"}]
    path = write_file("m.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    contract = ContractConfig(
        columns={"n": ColumnRule(type="BIGINT"), "d": ColumnRule(type="DATE")}
    )

    result = ingest(
        catalog, "j", [path], settings=DatasetConfig("j", contract=contract)
    )

    rows = list_quarantine(catalog, "j", result.version.version)
    assert sorted((row.line, row.column) for row in rows) == [(2, "d"), (2, "n")]
    assert rows_of(catalog, result) == [(1, dt.date(2024, 1, 1))]


def test_declared_integer_quarantines_parquet_fraction(
    catalog: Catalog, tmp_path: Path
) -> None:
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"n": pa.array([1.0, 2.5, 3.0])}), path)
    contract = ContractConfig(columns={"n": ColumnRule(type="BIGINT")})

    result = ingest(
        catalog, "p", [path], settings=DatasetConfig("p", contract=contract)
    )

    rows = list_quarantine(catalog, "p", result.version.version)
    assert [(row.line, row.value) for row in rows] == [(2, "2.5")]
    assert rows_of(catalog, result) == [(1,), (3,)]


def test_declared_boolean_quarantines_words(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("b.csv", "id,b\n1,true\n2,yes\n3,0\n4,1\n5,FALSE\n6,n\n")
    contract = ContractConfig(columns={"b": ColumnRule(type="BOOLEAN")})

    result = ingest(
        catalog, "b", [path], settings=DatasetConfig("b", contract=contract)
    )

    rows = list_quarantine(catalog, "b", result.version.version)
    assert [(row.line, row.value) for row in rows] == [(3, "yes"), (7, "n")]
    assert rows[0].reason == (
        'value "yes" is not a valid BOOLEAN; write it as true or false (in any '
        "case), 0 or 1"
    )
    assert result.accepted == 4
    assert rows_of(catalog, result) == [(1, True), (3, False), (4, True), (5, False)]


def test_declared_boolean_quarantines_other_numbers(
    catalog: Catalog, write_file: WriteFile, tmp_path: Path
) -> None:
    json_path = write_file("b.jsonl", '{"b": 0}\n{"b": 1}\n{"b": 2}\n')
    parquet_path = tmp_path / "b.parquet"
    pq.write_table(pa.table({"b": pa.array([1.0, 0.5, 0.0])}), parquet_path)
    contract = ContractConfig(columns={"b": ColumnRule(type="BOOLEAN")})

    for dataset, path, value, kept in (
        ("json_bits", json_path, "2", [(False,), (True,)]),
        ("parquet_bits", parquet_path, "0.5", [(True,), (False,)]),
    ):
        settings = DatasetConfig(dataset, contract=contract)
        result = ingest(catalog, dataset, [path], settings=settings)

        rows = list_quarantine(catalog, dataset, result.version.version)
        assert [row.value for row in rows] == [value]
        assert rows_of(catalog, result) == kept
