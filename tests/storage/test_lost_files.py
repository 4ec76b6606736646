"""Lost lake folders written again by an ingest of the versions' source files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support import WriteFile

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.errors import IngestError
from appliance.storage import (
    Catalog,
    DatasetVersion,
    get_dataset_version,
    ingest,
    latest_version,
    list_quarantine,
    list_versions,
    lost_files_message,
    scan_sql,
)


def rows(catalog: Catalog, version: DatasetVersion) -> list[tuple]:
    return catalog.db.execute(f"{scan_sql(version)} ORDER BY ALL").fetchall()


def parquet_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.parquet"))


def sales(keep: int | None = None) -> DatasetConfig:
    rules = {"amount": ColumnRule(type="DOUBLE", min=0)}
    return DatasetConfig(
        name="sales",
        partition_by="region",
        contract=ContractConfig(columns=rules, unique_key=["id"]),
        keep_versions=keep,
    )


def test_lost_folder_rebuilt_by_ingest(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("a.csv", "id,region,amount\n1,north,1.5\n2,south,2\n")
    first = ingest(catalog, "sales", [path])
    before = rows(catalog, first.version)
    shutil.rmtree(catalog.lake / "sales")

    again = ingest(catalog, "sales", [path])

    assert again.rebuilt == {first.version.version: 1}
    assert not again.created
    assert again.version.version == first.version.version
    assert parquet_files(first.version.path) != []
    assert rows(catalog, latest_version(catalog, "sales")) == before
    assert [v.version for v in list_versions(catalog, "sales")] == [
        first.version.version
    ]


def test_rebuilt_version_unchanged_on_next_ingest(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("a.csv", "id,region,amount\n1,north,1.5\n")
    first = ingest(catalog, "sales", [path])
    shutil.rmtree(first.version.path)
    ingest(catalog, "sales", [path])

    third = ingest(catalog, "sales", [path])

    assert third.rebuilt == {}
    assert not third.created
    assert third.version.version == first.version.version


def test_lost_partition_rebuilt_keeps_quarantine(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file(
        "a.csv",
        "id,region,amount\n1,north,1.5\n2,south,2\n3,east,-4\n4,east,5\n",
    )
    first = ingest(catalog, "sales", [path], settings=sales())
    before = rows(catalog, first.version)
    shutil.rmtree(first.version.path / "region=south")

    again = ingest(catalog, "sales", [path], settings=sales())

    assert again.rebuilt == {first.version.version: 3}
    assert (first.accepted, first.quarantined) == (3, 1)
    assert rows(catalog, first.version) == before
    assert sorted(p.parent.name for p in parquet_files(first.version.path)) == [
        "region=east",
        "region=north",
        "region=south",
    ]
    assert len(list_quarantine(catalog, "sales")) == 1


def test_older_kept_version_rebuilt(catalog: Catalog, write_file: WriteFile) -> None:
    old = write_file("a.csv", "id,region,amount\n1,north,1.5\n")
    new = write_file("b.csv", "id,region,amount\n2,south,2.5\n")
    first = ingest(catalog, "sales", [old], settings=sales(keep=2))
    second = ingest(catalog, "sales", [new], settings=sales(keep=2))
    before = rows(catalog, first.version)
    shutil.rmtree(first.version.path)

    again = ingest(catalog, "sales", [old], settings=sales(keep=2))

    assert again.rebuilt == {first.version.version: 1}
    assert again.version.version == first.version.version
    assert latest_version(catalog, "sales").version == second.version.version
    assert len(list_versions(catalog, "sales")) == 2
    assert rows(catalog, first.version) == before


def test_append_with_inferred_contract_rebuilt(
    catalog: Catalog, write_file: WriteFile
) -> None:
    base = write_file("a.csv", "id,amount\n1,1.5\n")
    more = write_file("b.csv", "id,amount\n2,2.5\n3,oops\n")
    ingest(catalog, "sales", [base])
    second = ingest(catalog, "sales", [more], "append")
    before = rows(catalog, second.version)
    shutil.rmtree(second.version.path)

    again = ingest(catalog, "sales", [more], "append")

    assert (second.accepted, second.quarantined) == (1, 1)
    assert again.rebuilt == {second.version.version: 1}
    assert rows(catalog, second.version) == before


def test_append_waits_for_lost_parent(catalog: Catalog, write_file: WriteFile) -> None:
    base = write_file("a.csv", "id,region,amount\n1,north,1.5\n")
    more = write_file("b.csv", "id,region,amount\n2,south,2.5\n3,east,3\n")
    first = ingest(catalog, "sales", [base], settings=sales())
    second = ingest(catalog, "sales", [more], "append", sales())
    before = rows(catalog, second.version)
    shutil.rmtree(catalog.lake / "sales")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "sales", [more], "append", sales())
    assert not second.version.path.exists()
    parent = ingest(catalog, "sales", [base], settings=sales())
    child = ingest(catalog, "sales", [more], "append", sales())

    message = str(raised.value)
    assert f"version {second.version.version} appends to the rows" in message
    assert f"of version {first.version.version}" in message
    assert f"Rebuild version {first.version.version} first" in message
    assert f"({base.resolve()})" in message
    assert "nothing was written" in message
    assert parent.rebuilt == {first.version.version: 1}
    assert child.rebuilt == {second.version.version: 2}
    assert rows(catalog, latest_version(catalog, "sales")) == before


def test_append_with_lost_parent_only(catalog: Catalog, write_file: WriteFile) -> None:
    base = write_file("a.csv", "id,region,amount\n1,north,1.5\n")
    more = write_file("b.csv", "id,region,amount\n2,south,2.5\n")
    first = ingest(catalog, "sales", [base], settings=sales())
    ingest(catalog, "sales", [more], "append", sales())
    shutil.rmtree(first.version.path)

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "sales", [more], "append", sales())

    assert f"Rebuild version {first.version.version} first" in str(raised.value)


def test_removed_parent_folder_rebuilt(catalog: Catalog, write_file: WriteFile) -> None:
    base = write_file("a.csv", "id,region,amount\n1,north,1.5\n")
    more = write_file("b.csv", "id,region,amount\n2,south,2.5\n")
    first = ingest(catalog, "sales", [base], settings=sales(keep=1))
    second = ingest(catalog, "sales", [more], "append", sales(keep=1))
    before = rows(catalog, second.version)
    shutil.rmtree(first.version.path)

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "sales", [more], "append", sales(keep=1))
    again = ingest(catalog, "sales", [base], settings=sales(keep=1))

    assert second.removed == [first.version.version]
    assert f"Rebuild version {first.version.version} first" in str(raised.value)
    assert again.rebuilt == {first.version.version: 1}
    assert rows(catalog, second.version) == before
    assert [v.version for v in list_versions(catalog, "sales")] == [
        second.version.version
    ]


def test_rebuild_under_other_contract_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("a.csv", "id,region,amount\n1,north,1.5\n")
    first = ingest(catalog, "sales", [path], settings=sales())
    shutil.rmtree(first.version.path)
    looser = DatasetConfig(name="sales", partition_by="region")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "sales", [path], settings=looser)

    message = str(raised.value)
    assert message.startswith(f"{path}: these files are the sources of dataset")
    assert f"version {first.version.version}, whose lake files are lost" in message
    assert "the declared contract, the sensitive columns or max_line_bytes" in message
    assert "nothing was written" in message
    assert not first.version.path.exists()
    assert len(list_versions(catalog, "sales")) == 1


def test_rebuild_differing_rows_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("a.csv", "id,region,amount\n1,north,1.5\n2,south,2\n")
    first = ingest(catalog, "sales", [path])
    shutil.rmtree(first.version.path)
    # A catalog row that no longer matches what its files stage to.
    schema = {**first.version.schema, "amount": "BIGINT"}
    catalog.db.execute(
        "UPDATE dataset_versions SET schema_json = ? WHERE version = ?",
        [json.dumps(schema), first.version.version],
    )

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "sales", [path])

    message = str(raised.value)
    assert f"version {first.version.version} differ from the recorded" in message
    assert "column 'amount' DOUBLE, recorded BIGINT" in message
    assert not first.version.path.exists()


def test_lost_files_message_names_sources(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("a.csv", "id,region,amount\n1,north,1.5\n")
    ingest(catalog, "sales", [path])

    message = lost_files_message(get_dataset_version(catalog, "sales"))

    assert f"ingest its source files ({path.resolve()}) again" in message
    assert "which rebuilds the folder" in message
    assert "restore that folder from a backup" in message
