"""The dataset columns that feature views take their entity keys and timestamps from.

A feature view joins rows by its entity keys and, when it has one, its event
timestamp. An ingest whose files lack such a column stores it as missing in
each of their rows, so the view would match no request (``replace``) or none
of the appended rows (``append``). `key_sources`
finds those columns from each view's SQL as DuckDB parses it: the top-level
SELECT item named like the key (``origin`` or ``CAST(time_hour AS
TIMESTAMPTZ) AS time_hour``) and the columns it reads. A view whose SQL does
not parse, or whose key is not a plain SELECT item (``SELECT *``, a UNION),
is matched by the key's own name. `check_dropped_keys` rejects such an
ingest, or only warns when it is forced.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from appliance.config import FeatureViewConfig
from appliance.errors import IngestError


@dataclass(frozen=True)
class KeyUse:
    """One feature view key read from a dataset column."""

    view: str
    key: str
    """The view's output column: an entity key or the timestamp."""
    role: str
    """``entity key`` or ``timestamp``."""


def key_sources(
    db: duckdb.DuckDBPyConnection, views: Sequence[FeatureViewConfig], dataset: str
) -> dict[str, list[KeyUse]]:
    """Return, per column of `dataset`, the view keys that are read from it.

    Args:
        db: Any DuckDB connection; only its SQL parser is used.
        views: The configured feature views.
        dataset: The dataset being ingested.
    """
    found: dict[str, list[KeyUse]] = {}
    for view in views:
        tree = _parse(db, view.sql)
        if tree is not None and dataset not in set(_tables(tree)):
            continue
        if tree is None and dataset not in view.sql:
            continue
        items = _select_items(tree)
        keys = [(key, "entity key") for key in view.entities]
        if view.timestamp:
            keys.append((view.timestamp, "timestamp"))
        for key, role in keys:
            for column in _read_by(items, key):
                found.setdefault(column, []).append(KeyUse(view.name, key, role))
    return found


def check_dropped_keys(
    db: duckdb.DuckDBPyConnection,
    dataset: str,
    missing: Sequence[str],
    views: Sequence[FeatureViewConfig],
    force: bool,
    mode: str = "replace",
) -> list[str]:
    """Reject an ingest of `dataset` that lacks a column view keys are read from.

    Args:
        db: Any DuckDB connection.
        dataset: The dataset being ingested.
        missing: Columns of its contract that the new files lack.
        views: The configured feature views.
        force: Return warnings instead of raising.
        mode: ``replace``, where the view would match no row at all, or
            ``append``, where it would match none of the appended rows.

    Returns:
        One warning per such column and view key when `force` is set.

    Raises:
        IngestError: Such a column is missing and `force` is not set.
    """
    uses = key_sources(db, views, dataset)
    dropped = [(column, use) for column in missing for use in uses.get(column, [])]
    if dropped and not force:
        column, use = dropped[0]
        if mode == "append":
            problem = (
                f"append to dataset {dataset!r} lacks column {column!r}, which "
                f"feature view {use.view!r} reads its {use.role} {use.key!r} from, "
                "so the view would match none of the appended rows; add the column "
                "to the files"
            )
        else:
            problem = (
                f"replace of dataset {dataset!r} drops column {column!r}, which "
                f"feature view {use.view!r} reads its {use.role} {use.key!r} from, "
                "so the view would match no row; keep the column in the files"
            )
        raise IngestError(
            f"{problem}, change [feature_views.{use.view}] in the configuration, "
            f"or ingest with --force to {mode} anyway"
        )
    outcome = (
        "matches none of the appended rows"
        if mode == "append"
        else "matches no row until it is back"
    )
    return [
        f"column {column!r} is missing, so feature view {use.view!r}, which reads "
        f"its {use.role} {use.key!r} from it, {outcome}"
        for column, use in dropped
    ]


def tables_read(db: duckdb.DuckDBPyConnection, sql: str) -> set[str] | None:
    """Return the names of the tables a query reads, or None if it does not parse.

    Only DuckDB's parser runs, so the tables need not exist. The names of
    common table expressions the query reads are included.
    """
    tree = _parse(db, sql)
    return None if tree is None else set(_tables(tree))


def _parse(db: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any] | None:
    row = db.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    tree = json.loads(row[0]) if row else {}
    if tree.get("error") or len(tree.get("statements", [])) != 1:
        return None
    return tree["statements"][0]["node"]


def _tables(node: Any) -> Iterator[str]:
    """Yield the name of every table the parsed query reads, CTEs included."""
    if isinstance(node, dict):
        if node.get("type") == "BASE_TABLE" and "table_name" in node:
            yield node["table_name"]
        for value in node.values():
            yield from _tables(value)
    elif isinstance(node, list):
        for value in node:
            yield from _tables(value)


def _select_items(tree: dict[str, Any] | None) -> dict[str, Any]:
    """Return the top-level SELECT items by output name; empty if not a SELECT."""
    if tree is None or tree.get("type") != "SELECT_NODE":
        return {}
    items = {}
    for item in tree.get("select_list", []):
        name = item.get("alias") or (
            item["column_names"][-1] if item.get("class") == "COLUMN_REF" else ""
        )
        if name:
            items[name] = item
    return items


def _read_by(items: dict[str, Any], key: str) -> set[str]:
    """Return the columns the SELECT item named `key` reads, or `key` itself."""
    item = items.get(key)
    if item is None:
        return {key}
    return set(_column_refs(item)) or {key}


def _column_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if node.get("class") == "COLUMN_REF":
            yield node["column_names"][-1]
            return
        for value in node.values():
            yield from _column_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _column_refs(value)
