"""Rejected values and regex rules see the text as written in CSV and JSON lines.

A typed read prints a value in DuckDB's form, such as ``-0.5`` for ``-0.50``.
The quarantine shows a CSV or JSON-lines value as the file writes it, and a
contract ``regex`` matches that text. A Parquet file stores no text, so its
values show, and match, as DuckDB prints them.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import WriteFile

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.storage import Catalog, IngestResult, ingest, list_quarantine, scan_sql


def write_source(
    kind: str, write_file: WriteFile, tmp_path: Path, values: list[str]
) -> Path:
    """Write column ``a`` = 1, 2, ... and column ``b`` with `values` as written."""
    if kind == "csv":
        rows = "".join(f"{i},{v}\n" for i, v in enumerate(values, start=1))
        return write_file("v.csv", "a,b\n" + rows)
    if kind == "jsonl":
        rows = "".join(f'{{"a": {i}, "b": {v}}}\n' for i, v in enumerate(values, 1))
        return write_file("v.jsonl", rows)
    path = tmp_path / "v.parquet"
    numbers = pa.array([float(v) for v in values], pa.float64())
    pq.write_table(
        pa.table({"a": pa.array(range(1, len(values) + 1)), "b": numbers}), path
    )
    return path


def settings_with(rule: ColumnRule) -> DatasetConfig:
    return DatasetConfig(name="v", contract=ContractConfig(columns={"b": rule}))


def stored(catalog: Catalog, result: IngestResult) -> list[tuple]:
    return catalog.db.execute(scan_sql(result.version) + " ORDER BY a").fetchall()


def shown(catalog: Catalog) -> list[tuple]:
    return [(q.line, q.value, q.reason) for q in list_quarantine(catalog, "v")]


@pytest.mark.parametrize(
    ("kind", "first_line", "value"),
    [("csv", 2, "-0.50"), ("jsonl", 1, "-0.50"), ("parquet", 1, "-0.5")],
)
def test_below_minimum_shown_as_written(
    catalog: Catalog,
    write_file: WriteFile,
    tmp_path: Path,
    kind: str,
    first_line: int,
    value: str,
) -> None:
    path = write_source(kind, write_file, tmp_path, ["1.25", "-0.50", "2.00"])

    result = ingest(catalog, "v", [path], settings=settings_with(ColumnRule(min=0)))

    assert result.version.schema == {"a": "BIGINT", "b": "DOUBLE"}
    assert (result.accepted, result.quarantined) == (2, 1)
    assert stored(catalog, result) == [(1, 1.25), (3, 2.0)]
    assert shown(catalog) == [
        (first_line + 1, value, f'value "{value}" is below the minimum 0')
    ]


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_regex_matches_text_as_written(
    catalog: Catalog, write_file: WriteFile, tmp_path: Path, kind: str
) -> None:
    # Two decimals as written: DuckDB prints 1.50 as 1.5, which has one.
    rule = ColumnRule(type="DOUBLE", regex=r"[0-9]+\.[0-9]{2}")
    path = write_source(kind, write_file, tmp_path, ["1.50", "2.5", "3.10"])

    result = ingest(catalog, "v", [path], settings=settings_with(rule))

    assert result.version.schema == {"a": "BIGINT", "b": "DOUBLE"}
    assert stored(catalog, result) == [(1, 1.5), (3, 3.1)]
    line = 3 if kind == "csv" else 2
    assert shown(catalog) == [
        (line, "2.5", r'value "2.5" does not match [0-9]+\.[0-9]{2}')
    ]


def test_regex_on_parquet_matches_printed_value(
    catalog: Catalog, write_file: WriteFile, tmp_path: Path
) -> None:
    rule = ColumnRule(regex=r"[0-9]+\.[0-9]{2}")
    path = write_source("parquet", write_file, tmp_path, ["1.50", "2.25"])

    result = ingest(catalog, "v", [path], settings=settings_with(rule))

    assert stored(catalog, result) == [(2, 2.25)]
    assert shown(catalog) == [
        (1, "1.5", r'value "1.5" does not match [0-9]+\.[0-9]{2}')
    ]


def test_json_mixed_column_shown_as_written(
    catalog: Catalog, write_file: WriteFile
) -> None:
    # A number in one line and a string in another: a column of mixed JSON types.
    lines = ['{"a": 1, "b": 1.0E1}', '{"a": 2, "b": -0.50}', '{"a": 3, "b": "x"}']
    path = write_file("v.jsonl", "\n".join(lines) + "\n")
    rule = ColumnRule(type="DOUBLE", min=0)

    result = ingest(catalog, "v", [path], settings=settings_with(rule))

    assert stored(catalog, result) == [(1, 10.0)]
    assert shown(catalog) == [
        (2, "-0.50", 'value "-0.50" is below the minimum 0'),
        (3, "x", 'value "x" is not a valid DOUBLE'),
    ]


def test_json_booleans_shown_as_written(
    catalog: Catalog, write_file: WriteFile
) -> None:
    lines = ['{"a": 1, "b": true}', '{"a": 2, "b": false}']
    path = write_file("v.jsonl", "\n".join(lines) + "\n")
    rule = ColumnRule(allowed=("true",))

    result = ingest(catalog, "v", [path], settings=settings_with(rule))

    assert result.version.schema == {"a": "BIGINT", "b": "BOOLEAN"}
    assert stored(catalog, result) == [(1, True)]
    reason = 'value "false" is not an allowed category; allowed values: true'
    assert shown(catalog) == [(2, "false", reason)]


def test_csv_other_typed_columns_kept(catalog: Catalog, write_file: WriteFile) -> None:
    # Only column b is read again, as text; a and when keep their typed read.
    text = "a,b,when\n1,-0.50,2024-01-05\n2,3.00,2024-01-06\n"
    rule = ColumnRule(min=0)

    result = ingest(
        catalog, "v", [write_file("v.csv", text)], settings=settings_with(rule)
    )

    assert result.version.schema == {"a": "BIGINT", "b": "DOUBLE", "when": "DATE"}
    assert shown(catalog) == [(2, "-0.50", 'value "-0.50" is below the minimum 0')]
    rows = catalog.db.execute(
        f'SELECT a, b, CAST("when" AS VARCHAR) FROM ({scan_sql(result.version)})'
    ).fetchall()
    assert rows == [(2, 3.0, "2024-01-06")]
