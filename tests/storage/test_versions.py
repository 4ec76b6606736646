"""Dataset versions: lineage, append and replace, partitions, retention, diff."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest
from support import WriteFile

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.errors import IngestError, NotFoundError, StorageError
from appliance.storage import (
    Catalog,
    IngestResult,
    diff_versions,
    get_dataset_version,
    ingest,
    list_quarantine,
    list_versions,
    scan_sql,
)


def test_same_bytes_same_version(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("a.csv", "x,y\n1,a\n")

    first = ingest(catalog, "d", [path])
    second = ingest(catalog, "d", [path])

    assert first.created
    assert not second.created
    assert second.version.version == first.version.version
    assert len(list_versions(catalog, "d")) == 1
    folders = os.listdir(catalog.lake / "d")
    assert folders == [f"version={first.version.version}"]


def test_replace_lineage_records_parent(
    catalog: Catalog, write_file: WriteFile
) -> None:
    first = ingest(catalog, "d", [write_file("a.csv", "x,y\n1,a\n2,b\n")])
    second = ingest(catalog, "d", [write_file("b.csv", "x,y\n3,c\n")])

    version = second.version
    assert version.parent == first.version.version
    assert version.mode == "replace"
    assert version.row_count == 1
    assert version.sources[0]["path"].endswith("b.csv")
    assert len(version.sources[0]["sha256"]) == 64
    assert version.schema == {"x": "BIGINT", "y": "VARCHAR"}
    assert catalog.db.execute(scan_sql(version)).fetchall() == [(3, "c")]


def test_append_reads_parent_rows(catalog: Catalog, write_file: WriteFile) -> None:
    first = ingest(catalog, "d", [write_file("a.csv", "x,y\n1,a\n2,b\n")])
    second = ingest(catalog, "d", [write_file("b.csv", "x,y\n3,c\n")], mode="append")

    version = second.version
    assert version.mode == "append"
    assert version.parent == first.version.version
    assert version.row_count == 3
    assert version.files == first.version.files + [str(version.path) + "/*.parquet"]
    rows = catalog.db.execute(scan_sql(version) + " ORDER BY x").fetchall()
    assert rows == [(1, "a"), (2, "b"), (3, "c")]
    # The parent stays readable and unchanged.
    parent_rows = catalog.db.execute(scan_sql(first.version)).fetchall()
    assert parent_rows == [(1, "a"), (2, "b")]


def test_append_all_quarantined_partitioned(
    catalog: Catalog, write_file: WriteFile
) -> None:
    settings = DatasetConfig(name="f", partition_by="month")
    first = ingest(
        catalog,
        "f",
        [write_file("a.csv", "month,delay\n1,5\n2,3\n")],
        settings=settings,
    )
    bad = write_file("b.csv", "month,delay\n3,late\n")

    second = ingest(catalog, "f", [bad], mode="append", settings=settings)

    assert second.accepted == 0
    assert second.quarantined == 1
    assert second.version.row_count == 2
    assert second.version.files == first.version.files
    rows = catalog.db.execute(scan_sql(second.version) + " ORDER BY delay").fetchall()
    assert rows == [(2, 3), (1, 5)]


def test_append_same_file_twice_unchanged(
    catalog: Catalog, write_file: WriteFile
) -> None:
    ingest(catalog, "d", [write_file("a.csv", "x\n1\n")])
    path = write_file("b.csv", "x\n2\n")
    appended = ingest(catalog, "d", [path], mode="append")

    again = ingest(catalog, "d", [path], mode="append")

    assert not again.created
    assert again.version.version == appended.version.version
    assert len(list_versions(catalog, "d")) == 2


def test_partition_column_missing_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("f.csv", "month,delay\n1,5\n2,3\n")
    settings = DatasetConfig(name="f", partition_by="monht")

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "f", [path], settings=settings)

    message = str(raised.value)
    assert "partition_by 'monht' of dataset 'f' is not a column of the files" in message
    assert "their columns: month, delay" in message
    assert "or correct [datasets.f] partition_by" in message
    assert list_versions(catalog, "f") == []


def test_partitioned_layout_readable_by_duckdb(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("f.csv", "month,delay\n1,5\n1,7\n2,3\n")
    settings = DatasetConfig(name="f", partition_by="month")

    result = ingest(catalog, "f", [path], settings=settings)

    folder = result.version.path
    assert sorted(os.listdir(folder)) == ["month=1", "month=2"]
    assert os.listdir(folder / "month=1") == ["data_0.parquet"]
    assert result.version.partition_by == "month"
    # A plain Hive reader sees the same rows, with version and month columns.
    files = f"{catalog.lake}/f/*/*/*.parquet"
    plain = duckdb.sql(
        f"SELECT version, month, delay FROM read_parquet('{files}', "
        "hive_partitioning=true) ORDER BY month, delay"
    ).fetchall()
    vid = result.version.version
    assert plain == [(vid, 1, 5), (vid, 1, 7), (vid, 2, 3)]
    rows = catalog.db.execute(scan_sql(result.version) + " ORDER BY delay").fetchall()
    assert rows == [(2, 3), (1, 5), (1, 7)]


def _quartiles(result: IngestResult, column: str) -> dict[str, float]:
    return result.version.report["quality"]["columns"][column]["quantiles"]


def test_partitioned_quartiles_same_each_ingest(
    tmp_path: Path, write_file: WriteFile
) -> None:
    # More rows than one Parquet row group (122,880), so that DuckDB writes
    # the partitions from several threads, in the order they finish.
    rows = 300_000
    lines = "".join(
        f"{i % 7},{(i * 7919) % 100_003},{i % 977 / 4}\n" for i in range(rows)
    )
    path = write_file("wide.csv", "region,amount,score\n" + lines)
    settings = DatasetConfig(name="w", partition_by="region")

    results = []
    for home in ("first", "second", "third"):
        with Catalog(tmp_path / home) as catalog:
            results.append(ingest(catalog, "w", [path], settings=settings))

    first = results[0]
    method = first.version.report["quality"]["methods"]["quantiles"]
    assert method.startswith("approximate, from a sample")
    for other in results[1:]:
        assert _quartiles(other, "amount") == _quartiles(first, "amount")
        assert _quartiles(other, "score") == _quartiles(first, "score")
    (exact,) = duckdb.sql(
        f"SELECT quantile_cont(amount, 0.5) FROM read_csv('{path}')"
    ).fetchall()[0]
    assert abs(_quartiles(first, "amount")["p50"] - exact) < 2_000


def test_partitioned_append_quartiles_sampled(
    catalog: Catalog, write_file: WriteFile
) -> None:
    settings = DatasetConfig(name="a", partition_by="region")
    first = write_file(
        "first.csv",
        "region,amount\n" + "".join(f"{i % 3},{i}\n" for i in range(15_000)),
    )
    # One row with a text amount breaks the stored BIGINT type.
    second = write_file(
        "second.csv",
        "region,amount\n"
        + "".join(f"{i % 3},{i + 15_000}\n" for i in range(15_000))
        + "1,lost\n",
    )
    ingest(catalog, "a", [first], settings=settings)

    result = ingest(catalog, "a", [second], mode="append", settings=settings)

    assert result.quarantined == 1
    assert result.version.row_count == 30_000
    quartiles = _quartiles(result, "amount")
    assert abs(quartiles["p25"] - 7_500) < 500
    assert abs(quartiles["p50"] - 15_000) < 500
    assert abs(quartiles["p75"] - 22_500) < 500


def _reorder_rows(version_path: Path) -> None:
    """Rewrite each partition file with its rows in another order, as another
    order of DuckDB's threads could have written them."""
    for path in version_path.glob("*/*.parquet"):
        copy = path.with_suffix(".tmp")
        duckdb.sql(
            f"COPY (SELECT * FROM read_parquet('{path}', hive_partitioning=false) "
            f"ORDER BY amount DESC, score) TO '{copy}' (FORMAT parquet)"
        )
        os.replace(copy, path)


def test_append_onto_partitioned_parent_same_report(
    tmp_path: Path, write_file: WriteFile
) -> None:
    settings = DatasetConfig(name="a", partition_by="region")
    parent = write_file(
        "parent.csv",
        "region,amount,score\n"
        + "".join(
            f"{i % 3},{(i * 7919) % 30_011},{i % 977 / 4}\n" for i in range(30_000)
        ),
    )
    child = write_file(
        "child.csv",
        "region,amount,score\n"
        + "".join(f"{i % 3},{i * 3},{i % 13}\n" for i in range(5_000)),
    )

    reports = []
    for home, reorder in (("first", False), ("second", True)):
        with Catalog(tmp_path / home) as catalog:
            catalog.db.execute("SET threads = 4")
            first = ingest(catalog, "a", [parent], settings=settings)
            if reorder:
                _reorder_rows(first.version.path)
            result = ingest(catalog, "a", [child], mode="append", settings=settings)
        reports.append(result.version.report["quality"])

    assert reports[0]["methods"]["quantiles"].startswith("approximate, from a sample")
    assert reports[0]["methods"]["quantiles"].endswith(
        "chosen by a hash of the row's position, or of its values for the "
        "appended parent's rows"
    )
    assert reports[0] == reports[1]
    (exact,) = duckdb.sql(
        f"SELECT quantile_cont(amount, 0.5) FROM read_csv(['{parent}', '{child}'])"
    ).fetchall()[0]
    assert abs(reports[0]["columns"]["amount"]["quantiles"]["p50"] - exact) < 1_000


def test_retention_keeps_newest(catalog: Catalog, write_file: WriteFile) -> None:
    settings = DatasetConfig(name="d", keep_versions=2)
    ids = []
    for i in range(3):
        path = write_file(f"{i}.csv", f"x\n{i}\n")
        ids.append(ingest(catalog, "d", [path], settings=settings).version.version)

    kept = [v.version for v in list_versions(catalog, "d")]

    assert kept == [ids[2], ids[1]]
    assert not (catalog.lake / "d" / f"version={ids[0]}").exists()
    with pytest.raises(NotFoundError, match="was removed by the retention rule"):
        get_dataset_version(catalog, f"d@{ids[0]}")


def test_retention_keeps_files_of_append_chain(
    catalog: Catalog, write_file: WriteFile
) -> None:
    settings = DatasetConfig(name="d", keep_versions=1)
    base = ingest(catalog, "d", [write_file("0.csv", "x\n0\n")], settings=settings)
    child = ingest(
        catalog, "d", [write_file("1.csv", "x\n1\n")], "append", settings
    ).version

    assert [v.version for v in list_versions(catalog, "d")] == [child.version]
    assert base.version.path.exists()
    rows = catalog.db.execute(scan_sql(child) + " ORDER BY x").fetchall()
    assert rows == [(0,), (1,)]


def test_missing_keys_repeat_no_key(catalog: Catalog, write_file: WriteFile) -> None:
    contract = ContractConfig(
        columns={"id": ColumnRule(type="BIGINT")}, unique_key=("id",)
    )
    settings = DatasetConfig(name="k", contract=contract)
    text = "id,v\n1,a\nabc,b\n,c\n,d\n2,e\n1,f\n"

    result = ingest(catalog, "k", [write_file("k.csv", text)], settings=settings)

    found = [(r.line, r.column, r.reason) for r in list_quarantine(catalog, "k")]
    assert found == [
        (3, "id", 'value "abc" is not a valid BIGINT'),
        (7, "id", "duplicate unique key (id=1)"),
    ]
    assert result.accepted == 4


def test_unique_key_skips_broken_rows(catalog: Catalog, write_file: WriteFile) -> None:
    contract = ContractConfig(
        columns={"id": ColumnRule(type="BIGINT"), "v": ColumnRule(max=10)},
        unique_key=("id",),
    )
    settings = DatasetConfig(name="u", contract=contract)
    # Line 2 breaks the maximum, so line 3 is the first valid row of id 1.
    text = "id,v\n1,200\n1,5\n1,6\n2,7\n"

    result = ingest(catalog, "u", [write_file("u.csv", text)], settings=settings)

    found = [(r.line, r.column, r.reason) for r in list_quarantine(catalog, "u")]
    assert found == [
        (2, "v", 'value "200" is above the maximum 10'),
        (4, "id", "duplicate unique key (id=1)"),
    ]
    assert result.accepted == 2
    rows = catalog.db.execute(scan_sql(result.version) + " ORDER BY id").fetchall()
    assert rows == [(1, 5), (2, 7)]


def test_allowed_reason_lists_values(catalog: Catalog, write_file: WriteFile) -> None:
    allowed = tuple(f"k'{number}" for number in range(12))
    settings = DatasetConfig(
        name="c", contract=ContractConfig(columns={"k": ColumnRule(allowed=allowed)})
    )

    ingest(catalog, "c", [write_file("c.csv", "k\nk'0\nz\n")], settings=settings)

    listed = ", ".join(allowed[:10])
    [found] = list_quarantine(catalog, "c")
    assert (found.line, found.column) == (3, "k")
    assert found.reason == (
        f'value "z" is not an allowed category; allowed values: {listed}, ... '
        "(12 values)"
    )


def test_unique_key_unknown_column_rejected(
    catalog: Catalog, write_file: WriteFile
) -> None:
    settings = DatasetConfig(name="n", contract=ContractConfig(unique_key=("id",)))

    with pytest.raises(IngestError) as raised:
        ingest(catalog, "n", [write_file("n.csv", "x,y\n1,2\n")], settings=settings)

    assert str(raised.value) == (
        "unique_key column 'id' of [datasets.n.contract] is not a column of the "
        "ingested rows; columns: x, y. Fix unique_key or add the column to the files"
    )
    assert list_versions(catalog, "n") == []


def test_quarantine_counts_and_rows(catalog: Catalog, write_file: WriteFile) -> None:
    contract = ContractConfig(
        columns={
            "id": ColumnRule(type="BIGINT", nullable=False),
            "score": ColumnRule(type="DOUBLE", min=0, max=1),
            "kind": ColumnRule(allowed=("a", "b")),
            "code": ColumnRule(regex="[A-Z]{2}[0-9]"),
        },
        unique_key=("id",),
    )
    settings = DatasetConfig(name="q", contract=contract)
    text = (
        "id,score,kind,code\n"
        "1,0.5,a,AB1\n"  # line 2: good
        ",0.1,a,AB2\n"  # line 3: id missing
        "3,1.5,b,AB3\n"  # line 4: score above max
        "4,0.2,c,AB4\n"  # line 5: kind not allowed
        "5,0.3,a,ab5\n"  # line 6: code does not match
        "1,0.4,b,AB6\n"  # line 7: duplicate id
        "7,x,a,AB7\n"  # line 8: score not a number
        "8,0.9,b,ZZ9\n"  # line 9: good
    )

    result = ingest(catalog, "q", [write_file("q.csv", text)], settings=settings)

    assert result.accepted == 2
    assert result.quarantined == 6
    assert result.version.row_count == 2
    found = [(r.line, r.column, r.reason) for r in list_quarantine(catalog, "q")]
    assert found == [
        (3, "id", "missing value in a column that is not nullable"),
        (4, "score", 'value "1.5" is above the maximum 1'),
        (5, "kind", 'value "c" is not an allowed category; allowed values: a, b'),
        (6, "code", 'value "ab5" does not match [A-Z]{2}[0-9]'),
        (7, "id", "duplicate unique key (id=1)"),
        (8, "score", 'value "x" is not a valid DOUBLE'),
    ]
    rows = catalog.db.execute(scan_sql(result.version)).fetchall()
    assert rows == [(1, 0.5, "a", "AB1"), (8, 0.9, "b", "ZZ9")]
    # The whole row is kept with its first broken rule, as read from the file.
    kept = list_quarantine(catalog, "q")[-1].row
    assert kept == {"id": "7", "score": "x", "kind": "a", "code": "AB7"}


def test_strict_rejects_whole_file(catalog: Catalog, write_file: WriteFile) -> None:
    contract = ContractConfig(columns={"id": ColumnRule(type="BIGINT")})
    settings = DatasetConfig(name="s", contract=contract)
    path = write_file("s.csv", "id\n1\ntwo\n3\n")

    with pytest.raises(
        IngestError,
        match=r"1 of 3 rows break the contract; .*s.csv, line 3, column 'id': "
        r'value "two" is not a valid BIGINT',
    ):
        ingest(catalog, "s", [path], settings=settings, strict=True)

    assert list_versions(catalog, "s") == []
    assert list_quarantine(catalog, "s") == []


def test_first_version_becomes_contract(
    catalog: Catalog, write_file: WriteFile
) -> None:
    ingest(catalog, "d", [write_file("a.csv", "id,name,score\n1,a,0.5\n")])
    path = write_file("b.csv", "id,score,extra\nx,0.7,1\n2,0.8,2\n")

    result = ingest(catalog, "d", [path])

    assert result.warnings == [
        "new column 'extra' of type BIGINT",
        "column 'id' is BIGINT in the contract and VARCHAR in the file; values "
        "are converted to BIGINT, and a value that does not convert is quarantined",
        "missing column 'name'; its values are read as missing",
    ]
    assert result.quarantined == 1
    # The file's columns come first, then the contract's missing ones.
    assert list(result.version.schema.items()) == [
        ("id", "BIGINT"),
        ("score", "DOUBLE"),
        ("extra", "BIGINT"),
        ("name", "VARCHAR"),
    ]
    rows = catalog.db.execute(scan_sql(result.version)).fetchall()
    assert rows == [(2, 0.8, 2, None)]


def test_quality_report_stored(catalog: Catalog, write_file: WriteFile) -> None:
    values = [1, 2, 3, 4, 5, 6, 7, 8, 100, None]
    text = "v,k\n" + "".join(f"{'' if v is None else v},a\n" for v in values)
    text += "1,a\n"  # a duplicate of the first row

    result = ingest(catalog, "d", [write_file("q.csv", text)])

    quality = get_dataset_version(catalog, "d").report["quality"]
    assert result.version.report["quality"] == quality
    assert quality["rows"] == 11
    assert quality["duplicate_rows"] == 1
    v = quality["columns"]["v"]
    assert v["null_rate"] == pytest.approx(1 / 11, abs=1e-6)
    assert v["min"] == 1.0
    assert v["max"] == 100.0
    assert v["outliers_iqr"] == 1
    assert v["distinct"] == 9
    assert quality["columns"]["k"]["distinct"] == 1
    assert quality["methods"]["distinct"] == "approximate, HyperLogLog"
    assert quality["methods"]["quantiles"] == "exact"


def test_quality_report_large_table_sampled(
    catalog: Catalog, write_file: WriteFile
) -> None:
    values = [*range(25_000), 0, 1, 2, 1_000_000]
    text = "v\n" + "".join(f"{v}\n" for v in values)

    result = ingest(catalog, "big", [write_file("big.csv", text)])

    quality = result.version.report["quality"]
    assert quality["rows"] == 25_004
    assert quality["duplicate_rows"] == 3
    v = quality["columns"]["v"]
    assert v["outliers_iqr"] == 1
    assert v["min"] == 0.0
    assert v["max"] == 1_000_000.0
    # The quartiles come from about one row in 2, so the median is near,
    # not at, the median of all rows (12,501).
    assert 12_000 < v["quantiles"]["p50"] < 13_000
    assert quality["methods"]["quantiles"] == (
        "approximate, from a sample of one row in 2 of each file, chosen by a "
        "hash of the row's position"
    )


def test_quality_sample_not_periodic(catalog: Catalog, write_file: WriteFile) -> None:
    # Every other row is 100: a sample of every second row would see only
    # one of the two values.
    text = "v\n" + "".join(f"{100 * (i % 2)}\n" for i in range(30_000))

    result = ingest(catalog, "periodic", [write_file("periodic.csv", text)])

    quantiles = result.version.report["quality"]["columns"]["v"]["quantiles"]
    assert quantiles["p25"] == 0.0
    assert quantiles["p75"] == 100.0


def test_diff_reports_schema_and_rows(catalog: Catalog, write_file: WriteFile) -> None:
    a = ingest(catalog, "d", [write_file("a.csv", "x,y\n1,a\n2,b\n")]).version
    b = ingest(catalog, "d", [write_file("b.csv", "x,z\n5,1.5\n")]).version

    diff = diff_versions(a, b)

    assert diff["rows"] == [2, 1]
    assert diff["added_columns"] == ["z"]
    assert diff["removed_columns"] == []
    assert diff["statistics"]["x"]["max"] == [2.0, 5.0]
    assert diff["statistics"]["y"]["null_rate"] == [0.0, 1.0]


def test_version_reference_by_prefix(catalog: Catalog, write_file: WriteFile) -> None:
    first = ingest(catalog, "d", [write_file("a.csv", "x\n1\n")]).version
    ingest(catalog, "d", [write_file("b.csv", "x\n2\n")])

    assert get_dataset_version(catalog, f"d@{first.version[:6]}") == first
    with pytest.raises(NotFoundError, match="'zzz' is not a version of dataset 'd'"):
        get_dataset_version(catalog, "d@zzz")


def test_version_reference_empty_after_at(
    catalog: Catalog, write_file: WriteFile
) -> None:
    ingest(catalog, "d", [write_file("a.csv", "x\n1\n")])

    with pytest.raises(NotFoundError, match="'d@' names no version after '@'"):
        get_dataset_version(catalog, "d@")


def test_version_reference_unknown_dataset(catalog: Catalog) -> None:
    with pytest.raises(NotFoundError, match="dataset 'semi' has no version"):
        get_dataset_version(catalog, "semi@abc")


def test_version_reference_without_dataset(
    catalog: Catalog, write_file: WriteFile
) -> None:
    ingest(catalog, "d", [write_file("a.csv", "x\n1\n")])

    with pytest.raises(NotFoundError) as raised:
        get_dataset_version(catalog, "@1")

    assert "''" in str(raised.value)
    assert "versions:" not in str(raised.value)


def test_damaged_catalog_named(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "catalog.duckdb").write_bytes(b"not a database" * 1000)

    with pytest.raises(StorageError) as raised:
        Catalog(home)

    message = str(raised.value)
    assert message.startswith(f"cannot open the catalog {home / 'catalog.duckdb'}")
    assert "The file is damaged or not a DuckDB database" in message
    assert "Another appliance process" not in message


def test_unknown_dataset_names_next_step(catalog: Catalog) -> None:
    with pytest.raises(NotFoundError) as missing:
        get_dataset_version(catalog, "trips")
    with pytest.raises(NotFoundError) as invalid:
        get_dataset_version(catalog, "bad name")

    assert "run 'appliance ingest trips FILE' first" in str(missing.value)
    assert str(invalid.value).startswith("invalid dataset name 'bad name';")
    assert "appliance ingest" not in str(invalid.value)
