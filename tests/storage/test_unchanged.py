"""Files ingested before, under the contract declared now or another one."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import WriteFile

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.errors import IngestError
from appliance.storage import (
    Catalog,
    ingest,
    latest_version,
    list_quarantine,
    list_versions,
    scan_sql,
)
from appliance.storage._unchanged import contract_fingerprint


def settings(minimum: float | None = None) -> DatasetConfig:
    rules = {
        "id": ColumnRule(type="BIGINT"),
        "x": ColumnRule(type="DOUBLE", min=minimum),
    }
    return DatasetConfig(name="v", contract=ContractConfig(columns=rules))


def test_replace_under_new_contract_rechecked(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("a.csv", "id,x\n1,-1.5\n2,2.5\n")
    first = ingest(catalog, "v", [path], "replace", settings())

    tighter = ingest(catalog, "v", [path], "replace", settings(minimum=0))
    again = ingest(catalog, "v", [path], "replace", settings(minimum=0))

    assert (first.accepted, first.quarantined) == (2, 0)
    assert tighter.created
    assert tighter.version.version != first.version.version
    assert (tighter.accepted, tighter.quarantined) == (1, 1)
    assert [(q.line, q.column) for q in list_quarantine(catalog, "v")] == [(2, "x")]
    assert not again.created
    assert again.version.version == tighter.version.version


def test_replace_under_looser_contract_accepts(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("a.csv", "id,x\n1,-1.5\n2,2.5\n")
    ingest(catalog, "v", [path], "replace", settings(minimum=0))

    looser = ingest(catalog, "v", [path], "replace", settings())

    assert looser.created
    assert (looser.accepted, looser.quarantined) == (2, 0)


def test_append_again_breaking_new_contract_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    ingest(catalog, "v", [write_file("a.csv", "id,x\n1,1.5\n")], "replace", settings())
    more = write_file("b.csv", "id,x\n2,-2.5\n3,3.5\n")
    appended = ingest(catalog, "v", [more], "append", settings())

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "v", [more], "append", settings(minimum=0))

    reference = f"v@{appended.version.version}"
    assert str(raised.value) == (
        f"{more}: these files were ingested before as {reference} under another "
        "contract, and 1 of their 2 stored rows break the current contract "
        f"({more}, line 2, column 'x': value \"-2.5\" is below the minimum 0); "
        "nothing was written, "
        "because appending the files again would store their other rows twice. To "
        "check every row against the current contract, ingest all of the "
        "dataset's files again in replace mode"
    )
    assert len(list_versions(catalog, "v")) == 2


def test_append_again_recheck_names_lines(
    catalog: Catalog, write_file: WriteFile
) -> None:
    ingest(catalog, "v", [write_file("a.csv", "id,x\n1,1.5\n")], "replace", settings())
    # Row 2 spans lines 2-3, and row 3 (line 4) is quarantined by either contract.
    text = 'id,x,note\n2,-2.5,"two\nlines"\n3,abc,c\n4,-1,d\n'
    appended = ingest(catalog, "v", [write_file("b.csv", text)], "append", settings())
    assert (appended.accepted, appended.quarantined) == (2, 1)
    moved = write_file("moved/b.csv", text)

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "v", [moved], "append", settings(minimum=0))

    message = str(raised.value)
    assert "2 of their 2 stored rows break the current contract" in message
    assert (
        f"({moved}, line 2, column 'x': value \"-2.5\" is below the minimum 0; "
        f"{moved}, line 5, column 'x': value \"-1\" is below the minimum 0)"
    ) in message
    assert len(list_versions(catalog, "v")) == 2


def test_append_again_keeping_new_contract_unchanged(
    catalog: Catalog, write_file: WriteFile
) -> None:
    ingest(catalog, "v", [write_file("a.csv", "id,x\n1,1.5\n")], "replace", settings())
    more = write_file("b.csv", "id,x\n2,2.5\n3,3.5\n")
    appended = ingest(catalog, "v", [more], "append", settings())

    again = ingest(catalog, "v", [more], "append", settings(minimum=0))

    assert not again.created
    assert again.version.version == appended.version.version
    assert again.warnings == [
        f"these files were ingested before as v@{appended.version.version} under "
        "another contract; its 2 rows from them were checked again and keep the "
        "current one"
    ]


def test_append_again_same_contract_unchanged(
    catalog: Catalog, write_file: WriteFile
) -> None:
    ingest(catalog, "v", [write_file("a.csv", "id,x\n1,1.5\n")], "replace", settings())
    more = write_file("b.csv", "id,x\n2,-2.5\n")
    ingest(catalog, "v", [more], "append", settings(minimum=0))

    again = ingest(catalog, "v", [more], "append", settings(minimum=0))

    assert not again.created
    assert again.warnings == []


def test_strict_again_after_quarantine_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("a.csv", "id,x\n1,-1.5\n2,2.5\n")
    first = ingest(catalog, "v", [path], "replace", settings(minimum=0))

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "v", [path], "replace", settings(minimum=0), strict=True)

    version = first.version.version
    assert str(raised.value) == (
        f"strict ingest of 'v' rejected: {path}: these files were ingested before "
        f"as v@{version}, where 1 row was quarantined; see 'appliance datasets "
        f"quarantine v --version {version}', fix the files and ingest them again"
    )


def test_contract_defaults_keep_fingerprint() -> None:
    plain = ContractConfig(columns={"x": ColumnRule(type="DOUBLE")})
    spelled = ContractConfig(
        columns={"x": ColumnRule(type="DOUBLE", nullable=True, allow_infinity=False)}
    )
    tighter = ContractConfig(columns={"x": ColumnRule(type="DOUBLE", min=0.0)})

    assert contract_fingerprint(plain) == contract_fingerprint(spelled)
    assert contract_fingerprint(plain) != contract_fingerprint(tighter)
    assert contract_fingerprint(None) is None


def latest_rows(catalog: Catalog, dataset: str) -> list[tuple[object, ...]]:
    version = latest_version(catalog, dataset)
    assert version is not None
    return catalog.db.execute(scan_sql(version) + " ORDER BY ALL").fetchall()


def test_replace_with_older_files_restores_them(
    catalog: Catalog, write_file: WriteFile
) -> None:
    a = write_file("a.csv", "k,v\n1,a\n2,b\n")
    b = write_file("b.csv", "k,v\n3,c\n")
    first = ingest(catalog, "d", [a])
    ingest(catalog, "d", [b])

    restored = ingest(catalog, "d", [a])
    again = ingest(catalog, "d", [a])

    assert restored.created
    assert restored.version.version != first.version.version
    assert latest_rows(catalog, "d") == [(1, "a"), (2, "b")]
    assert not again.created
    assert again.version.version == restored.version.version


def test_replace_after_append_drops_appended_rows(
    catalog: Catalog, write_file: WriteFile
) -> None:
    a = write_file("a.csv", "k,v\n1,a\n")
    ingest(catalog, "d", [a])
    ingest(catalog, "d", [write_file("b.csv", "k,v\n2,b\n")], "append")

    replaced = ingest(catalog, "d", [a])

    assert replaced.created
    assert latest_rows(catalog, "d") == [(1, "a")]


def test_append_of_replaced_files_stored_again(
    catalog: Catalog, write_file: WriteFile
) -> None:
    a = write_file("a.csv", "k,v\n1,a\n")
    ingest(catalog, "d", [a])
    ingest(catalog, "d", [write_file("b.csv", "k,v\n2,b\n")])

    appended = ingest(catalog, "d", [a], "append")
    again = ingest(catalog, "d", [a], "append")

    assert appended.created
    assert latest_rows(catalog, "d") == [(1, "a"), (2, "b")]
    assert not again.created
    assert again.version.version == appended.version.version


def test_append_of_ancestor_files_unchanged(
    catalog: Catalog, write_file: WriteFile
) -> None:
    a = write_file("a.csv", "k,v\n1,a\n")
    first = ingest(catalog, "d", [a])
    latest = ingest(catalog, "d", [write_file("b.csv", "k,v\n2,b\n")], "append")

    again = ingest(catalog, "d", [a], "append")

    assert not again.created
    assert again.version.version == latest.version.version
    assert again.version.row_count == 2
    assert again.stored_in == first.version.version
    assert latest_rows(catalog, "d") == [(1, "a"), (2, "b")]


def test_append_of_latest_files_names_latest(
    catalog: Catalog, write_file: WriteFile
) -> None:
    ingest(catalog, "d", [write_file("a.csv", "k,v\n1,a\n")])
    b = write_file("b.csv", "k,v\n2,b\n")
    latest = ingest(catalog, "d", [b], "append")

    again = ingest(catalog, "d", [b], "append")

    assert not again.created
    assert again.version.version == latest.version.version
    assert again.stored_in is None


def test_cli_append_of_ancestor_files_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from appliance.cli import main

    config = tmp_path / "c.toml"
    config.write_text(f'[storage]\nhome = "{tmp_path / "home"}"\n')
    a = tmp_path / "a.csv"
    a.write_text("k,v\n1,a\n")
    b = tmp_path / "b.csv"
    b.write_text("k,v\n2,b\n")
    assert main(["--config", str(config), "ingest", "d", str(a)]) == 0
    assert (
        main(["--config", str(config), "ingest", "d", str(b), "--mode", "append"]) == 0
    )
    with Catalog(tmp_path / "home", read_only=True) as catalog:
        first, latest = [v.version for v in reversed(list_versions(catalog, "d"))]
    capsys.readouterr()

    status = main(["--config", str(config), "ingest", "d", str(a), "--mode", "append"])

    assert status == 0
    assert capsys.readouterr().out == (
        f"d@{latest} rows=2 (unchanged: the latest version's rows already include "
        f"these files, first ingested as d@{first})\n"
    )
