"""Types that the columns of a file look like in its first rows.

A column that ends as text while its first rows look numeric, boolean or
timed gets a warning naming its first value that is not (see
`_types.text_fallback_warnings`). CSV files take the types from the sniffer's
dialect; JSON-lines files from the JSON types of their values.
"""

from __future__ import annotations

import duckdb

from appliance.storage._contracts import STAGED
from appliance.storage._loading import normalize_type
from appliance.storage._sources import SNIFF_ROWS, Dialect
from appliance.storage._sql import ident
from appliance.storage._types import INTEGER_TYPES, exact_text_sql


def iso_sniffed_types(dialect: Dialect) -> dict[str, str]:
    """Return the sniffed types, without timestamps in a format other than ISO."""
    fmt = dialect.timestamp_format
    if fmt is None or fmt.startswith("%Y-%m-%d"):
        return dialect.sniffed_types
    return {
        name: kind
        for name, kind in dialect.sniffed_types.items()
        if not kind.startswith("TIMESTAMP")
    }


def written_booleans(
    db: duckdb.DuckDBPyConnection, first_types: list[dict[str, str]], text: list[str]
) -> list[dict[str, str]]:
    """Return `first_types` without the BOOLEAN text columns written otherwise.

    DuckDB's sniffer also takes ``yes`` and ``no`` for BOOLEAN, but
    `exact_text_sql` does not, so such a column stays text without looking
    typed. A column is left out when a value in a file's first rows is not
    written as a BOOLEAN.
    """
    exact_types = []
    for index, types in enumerate(first_types):
        booleans = [n for n, kind in types.items() if kind == "BOOLEAN" and n in text]
        if booleans:
            checks = ", ".join(
                f"bool_and({exact_text_sql(ident(n), 'BOOLEAN')})" for n in booleans
            )
            row = db.execute(
                f"SELECT {checks} FROM {STAGED} WHERE _file = ? AND _record < ?",
                [index, SNIFF_ROWS],
            ).fetchall()[0]
            failed = {n for n, written in zip(booleans, row) if written is False}
            types = {n: kind for n, kind in types.items() if n not in failed}
        exact_types.append(types)
    return exact_types


def mostly_numbers(
    db: duckdb.DuckDBPyConnection, first_types: list[dict[str, str]], text: list[str]
) -> list[dict[str, str]]:
    """Return `first_types` with the text columns whose first rows are mostly
    numbers, as BIGINT or DOUBLE.

    The CSV sniffer takes a column for text when a single value of a file's
    first rows is not a number, such as ``N/A`` at line 5. So a column also
    looks numeric when at most a tenth of its non-missing values in those
    rows are not numbers (`looks_numeric`). Its warning then names that
    value, as it names one further down. Numbers with a decimal comma are
    not counted.
    """
    found = []
    for index, types in enumerate(first_types):
        candidates = [name for name in text if types.get(name, "VARCHAR") == "VARCHAR"]
        if candidates:
            types = {**types, **_count_numbers(db, index, candidates)}
        found.append(types)
    return found


def _count_numbers(
    db: duckdb.DuckDBPyConnection, index: int, columns: list[str]
) -> dict[str, str]:
    """Return the numeric type of each of `columns` whose values in the first
    rows of file `index` are mostly numbers."""
    selects = []
    for name in columns:
        v = ident(name)
        integer = (
            f"TRY_CAST({v} AS BIGINT) IS NOT NULL AND {exact_text_sql(v, 'BIGINT')}"
        )
        number = f"TRY_CAST({v} AS DOUBLE) IS NOT NULL"
        selects += [f"count({v})", f"count_if({integer})", f"count_if({number})"]
    row = db.execute(
        f"SELECT {', '.join(selects)} FROM {STAGED} WHERE _file = ? AND _record < ?",
        [index, SNIFF_ROWS],
    ).fetchall()[0]
    counts = iter(row)
    looks = {}
    for name in columns:
        # DuckDB 2.0.1's count_if returns NULL over no rows.
        present, integers, numbers = (int(next(counts) or 0) for _ in range(3))
        if looks_numeric(numbers, present):
            looks[name] = "BIGINT" if integers == numbers else "DOUBLE"
    return looks


def looks_numeric(numbers: int, present: int) -> bool:
    """Tell whether a column with `numbers` numbers among `present` values
    looks numeric: at least one value is a number, and at most a tenth of
    the values are not.

    With fewer numbers, a column such as ``x, 2, 3`` is taken for text from its
    start and gets no warning.
    """
    return numbers > 0 and 10 * (present - numbers) <= present


_JSON_FIRST_ROWS = SNIFF_ROWS
"""Rows of a JSON-lines file whose values give the type a column looks like,
as many as the CSV sniffer reads."""
_JSON_NUMBERS = {"BIGINT": "BIGINT", "UBIGINT": "BIGINT", "DOUBLE": "DOUBLE"}
"""DuckDB's ``json_type`` names of JSON numbers, with the type they look like."""
_SCALAR_LOOKS = {
    **{kind: "BIGINT" for kind in INTEGER_TYPES},
    "DOUBLE": "DOUBLE",
    "BOOLEAN": "BOOLEAN",
}
"""Types of ``read_json`` columns of numbers or booleans, with the type they
look like."""


def json_first_types(
    db: duckdb.DuckDBPyConnection, files: int, columns: list[str]
) -> list[dict[str, str]]:
    """Return the type each of `columns` looks like in each file's first rows.

    A column of numbers, or of ``true`` and ``false``, in a file's first
    rows looks like BIGINT, DOUBLE or BOOLEAN; other columns are left out.
    Read from table ``rows_N``, where a column is of a scalar type when all
    its values in file N have that JSON type, and of type JSON when they
    have several.
    """
    found = []
    for index in range(files):
        table = f"rows_{index}"
        described = db.execute(f"DESCRIBE {table}").fetchall()
        kinds = {
            name: _SCALAR_LOOKS.get(normalize_type(kind))
            for name, kind, *_ in described
            if name in columns
        }
        mixed = [name for name, kind, *_ in described if kind == "JSON"]
        mixed = [name for name in mixed if name in columns]
        if mixed:
            kinds.update(_first_json_types(db, table, mixed))
        found.append({name: kind for name, kind in kinds.items() if kind})
    return found


def _first_json_types(
    db: duckdb.DuckDBPyConnection, table: str, mixed: list[str]
) -> dict[str, str | None]:
    """Return the type that each JSON column of `table` looks like in its first rows."""
    selects = ", ".join(
        f"histogram(json_type({ident(name)})) FILTER (WHERE {ident(name)} IS NOT NULL)"
        for name in mixed
    )
    row = db.execute(
        f"SELECT {selects} FROM (SELECT * FROM {table} LIMIT {_JSON_FIRST_ROWS})"
    ).fetchall()[0]
    # A column without a value in the first rows has NULL for its histogram.
    return {name: _common_type(counts or {}) for name, counts in zip(mixed, row)}


def _common_type(counts: dict[str, int]) -> str | None:
    """Return the type that values of JSON types with `counts` look like, if any.

    Values that are JSON numbers but for at most a tenth of them look
    numeric, as `mostly_numbers` takes CSV text, so a string among them,
    such as ``"n/a"``, is named in the warning wherever it is.
    """
    if set(counts) == {"BOOLEAN"}:
        return "BOOLEAN"
    numbers = {kind: n for kind, n in counts.items() if kind in _JSON_NUMBERS}
    if not looks_numeric(sum(numbers.values()), sum(counts.values())):
        return None
    return "DOUBLE" if "DOUBLE" in numbers else "BIGINT"
