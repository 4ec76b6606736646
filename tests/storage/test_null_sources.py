"""Counts of the source values read as missing, in each version's quality report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import WriteFile

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.storage import Catalog, IngestResult, diff_versions, ingest


def _null_sources(result: IngestResult) -> dict[str, Any]:
    columns = result.version.report["quality"]["columns"]
    return {
        name: stats["null_sources"]
        for name, stats in columns.items()
        if "null_sources" in stats
    }


def test_text_column_tokens_counted(catalog: Catalog, write_file: WriteFile) -> None:
    # Every token sits in a text column, so the typed read counts them.
    path = write_file(
        "a.csv",
        'id,name,city\n1,a,x\n2,NA,\n3,,y\n4,null,NA\n5,NULL,"NA"\n6,"",z\n7,b,x\n',
    )

    result = ingest(catalog, "d", [path])

    assert result.version.schema == {
        "id": "BIGINT",
        "name": "VARCHAR",
        "city": "VARCHAR",
    }
    assert _null_sources(result) == {
        "name": {"": 2, "NA": 1, "null": 1, "NULL": 1},
        "city": {"": 1, "NA": 2, "null": 0, "NULL": 0},
    }
    assert result.version.report["quality"]["columns"]["name"]["null_rate"] == (
        pytest.approx(5 / 7)
    )


def test_typed_column_tokens_counted(catalog: Catalog, write_file: WriteFile) -> None:
    # NA in a DOUBLE column makes the typed read run again with every token.
    path = write_file(
        "a.csv",
        "x,day,s\n1.5,2024-01-01,a\nNA,,b\n,NA,NA\nnull,2024-01-04,\n2.5,NULL,c\n",
    )

    result = ingest(catalog, "d", [path])

    assert result.version.schema == {"x": "DOUBLE", "day": "DATE", "s": "VARCHAR"}
    assert _null_sources(result) == {
        "x": {"": 1, "NA": 1, "null": 1, "NULL": 0},
        "day": {"": 1, "NA": 1, "null": 0, "NULL": 1},
        "s": {"": 1, "NA": 1, "null": 0, "NULL": 0},
    }


def test_typed_column_na_native(catalog: Catalog, write_file: WriteFile) -> None:
    # NA is the only token of the typed column, so the read after the first
    # gives DuckDB NA as its null token, and the text column keeps "" as text.
    path = write_file("a.csv", "x,s\n1,a\nNA,\n3,NA\nNA,b\n5,null\n")

    result = ingest(catalog, "d", [path])

    assert result.version.schema == {"x": "BIGINT", "s": "VARCHAR"}
    sources = _null_sources(result)
    assert sources == {
        "x": {"": 0, "NA": 2, "null": 0, "NULL": 0},
        "s": {"": 1, "NA": 1, "null": 1, "NULL": 0},
    }
    assert list(sources["x"]) == ["", "NA", "null", "NULL"]
    columns = result.version.report["quality"]["columns"]
    assert columns["s"]["null_rate"] == pytest.approx(3 / 5)
    assert columns["x"]["null_rate"] == pytest.approx(2 / 5)


def test_date_column_na_native(catalog: Catalog, write_file: WriteFile) -> None:
    # The contract's DATE column is read as text and checked in SQL, which
    # raises on NA, so the next read gives DuckDB NA as its null token.
    contract = ContractConfig(columns={"d": ColumnRule(type="DATE")})
    settings = DatasetConfig(name="d", contract=contract)
    path = write_file("a.csv", "d,s\n2024-01-01,a\nNA,\n2024-01-03,b\nNA,c\n")

    result = ingest(catalog, "d", [path], settings=settings)

    assert result.version.schema == {"d": "DATE", "s": "VARCHAR"}
    assert _null_sources(result) == {
        "d": {"": 0, "NA": 2, "null": 0, "NULL": 0},
        "s": {"": 1, "NA": 0, "null": 0, "NULL": 0},
    }


def test_text_path_tokens_counted(catalog: Catalog, write_file: WriteFile) -> None:
    # The text "many" breaks the contract's BIGINT, so the file takes the
    # text path; its row is quarantined and its tokens are still counted.
    contract = ContractConfig(columns={"n": ColumnRule(type="BIGINT")})
    settings = DatasetConfig(name="d", contract=contract)
    path = write_file("a.csv", "n,s\n1,a\nNA,\nmany,NA\n,null\n")

    result = ingest(catalog, "d", [path], settings=settings)

    assert result.quarantined == 1
    assert _null_sources(result) == {
        "n": {"": 1, "NA": 1, "null": 0, "NULL": 0},
        "s": {"": 1, "NA": 1, "null": 1, "NULL": 0},
    }


def test_single_configured_token(catalog: Catalog, write_file: WriteFile) -> None:
    settings = DatasetConfig(name="d", null_values=("NA",))
    path = write_file("a.csv", "x,s\n1,a\nNA,NA\n3,\n4,NA\n")

    result = ingest(catalog, "d", [path], settings=settings)

    assert result.version.schema["x"] == "BIGINT"
    assert _null_sources(result) == {"x": {"NA": 1}, "s": {"NA": 2}}
    # Without "" among the tokens, an empty field stays an empty string.
    assert result.version.report["quality"]["columns"]["s"]["null_rate"] == 0.5


def test_tokens_summed_over_files(catalog: Catalog, write_file: WriteFile) -> None:
    first = write_file("a.csv", "x,s\n1,a\n,NA\n")
    second = write_file("b.csv", "x,s\nNA,\n2,NA\n")

    result = ingest(catalog, "d", [first, second])

    assert _null_sources(result) == {
        "x": {"": 1, "NA": 1, "null": 0, "NULL": 0},
        "s": {"": 1, "NA": 2, "null": 0, "NULL": 0},
    }


def test_columns_without_nulls_left_out(
    catalog: Catalog, write_file: WriteFile
) -> None:
    path = write_file("a.csv", "x,s\n1,a\n2,b\n")

    result = ingest(catalog, "d", [path])

    assert _null_sources(result) == {}
    assert "null_sources" not in result.version.report["quality"]["methods"]


def test_append_adds_parent_counts(catalog: Catalog, write_file: WriteFile) -> None:
    ingest(catalog, "d", [write_file("a.csv", "x,s\n1,NA\n,b\n")])

    result = ingest(
        catalog, "d", [write_file("b.csv", "x,s\nNA,NA\n2,\n")], mode="append"
    )

    assert _null_sources(result) == {
        "x": {"": 1, "NA": 1, "null": 0, "NULL": 0},
        "s": {"": 1, "NA": 2, "null": 0, "NULL": 0},
    }
    method = result.version.report["quality"]["methods"]["null_sources"]
    assert "an append adds its parent's counts" in method


def test_json_null_and_missing_key(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file(
        "a.jsonl",
        '{"a": 1, "b": "x"}\n{"a": null}\n\n{"b": ""}\n{"a": 2, "b": null}\n'
        '{"a": null, "b": "y"}\n',
    )

    result = ingest(catalog, "d", [path])

    assert _null_sources(result) == {
        "a": {"null": 2, "missing key": 1},
        "b": {"null": 1, "missing key": 1},
    }
    # An empty JSON string stays a value.
    assert result.version.report["quality"]["columns"]["b"]["null_rate"] == 0.4


def test_parquet_source_has_no_counts(
    catalog: Catalog, write_file: WriteFile, tmp_path: Path
) -> None:
    import duckdb

    path = tmp_path / "a.parquet"
    duckdb.sql(f"COPY (SELECT * FROM (VALUES (1, NULL), (2, 'a')) t(x, s)) TO '{path}'")

    result = ingest(catalog, "d", [path])

    assert _null_sources(result) == {}


def test_diff_shows_changed_counts(catalog: Catalog, write_file: WriteFile) -> None:
    old = ingest(catalog, "d", [write_file("a.csv", "x,s\n1,a\n,b\n")]).version
    new = ingest(catalog, "d", [write_file("b.csv", "x,s\n1,a\nNA,b\n")]).version

    diff = diff_versions(old, new)

    assert diff["statistics"]["x"]["null_sources"] == [
        {"": 1, "NA": 0, "null": 0, "NULL": 0},
        {"": 0, "NA": 1, "null": 0, "NULL": 0},
    ]
