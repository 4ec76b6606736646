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

    assert result.warnings == ["new column 'id' of type BIGINT"]
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
