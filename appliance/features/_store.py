"""The feature store: datasets as SQL views in DuckDB, and point-in-time frames.

Feature view SQL names datasets as tables. `open_store` opens an in-memory
DuckDB where each dataset is a view over the Parquet files of its latest
version, so the catalog file is not locked while features are computed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from appliance.config import FeatureViewConfig
from appliance.derive import ExpressionError, check_expression
from appliance.errors import ConfigError, StorageError, one_line
from appliance.features._join import join_table
from appliance.features._prepared import ViewCache
from appliance.features._sql import feature_columns, ident, join_sql
from appliance.storage import (
    Catalog,
    DatasetVersion,
    encrypted_columns,
    incomplete_files_message,
    list_versions,
    lost_files_message,
    scan_sql,
    tables_read,
)

logger = logging.getLogger(__name__)


@dataclass
class FeatureStore:
    """An in-memory DuckDB with one view per dataset, at its latest version."""

    db: duckdb.DuckDBPyConnection
    versions: dict[str, str]
    """Version id read of each dataset."""
    tables: dict[str, pa.Table] = field(default_factory=dict)
    """Arrow tables registered on `db` and on every `cursor`, by name."""
    cache: ViewCache = field(default_factory=ViewCache)
    """Views' output columns and rows, read once and kept for later joins.
    Code that changes a table of `db` that a view reads must call
    `clear_cache`."""
    encrypted: frozenset[str] = frozenset()
    """Columns that any of the versions read stores encrypted."""
    unreadable: dict[str, str] = field(default_factory=dict)
    """Datasets left without a view because their files could not be read,
    with the error message that names the lost folder."""

    def view_columns(self, view: FeatureViewConfig) -> list[str]:
        """Return the output columns of a feature view's SQL.

        Raises:
            ConfigError: The SQL is invalid or names an unknown dataset.
        """
        try:
            columns = self.cache.columns(view.sql, lambda: self._describe(view.sql))
        except duckdb.Error as exc:
            known = ", ".join(sorted(self.versions)) or "none"
            lost = "".join(f"; {error}" for _, error in sorted(self.unreadable.items()))
            raise ConfigError(
                f"invalid SQL of feature view {view.name!r}: {_reason(exc)}; "
                f"datasets with a version: {known}{lost}"
            ) from None
        missing = [
            c for c in (*view.entities, view.timestamp) if c and c not in columns
        ]
        if missing:
            raise ConfigError(
                f"feature view {view.name!r} does not return column {missing[0]!r}; "
                f"its SQL returns {', '.join(columns)}"
            )
        return columns

    def versions_read(self, views: Sequence[FeatureViewConfig]) -> dict[str, str]:
        """Return the version of each dataset that the views' SQL reads.

        Dataset names match table names as SQL matches them, ignoring case.
        """
        read: set[str] = set()
        for view in views:
            tables = tables_read(self.db, view.sql)
            if tables is None:
                # NOTE: SQL that does not parse cannot be joined either, but
                # naming every dataset keeps retention on the safe side.
                return dict(self.versions)
            read |= {name.lower() for name in tables}
        return {d: v for d, v in self.versions.items() if d.lower() in read}

    def _describe(self, sql: str) -> list[str]:
        return [name for name, *_ in self.db.execute(f"DESCRIBE {sql}").fetchall()]

    def clear_cache(self) -> None:
        """Forget the views' columns and rows read so far.

        Call it after changing a table of `db` that a view reads; the
        datasets' versions a store reads never change.
        """
        self.cache.clear()

    def joined_sql(
        self,
        rows: str,
        views: Sequence[FeatureViewConfig],
        event_time: str | None,
    ) -> str:
        """Return `rows` (SQL over this store) with the views' features joined."""
        row_columns = [r[0] for r in self.db.execute(f"DESCRIBE {rows}").fetchall()]
        columns = {view.name: self.view_columns(view) for view in views}
        return join_sql(
            rows, row_columns, views, columns, ident(event_time) if event_time else None
        )

    def joined_table(
        self,
        rows: pa.Table,
        views: Sequence[FeatureViewConfig],
        event_time: str | None,
    ) -> pa.Table:
        """Return `rows` with the views' features joined, as `joined_sql` does.

        Each view's rows are read and sorted at its first join and kept in
        `cache` for the next ones.

        Raises:
            ConfigError: A view's SQL is invalid, a view adds a column the rows
                have, or a timestamped view has no event time column.
            duckdb.Error: A derived column's expression failed, or an event
                time cannot be cast to a time.
        """
        columns = {view.name: self.view_columns(view) for view in views}
        return join_table(self.db, rows, views, columns, event_time, self.cache)

    def joined_source(
        self,
        rows: str,
        views: Sequence[FeatureViewConfig],
        event_time: str | None,
        row_id: str,
    ) -> str:
        """Join the views' features to `rows` and return a FROM item of the result.

        Only the columns the join reads (`row_id`, the entity keys, the event
        time and the columns of derived expressions) go through `joined_table`.
        The columns it adds, registered as an Arrow table, are joined back to
        `rows` by `row_id`, so queries over the result read from `rows` only
        the columns they use. If a column's type changes on its way through
        Arrow, the SQL of `joined_sql` is returned instead, so queries see the
        types that join gives.

        Args:
            rows: SQL of the label rows.
            views: Views to join, in order.
            event_time: Column of `rows` with the time each row is predicted at.
            row_id: Column of `rows` with a distinct value in each row.

        Raises:
            ConfigError: As `joined_table` raises.
            duckdb.Error: As `joined_table` raises.
        """
        sql = f"({self.joined_sql(rows, views, event_time)})"
        row_columns = [r[0] for r in self.db.execute(f"DESCRIBE {rows}").fetchall()]
        read = [c for c in _read_columns(views, event_time, row_columns) if c != row_id]
        picked = ", ".join(ident(c) for c in [row_id, *read])
        narrow = self.db.sql(f"SELECT {picked} FROM ({rows})").to_arrow_table()
        joined = self.joined_table(narrow, views, event_time)
        added = joined.select([row_id, *joined.column_names[narrow.num_columns :]])
        name = f"_joined_rows_{len(self.tables)}"
        self.tables[name] = added
        self.db.register(name, added)
        key = ident(row_id)
        source = (
            f"(SELECT r.*, a.* EXCLUDE ({key}) FROM ({rows}) r LEFT JOIN {name} a "
            f"ON r.{key} = a.{key})"
        )
        expected = self.db.execute(f"DESCRIBE SELECT * FROM {sql}").fetchall()
        found = self.db.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
        if [row[:2] for row in found] != [row[:2] for row in expected]:
            logger.info(
                "joined rows kept in SQL reason=column types change in Arrow views=%s",
                ",".join(view.name for view in views),
            )
            return sql
        return source

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """Return a cursor of the database with the registered Arrow tables."""
        cursor = self.db.cursor()
        for name, table in self.tables.items():
            cursor.register(name, table)
        return cursor

    def execute(self, sql: str) -> Any:
        """Run `sql` on the store's connection, as DuckDB's ``execute`` does."""
        return self.db.execute(sql)

    def close(self) -> None:
        """Close the in-memory database."""
        self.db.close()


def _reason(exc: duckdb.Error) -> str:
    """Return DuckDB's error message as one line, without the quoted query.

    The query DuckDB quotes is the view's SQL inside the ``DESCRIBE`` that
    reads its columns, not the SQL as the configuration has it.
    """
    return one_line(str(exc).split("\nLINE ", 1)[0])


def _read_columns(
    views: Sequence[FeatureViewConfig],
    event_time: str | None,
    row_columns: Sequence[str],
) -> list[str]:
    """Return the columns of the rows that joining `views` reads, in row order.

    Every column is returned when a derived expression cannot be parsed.
    """
    read = {*(k for view in views for k in view.entities), event_time}
    for view in views:
        for name, expression in view.derive.items():
            try:
                read |= check_expression(name, expression)
            except ExpressionError:
                return list(row_columns)
    return [c for c in row_columns if c in read]


def open_store(catalog: Catalog) -> FeatureStore:
    """Open a store with a view per dataset of `catalog`, at its latest version."""
    latest: dict[str, DatasetVersion] = {}
    for version in list_versions(catalog):
        latest.setdefault(version.dataset, version)
    return store_of(latest.values())


def store_of(versions: Sequence[DatasetVersion] | object) -> FeatureStore:
    """Open a store with a view over each of `versions`, named by its dataset.

    Raises:
        StorageError: Two datasets have names that differ only in case.
    """
    versions = list(versions)  # type: ignore[call-overload]
    _check_case_clash([version.dataset for version in versions])
    # View SQL runs here, and a query that reads a file of a known format,
    # such as ``FROM 'https://...'``, would otherwise download and install
    # the DuckDB extension that reads it.
    db = duckdb.connect(config={"autoinstall_known_extensions": False})
    db.execute("SET TimeZone = 'UTC'")
    read = {}
    encrypted: set[str] = set()
    unreadable: dict[str, str] = {}
    for version in versions:
        problem = _create_view(db, version)
        if problem is not None:
            # A lost lake folder of one dataset leaves the others usable.
            unreadable[version.dataset] = problem
            logger.error(
                "dataset files unreadable dataset=%s version=%s path=%s error=%s",
                version.dataset,
                version.version,
                version.path,
                problem,
            )
            continue
        read[version.dataset] = version.version
        encrypted.update(encrypted_columns(version))
    return FeatureStore(db, read, encrypted=frozenset(encrypted), unreadable=unreadable)


def _create_view(db: duckdb.DuckDBPyConnection, version: DatasetVersion) -> str | None:
    """Create the view of `version`'s dataset; return why its files cannot be
    read in full, or None."""
    problem = incomplete_files_message(db, version)
    if problem is not None:
        return problem
    try:
        db.execute(f"CREATE VIEW {ident(version.dataset)} AS {scan_sql(version)}")
    except duckdb.IOException:
        return lost_files_message(version)
    return None


def _check_case_clash(names: list[str]) -> None:
    """Raise when two dataset names differ only in case, which DuckDB ignores."""
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(name.lower(), name)
        if other != name:
            raise StorageError(
                f"datasets {other!r} and {name!r} differ only in case, and SQL "
                "names ignore case, so feature views cannot read them; ingest no "
                "longer accepts such a second name, but this catalog has both. "
                f"Remove one with 'appliance datasets remove {name}' (or "
                f"{other}), after ingesting its files under a distinct name if "
                "its rows are needed"
            )


def model_views(
    names: Sequence[str], views: Mapping[str, FeatureViewConfig]
) -> list[FeatureViewConfig]:
    """Return the declared views of `names`, in order.

    Raises:
        ConfigError: A name is not declared.
    """
    missing = [name for name in names if name not in views]
    if missing:
        raise ConfigError(
            f"feature view {missing[0]!r} is not declared; declared views: "
            f"{', '.join(sorted(views)) or 'none'}"
        )
    return [views[name] for name in names]


def view_feature_names(store: FeatureStore, view: FeatureViewConfig) -> list[str]:
    """Return the feature columns a view adds to the rows it is joined to."""
    return feature_columns(view, store.view_columns(view))
