"""Files of a partitioned dataset must have its ``partition_by`` column.

Without it every row would be stored in the partition of missing values,
so every ingest rejects such files, the first and each later one.
"""

from __future__ import annotations

import pytest
from support import WriteFile

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.errors import IngestError
from appliance.storage import Catalog, ingest, list_versions

FLIGHTS = DatasetConfig(name="flights", partition_by="month")


@pytest.mark.parametrize("mode", ["append", "replace"])
def test_later_file_without_partition_rejected(
    catalog: Catalog, write_file: WriteFile, mode: str
) -> None:
    first = write_file("first.csv", "month,delay\n1,5\n2,3\n")
    ingest(catalog, "flights", [first], settings=FLIGHTS)
    later = write_file("nomonth.csv", "delay\n7\n")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "flights", [later], mode=mode, settings=FLIGHTS)

    message = str(raised.value)
    assert "partition_by 'month' of dataset 'flights' is not a column" in message
    assert "their columns: delay." in message
    assert "Add the column to the files" in message
    assert len(list_versions(catalog, "flights")) == 1


def test_declared_contract_without_partition_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    contract = ContractConfig(
        columns={"month": ColumnRule(type="BIGINT"), "delay": ColumnRule(type="BIGINT")}
    )
    settings = DatasetConfig(name="flights", partition_by="month", contract=contract)
    path = write_file("nomonth.csv", "delay\n7\n")

    with pytest.raises(IngestError, match="partition_by 'month'"):
        ingest(catalog, "flights", [path], settings=settings)

    assert list_versions(catalog, "flights") == []
