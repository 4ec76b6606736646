"""Derived columns: SQL expressions that DuckDB evaluates at training and serving.

A model declares ``[models.NAME.derive]`` as ``name = "SQL expression"``. The
training frame computes every derived column in DuckDB over the dataset. A
derived column that is also a feature is computed again by the daemon over
the request rows with the same SQL. The columns it reads are first cast to
their types in the dataset, so both sides run one expression on one set of
types.

Only row-wise, deterministic expressions give the same value on one request
row as on the whole dataset. `check_expression` rejects window functions,
aggregates, subqueries and functions whose result depends on the time or on
a random state.
"""

from __future__ import annotations

import collections
import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cache
from typing import Any

import duckdb
import pyarrow as pa

from appliance.dbrows import first_row
from appliance.errors import shown

TIME_ZONE = "UTC"
"""Session time zone of every query that computes derived columns. DuckDB takes
the process's time zone by default, and functions of TIMESTAMP WITH TIME ZONE
values such as ``hour`` depend on it, so training and serving pin the same."""

CACHE_ENTRIES = 4096
"""Rows of derived values a `RowCache` keeps."""
MAX_CACHED_TEXT = 256
"""Maximum length in characters of a text value that a `RowCache` stores."""
CACHED_ROWS = 64
"""Maximum rows of a request whose derived features `compute` looks up in its
cache. A larger request runs in one DuckDB query, whose fixed cost is then
shared by more rows."""

_REJECTED_CLASSES = {
    "WINDOW": "a window function",
    "SUBQUERY": "a subquery",
    "STAR": "a star expression",
}


class ExpressionError(ValueError):
    """A derived column expression that cannot be computed row by row."""


def check_expression(name: str, expression: str) -> set[str]:
    """Check that `expression` is row-wise and deterministic and return its columns.

    Args:
        name: The derived column, named in error messages.
        expression: A DuckDB SQL expression such as ``distance / 1000``.

    Returns:
        The names of the columns the expression reads.

    Raises:
        ExpressionError: The expression does not parse, or uses a window
            function, an aggregate, a subquery or a non-deterministic function.
    """
    tree = _parse(name, expression)
    columns: set[str] = set()
    for node in _walk(tree):
        kind = node.get("class")
        if kind in _REJECTED_CLASSES:
            raise ExpressionError(
                f"derived column {name!r} uses {_REJECTED_CLASSES[kind]}, which "
                "cannot be computed on one request row at serving; use a row-wise "
                "expression"
            )
        if kind == "COLUMN_REF":
            columns.add(node["column_names"][-1])
        elif kind == "FUNCTION" and not node.get("is_operator"):
            _check_function(name, node["function_name"])
    return columns


def derived_inputs(
    derive: Mapping[str, str], features: list[str]
) -> tuple[dict[str, str], set[str]]:
    """Return the derived features (with the derived columns they need) and raw inputs.

    Args:
        derive: Every derived column of the model, by name.
        features: The model's features.

    Returns:
        The derived columns to compute at serving, in declaration order, and
        the dataset columns those expressions read.
    """
    needed: set[str] = set()
    pending = [name for name in features if name in derive]
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        pending.extend(c for c in check_expression(name, derive[name]) if c in derive)
    raw = set()
    for name in needed:
        raw |= {c for c in check_expression(name, derive[name]) if c not in derive}
    return {n: e for n, e in derive.items() if n in needed}, raw


def unused_derived(
    derive: Mapping[str, str], used: Iterable[str], where: str | None
) -> list[str]:
    """Return the derived columns that nothing of the model reads, in order.

    Args:
        derive: Every derived column of the model, by name.
        used: The columns the model reads by name: its features, target,
            split column and event_timestamp.
        where: The model's row filter. A derived column whose name appears
            in it as a word counts as used.

    A derived column that a used one reads is used too. Names match without
    case, as DuckDB matches identifiers. An expression that does not parse
    counts as reading nothing, because its own check reports it.
    """
    lowered = {name.lower(): name for name in derive}
    pending = [lowered[n.lower()] for n in used if n.lower() in lowered]
    if where:
        pending += [n for n in derive if _names_word(where, n)]
    needed: set[str] = set()
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        reads = _expression_columns(name, derive[name])
        pending.extend(lowered[c.lower()] for c in reads if c.lower() in lowered)
    return [name for name in derive if name not in needed]


def _expression_columns(name: str, expression: str) -> set[str]:
    """Return the columns `expression` reads, or none when it does not parse."""
    try:
        tree = _parse(name, expression)
    except ExpressionError:
        return set()
    return {
        node["column_names"][-1]
        for node in _walk(tree)
        if node.get("class") == "COLUMN_REF"
    }


def _names_word(text: str, name: str) -> bool:
    """Return whether `name` appears in `text` as a whole word, in any case."""
    pattern = rf"(?<![\w$]){re.escape(name)}(?![\w$])"
    return re.search(pattern, text, flags=re.IGNORECASE) is not None


def column_reads(derive: Mapping[str, str]) -> set[str]:
    """Return the lowercase names of the columns that derived columns read.

    Derived columns read by other derived columns are left out. Names are
    lowercase because DuckDB matches identifiers without case.
    """
    read: set[str] = set()
    for name, expression in derive.items():
        read |= {column.lower() for column in check_expression(name, expression)}
    return read - {name.lower() for name in derive}


class RowCache:
    """Bounded LRU cache of derived values by the typed input values of a row.

    A derived value is a function of the values and types of the columns its
    expression reads (`check_expression` admits only row-wise, deterministic
    expressions), so a hit gives what DuckDB would compute. It keeps at most
    `max_entries` rows, and a row with a text value longer than
    `MAX_CACHED_TEXT` characters, a list or a struct is never stored, so its
    size is bounded by entries times input columns times that length. With
    two input columns (a time as text and a float), 4,096 rows took 2.6 MB
    in one tracemalloc measurement. Methods may be called from several
    threads.
    """

    def __init__(self, max_entries: int = CACHE_ENTRIES) -> None:
        self.max_entries = max_entries
        self._rows: collections.OrderedDict[Any, tuple[Any, ...]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        """Return the number of rows in the cache."""
        return len(self._rows)

    def clear(self) -> None:
        """Forget every cached row, such as the input values of erased rows."""
        with self._lock:
            self._rows.clear()

    def get(self, keys: Sequence[Any]) -> tuple[list[Any], list[int]]:
        """Look up rows by key.

        Returns:
            The cached values of each row (None for a miss) and the indexes
            of the rows that missed.
        """
        values: list[Any] = [None] * len(keys)
        missed = []
        with self._lock:
            for index, key in enumerate(keys):
                cached = None if key is None else self._rows.get(key)
                if cached is None:
                    missed.append(index)
                else:
                    self._rows.move_to_end(key)
                    values[index] = cached
            self.hits += len(keys) - len(missed)
            self.misses += len(missed)
        return values, missed

    def put(self, keys: Sequence[Any], values: Sequence[tuple[Any, ...]]) -> None:
        """Store each row's values under its key; a None key is skipped."""
        with self._lock:
            for key, value in zip(keys, values):
                if key is None:
                    continue
                self._rows[key] = value
                self._rows.move_to_end(key)
            while len(self._rows) > self.max_entries:
                self._rows.popitem(last=False)


def row_keys(columns: Sequence[Any], rows: int) -> list[Any]:
    """Return a `RowCache` key per row of Arrow arrays, or None for an uncached row.

    The key contains each column's Arrow type, so 7 read as BIGINT and 7.0 read
    as DOUBLE get different entries, and a float's hex text, so -0.0 and 0.0
    do too.
    """
    types = tuple(str(column.type) for column in columns)
    if not columns:
        return [(types, ())] * rows
    values = [column.to_pylist() for column in columns]
    return [_row_key(types, row) for row in zip(*values)]


def _row_key(types: tuple[str, ...], values: tuple[Any, ...]) -> Any:
    parts: list[Any] = []
    for value in values:
        if isinstance(value, float):
            parts.append(value.hex())
        elif isinstance(value, (list, dict)):
            return None
        elif isinstance(value, str) and len(value) > MAX_CACHED_TEXT:
            return None
        else:
            parts.append(value)
    return (types, tuple(parts))


def select_sql(derive: Mapping[str, str], source: str) -> str:
    """Return the SELECT that adds the derived columns to the rows of `source`.

    Training and serving both use this statement, so a derived column may
    refer to a derived column declared before it.
    """
    derived = "".join(
        f", ({expression}) AS {quote_identifier(name)}"
        for name, expression in derive.items()
    )
    return f"SELECT *{derived} FROM {source}"


def quote_identifier(name: str) -> str:
    """Return `name` quoted as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def _parse(name: str, expression: str) -> dict[str, Any]:
    tree = json.loads(_serialize(expression))
    if tree.get("error"):
        raise ExpressionError(
            f"derived column {name!r} is not a valid SQL expression: "
            f"{tree.get('error_message')}"
        )
    statements = tree["statements"]
    select_list = statements[0]["node"].get("select_list", [])
    if len(statements) != 1 or len(select_list) != 1:
        raise ExpressionError(
            f"derived column {name!r} must be one SQL expression, got {expression!r}"
        )
    node = statements[0]["node"]
    if node.get("from_table", {}).get("type") != "EMPTY" or node.get("where_clause"):
        raise ExpressionError(
            f"derived column {name!r} must be one SQL expression, got {expression!r}"
        )
    return select_list[0]


@cache
def _serialize(expression: str) -> str:
    """Return DuckDB's JSON parse tree of ``SELECT expression``."""
    with _cursor() as db:
        row = db.execute("SELECT json_serialize_sql(?)", [f"SELECT {expression}"])
        return str(first_row(row)[0])  # type: ignore[index]


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "class" in node:
            yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _check_function(name: str, function: str) -> None:
    kinds = _function_kinds().get(function.lower())
    if kinds is None:
        raise ExpressionError(
            f"derived column {name!r} calls unknown function {function!r}"
        )
    if kinds & {"aggregate", "window", "table", "table_macro", "VOLATILE"}:
        raise ExpressionError(
            f"derived column {name!r} calls {function!r}, which is an aggregate, "
            "window, table or random function; a derived feature must depend only "
            "on the values of its own row"
        )
    if not kinds & {"CONSISTENT", "macro"}:
        raise ExpressionError(
            f"derived column {name!r} calls {function!r}, whose result depends on "
            "the time of the query; a derived feature must give the same value at "
            "training and at serving"
        )


@cache
def _function_kinds() -> dict[str, set[str]]:
    """Return, per DuckDB function name, its function types and stabilities."""
    kinds: dict[str, set[str]] = {}
    with _cursor() as db:
        rows = db.execute(
            "SELECT lower(function_name), function_type, stability "
            "FROM duckdb_functions()"
        ).fetchall()
    for function, kind, stability in rows:
        entry = kinds.setdefault(function, set())
        entry.add(kind)
        if kind == "scalar" and stability:
            entry.add(stability)
    return kinds


def feature_columns(numeric: list[str], categorical: list[str]) -> list[str]:
    """Return the SELECT items that type features as the pipeline reads them.

    Numeric features become DOUBLE (NULL for missing) and categorical features
    text with ``''`` for missing. Training frames and serving both use them.
    """
    columns = [
        f"CAST({quote_identifier(n)} AS DOUBLE) AS {quote_identifier(n)}"
        for n in numeric
    ]
    columns += [
        f"coalesce(CAST({quote_identifier(n)} AS VARCHAR), '') AS {quote_identifier(n)}"
        for n in categorical
    ]
    return columns


def compute(
    derive: Mapping[str, str],
    request: list[Mapping[str, str]],
    numeric: list[str],
    categorical: list[str],
    table: Any,
) -> Any:
    """Compute derived features over the rows of an Arrow table with DuckDB.

    Each request column is cast to its type in the dataset before the
    expressions run, so they see the values and types they saw at training.
    A table of at most `CACHED_ROWS` rows takes the values of rows seen
    before from a `RowCache` and computes only the others.

    Args:
        derive: The derived columns to compute, in declaration order.
        request: The request columns, with ``name`` and ``sql_type``.
        numeric: Derived features typed as DOUBLE.
        categorical: Derived features typed as text.
        table: An Arrow table holding the request columns.

    Returns:
        An Arrow table with one column per derived feature, numeric first.

    Raises:
        CastError: A request value cannot be cast to its dataset type.
        duckdb.Error: An expression fails on these rows.
    """
    if table.num_rows > CACHED_ROWS:
        return _compute_sql(derive, request, numeric, categorical, table)
    reads = _column_reads(tuple(derive.items()))
    names = [c["name"] for c in request if c["name"].lower() in reads]
    if {n.lower() for n in names} != reads or any(
        n not in table.column_names for n in names
    ):
        # Only the query over every column raises the error DuckDB gives.
        return _compute_sql(derive, request, numeric, categorical, table)
    keys = row_keys([table.column(n) for n in names], table.num_rows)
    rows_cache = _feature_cache(derive, request, numeric, categorical)
    values, missed = rows_cache.get(keys)
    if missed:
        part = table.take(pa.array(missed, pa.int64()))
        try:
            result = _compute_sql(derive, request, numeric, categorical, part)
        except CastError as exc:
            exc.row = missed[exc.row]
            raise
        columns = [result.column(i).to_pylist() for i in range(result.num_columns)]
        computed = list(zip(*columns))
        for index, row in zip(missed, computed):
            values[index] = row
        rows_cache.put([keys[index] for index in missed], computed)
    types = [pa.float64()] * len(numeric) + [pa.string()] * len(categorical)
    return pa.table(
        {
            name: pa.array([row[i] for row in values], types[i])
            for i, name in enumerate([*numeric, *categorical])
        }
    )


def _compute_sql(
    derive: Mapping[str, str],
    request: list[Mapping[str, str]],
    numeric: list[str],
    categorical: list[str],
    table: Any,
) -> Any:
    """Compute derived features over every row of `table` in one DuckDB query."""
    casts = ", ".join(
        f"CAST({quote_identifier(c['name'])} AS {c['sql_type']}) "
        f"AS {quote_identifier(c['name'])}"
        for c in request
    )
    source = f"(SELECT {casts} FROM request_rows)"
    columns = ", ".join(feature_columns(numeric, categorical))
    sql = f"SELECT {columns} FROM ({select_sql(derive, source)})"
    # A cursor on one shared in-memory database costs a few milliseconds, while
    # opening a new database per request costs tens of milliseconds.
    with _cursor() as db:
        db.register("request_rows", table)
        try:
            return db.sql(sql).to_arrow_table()
        except duckdb.ConversionException:
            _raise_cast_error(db, request)
            raise


@cache
def _column_reads(derive: tuple[tuple[str, str], ...]) -> set[str]:
    return column_reads(dict(derive))


_FEATURE_CACHES = 16
"""Models' derived feature sets whose `RowCache` is kept; the oldest goes."""
_feature_caches: collections.OrderedDict[Any, RowCache] = collections.OrderedDict()
_feature_caches_lock = threading.Lock()


def _feature_cache(
    derive: Mapping[str, str],
    request: list[Mapping[str, str]],
    numeric: list[str],
    categorical: list[str],
) -> RowCache:
    """Return the cache of one set of derived features and request types."""
    key = (
        tuple(derive.items()),
        tuple((c["name"], c["sql_type"]) for c in request),
        tuple(numeric),
        tuple(categorical),
    )
    with _feature_caches_lock:
        found = _feature_caches.get(key)
        if found is None:
            found = _feature_caches[key] = RowCache()
            while len(_feature_caches) > _FEATURE_CACHES:
                _feature_caches.popitem(last=False)
        _feature_caches.move_to_end(key)
        return found


def clear_feature_caches() -> None:
    """Forget the cached rows of every set of derived features."""
    with _feature_caches_lock:
        caches = list(_feature_caches.values())
    for row_cache in caches:
        row_cache.clear()


_database: Any = None
_database_lock = threading.Lock()


def _cursor() -> Any:
    """Return a new cursor on the shared in-memory database, one per call."""
    global _database
    # A DuckDB connection object is not thread-safe, so its cursors are made
    # under a lock; each cursor is then used by one thread only.
    with _database_lock:
        if _database is None:
            _database = duckdb.connect()
            _database.execute(f"SET GLOBAL TimeZone = '{TIME_ZONE}'")
        return _database.cursor()


_thread_cursors = threading.local()


def thread_cursor() -> Any:
    """Return the calling thread's cursor on the shared in-memory database.

    The cursor is made once per thread and kept, which spares the cost of a
    new cursor per query. It must not be closed or passed to another thread.
    """
    cursor = getattr(_thread_cursors, "cursor", None)
    if cursor is None:
        cursor = _thread_cursors.cursor = _cursor()
    return cursor


def utc_cursor(db: Any) -> Any:
    """Return a cursor on `db` whose session time zone is `TIME_ZONE`."""
    cursor = db.cursor()
    cursor.execute(f"SET TimeZone = '{TIME_ZONE}'")
    return cursor


class CastError(ValueError):
    """A request value that cannot be cast to the column's type in the dataset."""

    def __init__(self, column: str, row: int, value: Any, sql_type: str) -> None:
        super().__init__(
            f"value {shown(value)} cannot be cast to {sql_type}, the type of "
            f"{column!r} in the dataset"
        )
        self.column = column
        self.row = row


def _raise_cast_error(db: Any, request: list[Mapping[str, str]]) -> None:
    for spec in request:
        name = quote_identifier(spec["name"])
        found = db.execute(
            f"SELECT index, value FROM (SELECT row_number() OVER () - 1 AS index, "
            f"{name} AS value, TRY_CAST({name} AS {spec['sql_type']}) AS cast_value "
            "FROM request_rows) WHERE value IS NOT NULL AND cast_value IS NULL "
            "ORDER BY index LIMIT 1"
        ).fetchall()
        if found:
            row, value = found[0]
            raise CastError(spec["name"], int(row), value, spec["sql_type"])


def cast_failures(
    request: Sequence[Mapping[str, str]], table: Any
) -> dict[int, tuple[str, Any]]:
    """Return the rows of an Arrow table whose request values DuckDB cannot cast.

    One query finds every such row, where `compute` stops at the first.

    Returns:
        By row index, the first column in request order whose value cannot be
        cast to its dataset type, and that value.
    """
    names = [spec["name"] for spec in request if spec["name"] in table.column_names]
    if not names:
        return {}
    types = {spec["name"]: spec["sql_type"] for spec in request}
    failed = [
        f"({quote_identifier(n)} IS NOT NULL AND "
        f"TRY_CAST({quote_identifier(n)} AS {types[n]}) IS NULL)"
        for n in names
    ]
    values = ", ".join(f"{quote_identifier(n)}::VARCHAR" for n in names)
    sql = (
        f"SELECT index, [{', '.join(failed)}], [{values}] FROM (SELECT "
        "row_number() OVER () - 1 AS index, * FROM request_rows) "
        f"WHERE {' OR '.join(failed)} ORDER BY index"
    )
    with _cursor() as db:
        db.register("request_rows", table)
        rows = db.execute(sql).fetchall()
    found = {}
    for index, flags, texts in rows:
        position = flags.index(True)
        found[int(index)] = (names[position], texts[position])
    return found
