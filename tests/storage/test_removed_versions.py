"""Files of versions that retention removed, ingested again."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from support import WriteFile

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.storage import (
    Catalog,
    IngestResult,
    ingest,
    list_quarantine,
    scan_sql,
)

SETTINGS = DatasetConfig(
    name="d",
    keep_versions=2,
    contract=ContractConfig(
        columns={
            "k": ColumnRule(type="BIGINT"),
            "v": ColumnRule(type="VARCHAR", allowed=("a", "b", "c")),
        }
    ),
)


def rows(catalog: Catalog, result: IngestResult) -> list[tuple[object, ...]]:
    return catalog.db.execute(scan_sql(result.version) + " ORDER BY ALL").fetchall()


def write_three(write_file: WriteFile) -> list[Path]:
    return [
        write_file("a.csv", "k,v\n1,a\n2,x\n"),
        write_file("b.csv", "k,v\n3,b\n"),
        write_file("c.csv", "k,v\n4,c\n"),
    ]


def test_append_of_removed_files_noted(
    catalog: Catalog, write_file: WriteFile, caplog: pytest.LogCaptureFixture
) -> None:
    a, b, c = write_three(write_file)
    first = ingest(catalog, "d", [a], "replace", SETTINGS)
    ingest(catalog, "d", [b], "replace", SETTINGS)
    third = ingest(catalog, "d", [c], "replace", SETTINGS)
    assert third.removed == [first.version.version]

    with caplog.at_level(logging.INFO, logger="appliance.storage._retention"):
        again = ingest(catalog, "d", [a], "append", SETTINGS)

    assert again.created
    assert rows(catalog, again) == [(1, "a"), (4, "c")]
    note = (
        f"{a} was ingested before as d@{first.version.version}, which the "
        "retention rule removed, so its rows are stored again in this version"
    )
    assert again.notes == [note]
    logged = [r.getMessage() for r in caplog.records]
    assert (
        "ingest stored files of a removed version again dataset=d "
        f"version={again.version.version} removed_version={first.version.version} "
        f"file={a}"
    ) in logged


def test_append_of_removed_ancestor_unchanged(
    catalog: Catalog, write_file: WriteFile
) -> None:
    a, b, c = write_three(write_file)
    first = ingest(catalog, "d", [a], "replace", SETTINGS)
    ingest(catalog, "d", [b], "append", SETTINGS)
    latest = ingest(catalog, "d", [c], "append", SETTINGS)
    assert latest.removed == [first.version.version]

    again = ingest(catalog, "d", [a], "append", SETTINGS)

    assert not again.created
    assert again.version.version == latest.version.version
    assert again.stored_in == first.version.version
    assert rows(catalog, again) == [(1, "a"), (3, "b"), (4, "c")]
    note = (
        f"d@{first.version.version} was removed by the retention rule, and the "
        "latest version still reads its rows"
    )
    assert again.notes == [note]


def test_replace_recreating_removed_version(
    catalog: Catalog, write_file: WriteFile
) -> None:
    a, b, c = write_three(write_file)
    first = ingest(catalog, "d", [a], "replace", SETTINGS)
    ingest(catalog, "d", [b], "replace", SETTINGS)
    ingest(catalog, "d", [c], "replace", SETTINGS)

    again = ingest(catalog, "d", [a], "replace", SETTINGS)

    assert again.created
    assert again.version.version == first.version.version
    assert rows(catalog, again) == [(1, "a")]
    assert len(again.notes) == 1
    quarantined = list_quarantine(catalog, "d")
    assert [(q.version, q.line, q.value) for q in quarantined] == [
        (first.version.version, 3, "x")
    ]


def test_cli_prints_removed_version_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from appliance.cli import main

    config = tmp_path / "c.toml"
    home = tmp_path / "home"
    config.write_text(
        f'[storage]\nhome = "{home}"\n\n[datasets.d]\nkeep_versions = 1\n'
    )
    a = tmp_path / "a.csv"
    a.write_text("k,v\n1,a\n")
    b = tmp_path / "b.csv"
    b.write_text("k,v\n2,b\n")
    assert main(["--config", str(config), "ingest", "d", str(a)]) == 0
    first = capsys.readouterr().out.split()[0]
    assert main(["--config", str(config), "ingest", "d", str(b)]) == 0
    assert capsys.readouterr().out.endswith(f"removed {first} (retention)\n")

    status = main(["--config", str(config), "ingest", "d", str(a), "--mode", "append"])

    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        f"note: {a} was ingested before as {first}, which the retention rule "
        "removed, so its rows are stored again in this version"
    ) in lines
