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

The first version of a dataset without a declared contract has no columns to
compare with. So `check_first_keys` compares the files with the key columns
that are surely the dataset's: those of a view that reads no other table, and
those qualified with the dataset's name or alias. A view whose key is read
from an unqualified column of a join is not checked, because the column may
be another table's.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from appliance.config import FeatureViewConfig
from appliance.dbrows import first_row
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
    db: duckdb.DuckDBPyConnection,
    views: Sequence[FeatureViewConfig],
    dataset: str,
    owned_only: bool = False,
) -> dict[str, list[KeyUse]]:
    """Return, per column of `dataset`, the view keys that are read from it.

    Args:
        db: Any DuckDB connection; only its SQL parser is used.
        views: The configured feature views.
        dataset: The dataset being ingested.
        owned_only: Leave out the columns that may be another table's: those
            of a view whose SQL does not parse, and unqualified columns of a
            view that reads other tables too.
    """
    found: dict[str, list[KeyUse]] = {}
    for view in views:
        tree = _parse(db, view.sql)
        if tree is not None and dataset not in set(_tables(tree)):
            continue
        if tree is None and (owned_only or dataset not in view.sql):
            continue
        items = _select_items(tree)
        tables = _table_names(tree) if tree is not None else {}
        keys = [(key, "entity key") for key in view.entities]
        if view.timestamp:
            keys.append((view.timestamp, "timestamp"))
        for key, role in keys:
            columns = {
                reference[-1]
                for reference in _read_by(items, key)
                if not owned_only or _owned(reference, tables, dataset)
            }
            for column in columns:
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
    return _reject_or_warn(dataset, dropped, force, mode)


def check_first_keys(
    db: duckdb.DuckDBPyConnection,
    dataset: str,
    columns: Collection[str],
    views: Sequence[FeatureViewConfig],
    force: bool,
) -> list[str]:
    """Reject a first version of `dataset` that lacks a column view keys are read from.

    Only the columns that are surely the dataset's are checked (see
    `key_sources` with ``owned_only``). Names match in any case, as DuckDB
    matches identifiers.

    Args:
        db: Any DuckDB connection.
        dataset: The dataset being ingested, without a version or a contract.
        columns: The columns of the new files.
        views: The configured feature views.
        force: Return warnings instead of raising.

    Returns:
        One warning per such column and view key when `force` is set.

    Raises:
        IngestError: Such a column is missing and `force` is not set.
    """
    present = {column.lower() for column in columns}
    uses = key_sources(db, views, dataset, owned_only=True)
    lacking = [
        (column, use)
        for column, found in uses.items()
        if column.lower() not in present
        for use in found
    ]
    return _reject_or_warn(dataset, lacking, force, "first")


def _reject_or_warn(
    dataset: str, lacking: list[tuple[str, KeyUse]], force: bool, mode: str
) -> list[str]:
    """Raise for the first column in `lacking`, or return warnings when forced.

    Args:
        mode: ``replace``, ``append`` or ``first``, the first version.
    """
    if lacking and not force:
        column, use = lacking[0]
        read = f"feature view {use.view!r} reads its {use.role} {use.key!r} from"
        if mode == "append":
            problem = (
                f"append to dataset {dataset!r} lacks column {column!r}, which "
                f"{read}, so the view would match none of the appended rows; add "
                "the column to the files"
            )
        elif mode == "first":
            problem = (
                f"first version of dataset {dataset!r} lacks column {column!r}, "
                f"which {read}, so the view would match no row; add the column "
                "to the files"
            )
        else:
            problem = (
                f"replace of dataset {dataset!r} drops column {column!r}, which "
                f"{read}, so the view would match no row; keep the column in the "
                "files"
            )
        action = "create the version" if mode == "first" else mode
        raise IngestError(
            f"{problem}, change [feature_views.{use.view}] in the configuration, "
            f"or ingest with --force to {action} anyway"
        )
    outcomes = {
        "append": "matches none of the appended rows",
        "first": "matches no row until a version has the column",
        "replace": "matches no row until it is back",
    }
    return [
        f"column {column!r} is missing, so feature view {use.view!r}, which reads "
        f"its {use.role} {use.key!r} from it, {outcomes[mode]}"
        for column, use in lacking
    ]


def tables_read(db: duckdb.DuckDBPyConnection, sql: str) -> set[str] | None:
    """Return the names of the tables a query reads, or None if it does not parse.

    Only DuckDB's parser runs, so the tables need not exist. The names of
    common table expressions the query reads are included.
    """
    tree = _parse(db, sql)
    return None if tree is None else set(_tables(tree))


def _parse(db: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any] | None:
    row = first_row(db.execute("SELECT json_serialize_sql(?)", [sql]))
    tree = json.loads(row[0]) if row else {}
    if tree.get("error") or len(tree.get("statements", [])) != 1:
        return None
    return tree["statements"][0]["node"]


def _tables(node: Any) -> Iterator[str]:
    """Yield the name of every table the parsed query reads, CTEs included."""
    for table in _base_tables(node):
        yield table["table_name"]


def _base_tables(node: Any) -> Iterator[dict[str, Any]]:
    """Yield the node of every table the parsed query reads, CTEs included."""
    if isinstance(node, dict):
        if node.get("type") == "BASE_TABLE" and "table_name" in node:
            yield node
        for value in node.values():
            yield from _base_tables(value)
    elif isinstance(node, list):
        for value in node:
            yield from _base_tables(value)


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


def _table_names(tree: dict[str, Any]) -> dict[str, str]:
    """Return the name of each table the parsed query reads, by lowercase alias.

    A table without an alias is found by its own name.
    """
    names = {}
    for node in _base_tables(tree):
        alias = node.get("alias") or node["table_name"]
        names[alias.lower()] = node["table_name"]
    return names


def _owned(reference: tuple[str, ...], tables: dict[str, str], dataset: str) -> bool:
    """Tell whether a column reference is surely a column of `dataset`.

    An unqualified column is the dataset's only when the query reads no other
    table.
    """
    if len(reference) == 1:
        return set(tables.values()) == {dataset}
    return tables.get(reference[-2].lower()) == dataset


def _read_by(items: dict[str, Any], key: str) -> set[tuple[str, ...]]:
    """Return the column references the SELECT item named `key` reads.

    A reference is the column's qualified name, such as ``("w", "origin")``.
    Without such an item, the reference is `key` itself.
    """
    item = items.get(key)
    if item is None:
        return {(key,)}
    return set(_column_refs(item)) or {(key,)}


def _column_refs(node: Any) -> Iterator[tuple[str, ...]]:
    if isinstance(node, dict):
        if node.get("class") == "COLUMN_REF":
            yield tuple(node["column_names"])
            return
        for value in node.values():
            yield from _column_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _column_refs(value)
