"""Data quality report of a dataset version, computed by DuckDB in two scans.

Per column: null rate, distinct count (approximate, HyperLogLog), min, max;
for numeric columns also the quartiles (exact up to 20,000 rows, else from
a seeded sample of that size) and the exact count of outliers outside
``[q1 - 1.5 IQR, q3 + 1.5 IQR]``. For the table: rows and duplicate rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import duckdb

from appliance.storage._types import NUMERIC_TYPES

_QUANTILE_SAMPLE = 20_000


def quality_report(
    db: duckdb.DuckDBPyConnection, table: str, schema: Mapping[str, str]
) -> dict[str, Any]:
    """Compute the quality report of the rows in `table` (a table name or subquery).

    Duplicate rows are counted by a 64-bit hash of each row, so two distinct
    rows count as duplicates only on a hash collision (odds about n²/2⁶⁵).
    """
    numeric = [n for n, kind in schema.items() if _is_numeric(kind)]
    row_hash = f"hash({', '.join(_ident(n) for n in schema)})"
    selects = ["count(*)", f"count(DISTINCT {row_hash})"]
    for name, kind in schema.items():
        v = _ident(name)
        selects += [f"count({v})", f"approx_count_distinct({v})"]
        if _orderable(kind):
            selects += [f"CAST(min({v}) AS VARCHAR)", f"CAST(max({v}) AS VARCHAR)"]
    values = iter(db.execute(f"SELECT {', '.join(selects)} FROM {table}").fetchall()[0])
    rows, distinct_rows = next(values), next(values)
    quartiles = iter(_quartiles(db, table, numeric))
    columns: dict[str, dict[str, Any]] = {}
    for name, kind in schema.items():
        columns[name] = _column_entry(kind, name in numeric, values, rows)
        if name in numeric:
            q = next(quartiles)
            columns[name]["quantiles"] = (
                {"p25": q[0], "p50": q[1], "p75": q[2]}
                if q and q[0] is not None
                else None
            )
    if rows:
        _add_outliers(db, table, columns)
    return {"rows": rows, "duplicate_rows": rows - distinct_rows, "columns": columns}


def _column_entry(
    kind: str, numeric: bool, values: Iterator[Any], rows: int
) -> dict[str, Any]:
    present, distinct = next(values), next(values)
    entry: dict[str, Any] = {
        "type": kind,
        "null_rate": round(1 - present / rows, 6) if rows else None,
        "distinct": distinct,
    }
    if _orderable(kind):
        entry["min"], entry["max"] = next(values), next(values)
        if numeric and entry["min"] is not None:
            entry["min"], entry["max"] = float(entry["min"]), float(entry["max"])
    return entry


def _quartiles(
    db: duckdb.DuckDBPyConnection, table: str, numeric: list[str]
) -> list[Any]:
    """Return the quartiles of each numeric column, from a sample of large tables.

    The sample is a seeded reservoir of `_QUANTILE_SAMPLE` rows, so the same
    version always gets the same quartiles.
    """
    if not numeric:
        return []
    selects = ", ".join(
        f"quantile_cont(CAST({_ident(n)} AS DOUBLE), [0.25, 0.5, 0.75])"
        for n in numeric
    )
    sample = (
        f"(SELECT * FROM {table}) USING SAMPLE reservoir({_QUANTILE_SAMPLE} ROWS) "
        "REPEATABLE (0)"
    )
    return list(db.execute(f"SELECT {selects} FROM {sample}").fetchall()[0])


def _add_outliers(
    db: duckdb.DuckDBPyConnection, table: str, stats: dict[str, dict[str, Any]]
) -> None:
    bounded = {
        name: entry["quantiles"]
        for name, entry in stats.items()
        if entry.get("quantiles")
    }
    if not bounded:
        return
    counts = []
    for name, q in bounded.items():
        spread = 1.5 * (q["p75"] - q["p25"])
        low, high = q["p25"] - spread, q["p75"] + spread
        v = f"CAST({_ident(name)} AS DOUBLE)"
        counts.append(f"count(*) FILTER (WHERE {v} < {low!r} OR {v} > {high!r})")
    found = db.execute(f"SELECT {', '.join(counts)} FROM {table}").fetchall()[0]
    for name, count in zip(bounded, found):
        stats[name]["outliers_iqr"] = count


def _is_numeric(kind: str) -> bool:
    return kind in NUMERIC_TYPES or kind.startswith("DECIMAL")


def _orderable(kind: str) -> bool:
    return not kind.endswith("[]") and not kind.startswith(("STRUCT", "MAP"))


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
