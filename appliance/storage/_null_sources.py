"""Counts of the source values that an ingest read as missing, per column.

A CSV file's configured null tokens (``[datasets.NAME] null_values``, such
as ``""`` and ``NA``) all become NULL, so the rows no longer show which
token each NULL came from. The typed read counts them in its own pass: it
gives DuckDB's CSV reader only the native token (``""`` when configured),
and keeps the other tokens of a text column as text in its Parquet file.
The Parquet writer's statistics give each column's NULL count, which is the
native token's count, and each text column's range, so only a column whose
range includes another token has them counted in the file, and then read as
NULL. Such a column is read through a view, so its rows are converted from
that view rather than from the Parquet file kept as the version's data. A
typed column, such as a DOUBLE, cannot hold another token, so the read
raises on one and runs again with that token as the native one. When a
typed column contains both, the file is read with every token, and a
second read of the CSV file as text counts them (`token_counts`), as on the
text path.

A JSON-lines file reads both ``null`` and a missing key as NULL. A column
with a NULL has both counted in one more read of the file's objects
(`json_null_counts`). An empty string ``""`` stays a value there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import duckdb

from appliance.dbrows import first_row
from appliance.storage._sql import ident, literal

NullCounts = dict[str, dict[str, int]]
"""Per column, the count of each source form read as missing."""

JSON_NULL = "null"
"""Label of a JSON ``null`` value in `NullCounts`."""
JSON_MISSING_KEY = "missing key"
"""Label of an object without the column's key in `NullCounts`."""
UNUSED_NULL = "\x01"
"""A ``nullstr`` for reads that must keep every token as text, because
DuckDB requires at least one."""


def split_tokens(
    tokens: Iterable[str], native: str | None = None
) -> tuple[str, tuple[str, ...]]:
    """Return the token that the typed read gives DuckDB, and the others.

    Args:
        native: The token to give DuckDB. When None, the empty string is
            preferred, because the CSV reader turns an empty field of a
            typed column into NULL only when it is a null token.
    """
    listed = tuple(dict.fromkeys(tokens))
    if native is None:
        native = "" if "" in listed else listed[0]
    return native, tuple(t for t in listed if t != native)


TOKEN_ERROR = "a typed column contains a null token other than the native one: "
"""Start of the error that the first typed read raises on such a token in a
DATE or TIMESTAMP column read as text, followed by the token."""
_CONVERSION_ERROR = re.compile(r'Could not convert string "(.*?)" to ')
"""DuckDB 2.0.1's CSV reader error on a value that its column's type rejects."""


def guard_sql(
    read_types: Mapping[str, str], types: Mapping[str, str], others: tuple[str, ...]
) -> str:
    """Return the select list of the first typed read's CSV rows.

    A column read as text but stored typed, such as a DATE, raises
    `TOKEN_ERROR` on one of the `others` tokens, as the CSV reader raises
    on one in a DOUBLE column. A text column keeps them as text.
    """
    tokens = ", ".join(literal(token) for token in others)
    selects = []
    for name, kind in read_types.items():
        v = ident(name)
        if kind != "VARCHAR" or types[name] == "VARCHAR":
            selects.append(v)
            continue
        selects.append(
            f"CASE WHEN {v} IN ({tokens}) THEN error({literal(TOKEN_ERROR)} || {v}) "
            f"ELSE {v} END AS {v}"
        )
    return ", ".join(selects)


def raised_token(exc: duckdb.Error, tokens: Iterable[str]) -> str | None:
    """Return the null token of a typed column that a typed read failed on.

    DuckDB 2.0.1's CSV reader words it ``Could not convert string "NA" to
    'DOUBLE'``, and `guard_sql` raises `TOKEN_ERROR`. None when the read
    failed on another value.
    """
    message = str(exc)
    start = message.find(TOKEN_ERROR)
    if start >= 0:
        found = message[start + len(TOKEN_ERROR) :].split("\n", 1)[0]
    else:
        match = _CONVERSION_ERROR.search(message)
        found = match.group(1) if match else None
    return found if found in set(tokens) else None


def token_columns(
    written: list[tuple], columns: Iterable[str], tokens: tuple[str, ...]
) -> list[str]:
    """Return the text `columns` whose written range may include one of `tokens`.

    The range is the min and max in the rows of ``COPY ... RETURN_STATS``;
    a max that is not exact bounds nothing. Byte order of UTF-8 text is the
    order of its code points, so Python compares the texts as DuckDB does.
    """
    stats: dict[str, dict[str, str]] = {}
    for row in written:
        stats.update(row[4])
    found = []
    for name in columns:
        found_stats = stats.get(ident(name), stats.get(name, {}))
        low, high = found_stats.get("min"), found_stats.get("max")
        if low is None:
            continue
        if found_stats.get("max_is_exact") != "true":
            high = None
        if any(low <= token and (high is None or token <= high) for token in tokens):
            found.append(name)
    return found


def parquet_token_counts(
    db: duckdb.DuckDBPyConnection,
    path: str,
    columns: list[str],
    tokens: tuple[str, ...],
) -> NullCounts:
    """Count each token kept as text in `columns` of the Parquet file `path`."""
    read = f"read_parquet({literal(path)}, hive_partitioning=false)"
    return token_counts(db, read, tokens, columns)


def null_token_sql(name: str, tokens: list[str]) -> str:
    """Return the value of text column `name`, NULL where it is one of `tokens`."""
    v = ident(name)
    if len(tokens) == 1:
        return f"nullif({v}, {literal(tokens[0])}) AS {v}"
    listed = ", ".join(literal(token) for token in tokens)
    return f"CASE WHEN {v} IN ({listed}) THEN NULL ELSE {v} END AS {v}"


def parquet_null_counts(written: list[tuple], columns: Iterable[str]) -> dict[str, int]:
    """Return the NULL count of each column from ``COPY ... RETURN_STATS`` rows."""
    found = dict.fromkeys(columns, 0)
    names = {ident(name): name for name in found} | {name: name for name in found}
    for row in written:
        for key, stats in row[4].items():
            name = names.get(key)
            if name is not None:
                found[name] += int(stats.get("null_count", 0))
    return found


def token_counts(
    db: duckdb.DuckDBPyConnection,
    rows: str,
    tokens: tuple[str, ...],
    columns: list[str],
) -> NullCounts:
    """Count each token in the text `columns` of `rows`.

    Args:
        rows: A read that keeps the tokens as text, such as a ``read_csv``
            call that reads `columns` as VARCHAR with `UNUSED_NULL` as its
            only null string.

    Returns:
        The counts of the columns that contain a token.
    """
    if not columns:
        return {}
    selects = [
        f"count_if({ident(name)} = {literal(token)})"
        for name in columns
        for token in tokens
    ]
    row = first_row(db.execute(f"SELECT {', '.join(selects)} FROM {rows}"))
    assert row is not None
    values = iter(row)
    found: NullCounts = {}
    for name in columns:
        counts = {token: int(next(values)) for token in tokens}
        if any(counts.values()):
            found[name] = counts
    return found


def null_columns(db: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """Return the columns of `table` with at least one NULL."""
    names = [row[0] for row in db.execute(f"DESCRIBE {table}").fetchall()]
    if not names:
        return []
    selects = ", ".join(f"count(*) - count({ident(n)})" for n in names)
    row = first_row(db.execute(f"SELECT {selects} FROM {table}"))
    assert row is not None
    return [name for name, nulls in zip(names, row) if nulls]


def json_null_counts(
    db: duckdb.DuckDBPyConnection, path: str, columns: list[str]
) -> NullCounts:
    """Count the JSON ``null`` values and the missing keys of `columns` in `path`.

    ``json_type`` returns ``'NULL'`` for a null and SQL NULL for a missing key.
    DuckDB 2.0.1's ``count_if`` returns NULL when every input is NULL, so the
    null test is coalesced to false.
    """
    if not columns:
        return {}
    selects = []
    for name in columns:
        kind = f"json_type(json, {literal(_json_path(name))})"
        selects += [
            f"count_if(coalesce({kind} = 'NULL', false))",
            f"count_if({kind} IS NULL)",
        ]
    row = first_row(
        db.execute(
            f"SELECT {', '.join(selects)} FROM read_ndjson_objects({literal(path)})"
        )
    )
    assert row is not None
    values = iter(row)
    return {
        name: {JSON_NULL: int(next(values)), JSON_MISSING_KEY: int(next(values))}
        for name in columns
    }


def _json_path(key: str) -> str:
    """Return the JSON path of an object's member `key`, quoted."""
    escaped = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'$."{escaped}"'


def in_order(counts: NullCounts, tokens: Iterable[str]) -> NullCounts:
    """Return `counts` with each column's tokens in the order of `tokens`."""
    order = {token: index for index, token in enumerate(tokens)}
    return {
        name: dict(sorted(found.items(), key=lambda item: order.get(item[0], 0)))
        for name, found in counts.items()
    }


def add_counts(total: NullCounts, more: NullCounts) -> NullCounts:
    """Return `total` with the counts of `more` added, column by column."""
    merged = {name: dict(counts) for name, counts in total.items()}
    for name, counts in more.items():
        column = merged.setdefault(name, {})
        for label, count in counts.items():
            column[label] = column.get(label, 0) + count
    return merged


NULL_SOURCES_METHOD = (
    "exact counts of each CSV null token, JSON null and missing JSON key in "
    "the source files, quarantined rows included but not CSV records that "
    "do not split into the header's columns; an append adds its parent's "
    "counts"
)


def null_counts(report: Mapping[str, Any]) -> NullCounts:
    """Return the null counts stored in a version's report."""
    columns = report.get("quality", {}).get("columns", {})
    return {
        name: stats["null_sources"]
        for name, stats in columns.items()
        if "null_sources" in stats
    }


def add_to_quality(
    quality: dict[str, Any], counts: NullCounts, parent: Mapping[str, Any] | None
) -> None:
    """Add the ``null_sources`` of each column to a quality report, in place.

    Args:
        counts: The counts of the ingest's own files.
        parent: The quality report of the appended parent, whose counts are
            added; None for a version of its own files.
    """
    total = add_counts(null_counts({"quality": parent or {}}), counts)
    columns = quality["columns"]
    for name, found in total.items():
        if name in columns:
            columns[name]["null_sources"] = found
    if total:
        quality["methods"]["null_sources"] = NULL_SOURCES_METHOD
