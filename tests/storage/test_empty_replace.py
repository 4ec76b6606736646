"""A replace that would leave a dataset with no rows needs --force."""

from __future__ import annotations

import pytest
from support import WriteFile

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.errors import IngestError
from appliance.storage import Catalog, ingest, latest_version

RANGED = DatasetConfig(
    "t", contract=ContractConfig(columns={"v": ColumnRule(type="BIGINT", max=10)})
)


def test_header_only_replace_rejected(catalog: Catalog, write_file: WriteFile) -> None:
    first = ingest(catalog, "t", [write_file("full.csv", "id,v\n1,2\n2,3\n")])

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "t", [write_file("header.csv", "id,v\n")])

    message = str(raised.value)
    assert "header.csv has no row to store; as a replace" in message
    assert f"dataset 't' (version {first.version.version} has 2 rows)" in message
    assert message.endswith("or ingest with --force to store an empty version")
    assert latest_version(catalog, "t") == first.version


def test_all_quarantined_replace_names_reasons(
    catalog: Catalog, write_file: WriteFile
) -> None:
    ingest(catalog, "t", [write_file("ok.csv", "id,v\n1,2\n")], settings=RANGED)

    with pytest.raises(IngestError) as raised:
        ingest(
            catalog, "t", [write_file("bad.csv", "id,v\n1,50\n2,60\n")], settings=RANGED
        )

    message = str(raised.value)
    assert "bad.csv has no row to store: all 2 rows break the contract" in message
    assert "bad.csv, line 2, column 'v': value \"50\" is above the maximum 10" in (
        message
    )
    assert "has 1 row)" in message


def test_empty_replace_stored_with_force(
    catalog: Catalog, write_file: WriteFile
) -> None:
    ingest(catalog, "t", [write_file("full.csv", "id,v\n1,2\n")])

    result = ingest(catalog, "t", [write_file("header.csv", "id,v\n")], force=True)

    assert result.version.row_count == 0
    assert result.warnings[-1].endswith("stored because of --force")
    assert latest_version(catalog, "t") == result.version


def test_empty_append_and_first_version_allowed(
    catalog: Catalog, write_file: WriteFile
) -> None:
    header = write_file("header.csv", "id,v\n")
    contract = ContractConfig(
        columns={"id": ColumnRule(type="BIGINT"), "v": ColumnRule(type="BIGINT")}
    )
    settings = DatasetConfig("t", contract=contract)

    first = ingest(catalog, "t", [header], settings=settings)
    ingest(catalog, "t", [write_file("one.csv", "id,v\n1,2\n")], settings=settings)
    appended = ingest(
        catalog, "t", [write_file("h2.csv", "id,v\n")], "append", settings=settings
    )

    assert first.version.row_count == 0
    assert appended.version.row_count == 1
