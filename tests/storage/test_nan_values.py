"""NaN and infinity: one rule for CSV, JSON lines, Parquet and rows sent over HTTP.

NaN in a numeric column is a missing value. An infinite value in a FLOAT or
DOUBLE column is quarantined unless the column's contract allows it.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import WriteFile

from appliance.config import ColumnRule, ContractConfig, DatasetConfig
from appliance.storage import Catalog, IngestResult, ingest, list_quarantine, scan_sql
from appliance.storage._datasets import DatasetVersion, record_version

VALUES = [1.5, math.nan, math.inf, -math.inf, None, 2.5]
"""Column ``b`` of rows ``a`` = 1..6 in every format below."""
STORED = [(1, 1.5), (2, None), (5, None), (6, 2.5)]
INFINITE_REASON = (
    "is not a finite number; fix it, or set allow_infinity = true in "
    "[datasets.values.contract.columns.b]"
)


def csv_text() -> str:
    written = {1.5: "1.5", 2.5: "2.5", None: "NA"}
    cells = [written.get(v, "") for v in VALUES]
    cells[1:4] = ["NaN", "inf", "-Infinity"]
    return "a,b\n" + "".join(f"{i},{c}\n" for i, c in enumerate(cells, start=1))


def jsonl_text() -> str:
    cells = ["1.5", "NaN", "Infinity", "-Infinity", "null", "2.5"]
    return "".join(f'{{"a": {i}, "b": {c}}}\n' for i, c in enumerate(cells, start=1))


def write_source(kind: str, write_file: WriteFile, tmp_path: Path) -> Path:
    if kind == "csv":
        return write_file("values.csv", csv_text())
    if kind == "jsonl":
        return write_file("values.jsonl", jsonl_text())
    path = tmp_path / "values.parquet"
    table = pa.table({"a": pa.array(range(1, 7)), "b": pa.array(VALUES, pa.float64())})
    pq.write_table(table, path)
    return path


def rows_of(catalog: Catalog, result: IngestResult) -> list[tuple]:
    return catalog.db.execute(scan_sql(result.version) + " ORDER BY a").fetchall()


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_nan_missing_infinity_quarantined(
    catalog: Catalog, write_file: WriteFile, tmp_path: Path, kind: str
) -> None:
    path = write_source(kind, write_file, tmp_path)

    result = ingest(catalog, "values", [path])

    assert result.version.schema == {"a": "BIGINT", "b": "DOUBLE"}
    assert (result.accepted, result.quarantined) == (4, 2)
    assert rows_of(catalog, result) == STORED
    quarantined = list_quarantine(catalog, "values")
    first_line = 2 if kind == "csv" else 1
    assert [(q.line, q.column) for q in quarantined] == [
        (first_line + 2, "b"),
        (first_line + 3, "b"),
    ]
    assert all(q.reason.endswith(INFINITE_REASON) for q in quarantined)
    column = result.version.report["quality"]["columns"]["b"]
    assert column["null_rate"] == 0.5


def test_infinity_kept_when_allowed(catalog: Catalog, write_file: WriteFile) -> None:
    contract = ContractConfig(columns={"b": ColumnRule(allow_infinity=True)})
    settings = DatasetConfig(name="values", contract=contract)

    result = ingest(
        catalog, "values", [write_file("v.csv", csv_text())], "replace", settings
    )

    assert result.quarantined == 0
    assert rows_of(catalog, result) == [
        (1, 1.5),
        (2, None),
        (3, math.inf),
        (4, -math.inf),
        (5, None),
        (6, 2.5),
    ]


def test_nan_breaks_not_nullable(catalog: Catalog, write_file: WriteFile) -> None:
    rule = ColumnRule(type="DOUBLE", nullable=False, max=10.0)
    settings = DatasetConfig(name="v", contract=ContractConfig(columns={"b": rule}))
    path = write_file("v.csv", "a,b\n1,NaN\n2,\n3,4.5\n")

    result = ingest(catalog, "v", [path], "replace", settings)

    assert rows_of(catalog, result) == [(3, 4.5)]
    reasons = [(q.line, q.value, q.reason) for q in list_quarantine(catalog, "v")]
    assert reasons == [
        (2, "NaN", "missing value (NaN) in a column that is not nullable"),
        (3, None, "missing value in a column that is not nullable"),
    ]


def test_nan_in_integer_column_missing(catalog: Catalog, write_file: WriteFile) -> None:
    rule = ColumnRule(type="BIGINT")
    settings = DatasetConfig(name="v", contract=ContractConfig(columns={"b": rule}))
    path = write_file("v.csv", "a,b\n1,nan\n2,7\n")

    result = ingest(catalog, "v", [path], "replace", settings)

    assert result.quarantined == 0
    assert rows_of(catalog, result) == [(1, None), (2, 7)]


def test_nan_text_column_kept(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("names.csv", "a,name\n1,NaN\n2,Nan Yu\n")

    result = ingest(catalog, "names", [path])

    assert rows_of(catalog, result) == [(1, "NaN"), (2, "Nan Yu")]


def test_only_nan_values_missing(catalog: Catalog, write_file: WriteFile) -> None:
    path = write_file("allnan.csv", "a,b\n1,NaN\n2,NaN\n")

    result = ingest(catalog, "allnan", [path])

    assert result.version.schema == {"a": "BIGINT", "b": "DOUBLE"}
    assert rows_of(catalog, result) == [(1, None), (2, None)]
    column = result.version.report["quality"]["columns"]["b"]
    assert column["null_rate"] == 1.0
    assert column["quantiles"] is None


@pytest.mark.parametrize(
    ("kind", "shown"),
    [
        ("csv", ["1e309", "-1E309"]),
        ("jsonl", ["1e309", "-1E309"]),
        ("parquet", ["inf", "-inf"]),
    ],
)
def test_infinity_shown_as_written(
    catalog: Catalog, write_file: WriteFile, tmp_path: Path, kind: str, shown: list
) -> None:
    if kind == "csv":
        path = write_file("big.csv", "a,b\n1,1.50\n2,1e309\n3,-1E309\n")
    elif kind == "jsonl":
        rows = ['{"a": 1, "b": 1.50}', '{"a": 2, "b": 1e309}', '{"a": 3, "b": -1E309}']
        path = write_file("big.jsonl", "\n".join(rows) + "\n")
    else:
        path = tmp_path / "big.parquet"
        values = pa.array([1.5, math.inf, -math.inf], pa.float64())
        pq.write_table(pa.table({"a": pa.array([1, 2, 3]), "b": values}), path)

    result = ingest(catalog, "values", [path])

    assert result.version.schema == {"a": "BIGINT", "b": "DOUBLE"}
    assert rows_of(catalog, result) == [(1, 1.5)]
    quarantined = list_quarantine(catalog, "values")
    assert [q.value for q in quarantined] == shown
    assert [q.reason for q in quarantined] == [
        f'value "{value}" {INFINITE_REASON}' for value in shown
    ]


def test_stored_nan_reads_as_missing(catalog: Catalog, tmp_path: Path) -> None:
    # A version written before NaN was stored as NULL: its Parquet file has NaN.
    folder = catalog.lake / "old" / "version=0123456789abcdef"
    folder.mkdir(parents=True)
    table = pa.table(
        {"a": pa.array([1, 2, 3]), "b": pa.array([1.5, math.nan, None], pa.float32())}
    )
    pq.write_table(table, folder / "data_0.parquet")
    version = DatasetVersion(
        dataset="old",
        version="0123456789abcdef",
        parent=None,
        created_at=datetime.now(timezone.utc),
        row_count=3,
        schema={"a": "BIGINT", "b": "FLOAT"},
        sources=[{"path": str(tmp_path / "old.csv"), "sha256": "0" * 64}],
        path=folder,
        files=[f"{folder}/*.parquet"],
    )
    record_version(catalog, version)

    stored = catalog.db.execute(scan_sql(version) + " ORDER BY a").fetchall()

    assert stored == [(1, 1.5), (2, None), (3, None)]


def test_nan_stored_as_null_in_file(catalog: Catalog, write_file: WriteFile) -> None:
    # The typed read loads NaN as a float; the version's file stores NULL.
    path = write_file("v.csv", "a,b\n1,NaN\n2,2.5\n")

    result = ingest(catalog, "v", [path])

    files = result.version.path / "data_0.parquet"
    stored = pq.read_table(files).to_pydict()
    assert stored == {"a": [1, 2], "b": [None, 2.5]}


def test_infinity_out_of_range_one_reason(
    catalog: Catalog, write_file: WriteFile
) -> None:
    rule = ColumnRule(type="DOUBLE", min=0.0, max=60.0)
    settings = DatasetConfig(
        name="values", contract=ContractConfig(columns={"b": rule})
    )
    path = write_file("v.csv", "a,b\n1,Infinity\n2,-Infinity\n3,61\n4,5\n")

    result = ingest(catalog, "values", [path], "replace", settings)

    assert rows_of(catalog, result) == [(4, 5.0)]
    reasons = [(q.line, q.reason) for q in list_quarantine(catalog, "values")]
    assert len(reasons) == 3
    assert reasons[0] == (2, f'value "Infinity" {INFINITE_REASON}')
    assert reasons[1] == (3, f'value "-Infinity" {INFINITE_REASON}')
    assert reasons[2] == (4, 'value "61" is above the maximum 60')


def test_allowed_infinity_checked_by_range(
    catalog: Catalog, write_file: WriteFile
) -> None:
    rule = ColumnRule(type="DOUBLE", max=60.0, allow_infinity=True)
    settings = DatasetConfig(
        name="values", contract=ContractConfig(columns={"b": rule})
    )
    path = write_file("v.csv", "a,b\n1,Infinity\n2,-Infinity\n")

    result = ingest(catalog, "values", [path], "replace", settings)

    assert rows_of(catalog, result) == [(2, -math.inf)]
    reasons = [(q.line, q.reason) for q in list_quarantine(catalog, "values")]
    assert reasons == [(2, 'value "Infinity" is above the maximum 60')]


def test_infinity_in_second_file_quarantined(
    catalog: Catalog, write_file: WriteFile
) -> None:
    # The typed read skips the infinity check only for columns whose
    # statistics in every file are finite.
    first = write_file("first.csv", "a,b\n1,1.5\n2,2.5\n")
    second = write_file("second.csv", "a,b\n3,-inf\n4,3.5\n")

    result = ingest(catalog, "values", [first, second])

    quarantined = list_quarantine(catalog, "values")
    assert (result.accepted, result.quarantined) == (3, 1)
    assert [(q.source, q.line, q.column) for q in quarantined] == [
        (str(second.resolve()), 2, "b")
    ]
    assert quarantined[0].reason.endswith(INFINITE_REASON)
