"""Checks that SQL from the configuration is one query or one expression.

Feature view SQL, derived column expressions and a model's ``where`` are put
into the queries that training and serving run, such as ``SELECT * FROM
(view SQL)``. DuckDB runs every statement of the text it is given, so a
second statement (``...; COPY (...) TO 'file'``) would run with them. These
checks use DuckDB's own parser, which splits statements as DuckDB runs them,
and reject the functions that change state or run SQL text that no check
has seen.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from functools import cache
from typing import Any

import duckdb

from appliance.dbrows import first_row

QUERY_TABLE_FUNCTIONS = frozenset(
    {
        "generate_series",
        "glob",
        "json_each",
        "json_tree",
        "parquet_scan",
        "range",
        "read_blob",
        "read_csv",
        "read_csv_auto",
        "read_json",
        "read_json_auto",
        "read_json_objects",
        "read_json_objects_auto",
        "read_ndjson",
        "read_ndjson_auto",
        "read_ndjson_objects",
        "read_parquet",
        "read_text",
        "repeat",
        "repeat_row",
        "unnest",
    }
)
"""Table functions that SQL from the configuration may call: those that only
read rows. Others, such as ``checkpoint``, ``enable_profiling`` or ``query``
(which runs the SQL text it is given), are rejected."""

STATE_FUNCTIONS = frozenset({"nextval", "setseed", "setval", "write_log"})
"""Scalar functions that change the state of the database or write its log."""

_lock = threading.Lock()
_database: duckdb.DuckDBPyConnection | None = None


def check_query(sql: str) -> None:
    """Check that `sql` is one SELECT query that can be used as a subquery.

    ``WITH ... SELECT``, ``FROM ...`` and ``VALUES`` count as SELECT queries.

    Raises:
        ValueError: `sql` does not parse, has more or fewer than one
            statement, is a statement other than a query, ends in ``;`` or a
            ``--`` comment, or calls a function that changes state.
    """
    try:
        statements = _cursor().extract_statements(sql)
    except duckdb.Error as exc:
        raise ValueError(f"sql does not parse: {_first_line(exc)}") from None
    if len(statements) != 1:
        kinds = ", ".join(s.type.name for s in statements) or "none"
        raise ValueError(
            f"sql must be one SELECT query, but it has {len(statements)} "
            f"statements ({kinds}); remove every statement after the query"
        )
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise ValueError(f"sql must be a SELECT query, not a {kind.name} statement")
    tree = _parse(f"SELECT * FROM ({sql})")
    if tree.get("error"):
        raise ValueError(
            "sql must be a query that can be read as a subquery, "
            f"SELECT * FROM (sql): {tree.get('error_message')}; remove a "
            "trailing ';' or '--' comment"
        )
    _check_functions("sql", tree)


def check_expression(label: str, expression: str) -> None:
    """Check that `expression` is one SQL expression and nothing more.

    The expression is parsed as ``SELECT (expression)``, as the queries that
    use it put it in brackets, so text that closes the bracket to add a
    clause or a statement is rejected.

    Args:
        label: What the expression is, named in errors, such as
            ``derived column 'age'``.
        expression: A DuckDB SQL expression.

    Raises:
        ValueError: The expression does not parse, is more than one
            expression, or calls a function that changes state.
    """
    tree = _parse(f"SELECT ({expression})")
    if tree.get("error"):
        raise ValueError(
            f"{label} is not a valid SQL expression: {tree.get('error_message')}"
        )
    statements = tree["statements"]
    node = statements[0]["node"] if len(statements) == 1 else {}
    extra = [
        key for key in ("modifiers", "group_expressions", "group_sets") if node.get(key)
    ]
    extra += [
        key
        for key in ("where_clause", "having", "qualify", "sample")
        if node.get(key) is not None
    ]
    if (
        len(statements) != 1
        or len(node.get("select_list", [])) != 1
        or node.get("from_table", {}).get("type") != "EMPTY"
        or node.get("cte_map", {}).get("map")
        or extra
    ):
        raise ValueError(f"{label} must be one SQL expression, got {expression!r}")
    _check_functions(label, tree)


def _check_functions(label: str, tree: dict[str, Any]) -> None:
    """Raise ValueError if the parsed SQL calls a function that changes state."""
    for node in _walk(tree):
        if node.get("type") == "TABLE_FUNCTION":
            name = str(node["function"]["function_name"]).lower()
            if name not in QUERY_TABLE_FUNCTIONS:
                raise ValueError(
                    f"{label} calls table function {name!r}, which SQL of the "
                    "configuration may not call; it may call "
                    f"{', '.join(sorted(QUERY_TABLE_FUNCTIONS))}"
                )
        elif node.get("class") == "FUNCTION":
            name = str(node["function_name"]).lower()
            if name in STATE_FUNCTIONS:
                raise ValueError(
                    f"{label} calls {name!r}, which changes the state of the "
                    "database; SQL of the configuration may only read"
                )


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


@cache
def _parse(sql: str) -> dict[str, Any]:
    """Return DuckDB's JSON parse tree of `sql`, with ``error`` set if invalid."""
    row = first_row(_cursor().execute("SELECT json_serialize_sql(?)", [sql]))
    assert row is not None
    tree: dict[str, Any] = json.loads(row[0])
    return tree


def _cursor() -> duckdb.DuckDBPyConnection:
    """Return a new cursor on an in-memory database used only to parse."""
    global _database
    with _lock:
        if _database is None:
            _database = duckdb.connect()
        return _database.cursor()


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0]
