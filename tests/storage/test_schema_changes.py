"""Schema changes against a contract: only a change of the values is reported."""

from __future__ import annotations

from support import WriteFile

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.storage import Catalog, ingest, scan_sql


def test_whole_numbers_into_double_not_reported(
    catalog: Catalog, write_file: WriteFile
) -> None:
    contract = ContractConfig(columns={"value": ColumnRule(type="DOUBLE")})
    settings = DatasetConfig(name="m", contract=contract)
    path = write_file("m.csv", "id,value\n1,2\n2,3\n")

    result = ingest(catalog, "m", [path], settings=settings)

    assert result.warnings == []
    assert result.version.schema["value"] == "DOUBLE"
    rows = catalog.db.execute(scan_sql(result.version)).fetchall()
    assert rows == [(1, 2.0), (2, 3.0)]


def test_decimals_into_bigint_reported(catalog: Catalog, write_file: WriteFile) -> None:
    ingest(catalog, "m", [write_file("a.csv", "value\n1\n")])

    result = ingest(catalog, "m", [write_file("b.csv", "value\n1.5\n2\n")])

    assert result.warnings == [
        "column 'value' is BIGINT in the contract and DOUBLE in the file; values "
        "are converted to BIGINT, and a value that does not convert is quarantined"
    ]
    assert result.quarantined == 1


def test_partial_contract_reports_only_new_columns(
    catalog: Catalog, write_file: WriteFile
) -> None:
    contract = ContractConfig(columns={"value": ColumnRule(type="DOUBLE")})
    settings = DatasetConfig(name="m", contract=contract)
    path = write_file("a.csv", "id,value\n1,2.5\n")

    first = ingest(catalog, "m", [path], settings=settings)
    later = ingest(
        catalog,
        "m",
        [write_file("b.csv", "id,value,site\n2,3.5,x\n")],
        settings=settings,
    )

    assert first.warnings == []
    assert later.warnings == ["new column 'site' of type VARCHAR"]


def test_declared_column_gets_no_inference_advice(
    catalog: Catalog, write_file: WriteFile
) -> None:
    contract = ContractConfig(
        columns={
            "code": ColumnRule(type="BIGINT"),
            "day": ColumnRule(type="DATE", date_format="%d/%m/%Y"),
        }
    )
    settings = DatasetConfig(name="m", contract=contract)
    lines = [f"{i},01/02/2024" for i in range(3000)] + ["ABC,03/04/2024"]
    path = write_file("m.csv", "code,day\n" + "\n".join(lines) + "\n")

    result = ingest(catalog, "m", [path], settings=settings)

    # The file's text in the declared date format is no change; text in a
    # BIGINT column is.
    assert result.warnings == [
        "column 'code' is BIGINT in the contract and VARCHAR in the file; values "
        "are converted to BIGINT, and a value that does not convert is quarantined"
    ]
    assert result.quarantined == 1
    assert result.version.schema == {"code": "BIGINT", "day": "DATE"}


def test_new_column_of_quarantined_rows_left_out(
    catalog: Catalog, write_file: WriteFile
) -> None:
    ingest(catalog, "m", [write_file("a.jsonl", '{"id":1,"v":1.5}\n')])

    later = ingest(
        catalog, "m", [write_file("b.csv", "id,newc,v\n2,5,abc\n")], mode="append"
    )

    assert (later.accepted, later.quarantined) == (0, 1)
    assert "new column 'newc' of type BIGINT" in later.warnings
    assert later.version.schema == {"id": "BIGINT", "v": "DOUBLE"}
    rows = catalog.db.execute(scan_sql(later.version)).fetchall()
    assert rows == [(1, 1.5)]


def test_later_column_keeps_its_type(catalog: Catalog, write_file: WriteFile) -> None:
    ingest(catalog, "r", [write_file("a.jsonl", '{"id": 1}\n')])
    added = write_file(
        "b.jsonl", '{"id": 2, "celsius": 1.5, "taken_on": "2024-01-01"}\n'
    )
    ingest(catalog, "r", [added], mode="append")
    retyped = write_file(
        "c.jsonl",
        '{"id": 3, "celsius": {"x": 1}, "taken_on": "01.01.2024"}\n'
        '{"id": 4, "celsius": 1e999}\n'
        '{"id": 5, "celsius": 2.5, "taken_on": "2024-02-01"}\n',
    )

    later = ingest(catalog, "r", [retyped], mode="append")

    assert later.version.schema == {
        "id": "BIGINT",
        "celsius": "DOUBLE",
        "taken_on": "DATE",
    }
    assert (later.accepted, later.quarantined) == (1, 2)
    assert not any(w.startswith("new column") for w in later.warnings)
    assert (
        "column 'celsius' is DOUBLE in the contract and VARCHAR in the file; values "
        "are converted to DOUBLE, and a value that does not convert is quarantined"
    ) in later.warnings
    rows = catalog.db.execute(scan_sql(later.version) + " ORDER BY id").fetchall()
    assert [row[:2] for row in rows] == [(1, None), (2, 1.5), (5, 2.5)]


def test_text_column_takes_appended_dates(
    catalog: Catalog, write_file: WriteFile
) -> None:
    ingest(catalog, "t", [write_file("a.jsonl", '{"id": 1}\n')])
    text = write_file("b.jsonl", '{"id": 2, "taken_on": "01.01.2024"}\n')
    ingest(catalog, "t", [text], mode="append")
    dates = write_file("c.jsonl", '{"id": 3, "taken_on": "2024-01-02"}\n')

    later = ingest(catalog, "t", [dates], mode="append")

    assert later.version.schema["taken_on"] == "VARCHAR"
    assert (later.accepted, later.quarantined) == (1, 0)
    rows = catalog.db.execute(scan_sql(later.version) + " ORDER BY id").fetchall()
    assert rows == [(1, None), (2, "01.01.2024"), (3, "2024-01-02")]
