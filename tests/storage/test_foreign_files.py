"""Files that share no column with their dataset are rejected unless forced."""

from __future__ import annotations

import pytest
from support import WriteFile

from appliance.errors import IngestError
from appliance.storage import Catalog, ingest, list_versions

FIRST = "origin,month,temp\nEWR,1,39.0\nJFK,1,40.0\n"
FOREIGN = "id,site\n1,north\n2,south\n"


def _first(catalog: Catalog, write_file: WriteFile) -> str:
    return ingest(catalog, "weather", [write_file("a.csv", FIRST)]).version.version


@pytest.mark.parametrize("mode", ["append", "replace"])
def test_foreign_file_rejected(
    catalog: Catalog, write_file: WriteFile, mode: str
) -> None:
    first = _first(catalog, write_file)
    foreign = write_file("other.csv", FOREIGN)

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "weather", [foreign], mode)

    message = str(raised.value)
    assert "other.csv has none of the columns of dataset 'weather'" in message
    assert "('origin', 'month', 'temp')" in message
    assert message.endswith("or ingest with --force to store it anyway")
    assert [v.version for v in list_versions(catalog, "weather")] == [first]


def test_forced_foreign_file_warns(catalog: Catalog, write_file: WriteFile) -> None:
    _first(catalog, write_file)
    foreign = write_file("other.csv", FOREIGN)

    result = ingest(catalog, "weather", [foreign], "append", force=True)

    assert result.created
    assert result.version.row_count == 4
    assert any(
        "has none of the columns" in w and "stored because of --force" in w
        for w in result.warnings
    )


def test_file_sharing_one_column_accepted(
    catalog: Catalog, write_file: WriteFile
) -> None:
    _first(catalog, write_file)
    partial = write_file("b.csv", "origin,wind\nLGA,5\n")

    result = ingest(catalog, "weather", [partial], "append")

    assert result.created
    assert result.version.row_count == 3
