"""Online features: fill prediction requests that carry only entity keys.

`FeatureServer` loads every feature view once into an in-memory DuckDB, then
joins each request's rows to them with `join_table`, as training joins: a
table (batch scoring, Arrow requests) as it is, and JSON rows as an Arrow
table of their values. A row that carries the model's event time gets the
values as of that time. A row without it gets the latest value per entity,
and the view's TTL is then counted from now. The catalog is opened only for
the moment of `load`.

A request of a few rows is filled from a `ViewIndex` per view instead: the
same rows found by binary search in memory, which skips the milliseconds
DuckDB spends planning a join. Derived columns come from `DerivedColumns`,
which runs DuckDB only for rows whose inputs it has not seen before.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from appliance.config import Config, FeatureViewConfig
from appliance.crypto import ColumnCipher, column_cipher, encrypt_rows, encrypt_table
from appliance.dbrows import first_row
from appliance.errors import (
    NotFoundError,
    RequestError,
    StorageError,
    ViewDataError,
    shown,
)
from appliance.features._derived import DerivedColumns, NotCached
from appliance.features._index import Unsupported, ViewIndex, arrow_types, event_time
from appliance.features._join import join_table
from appliance.features._lookup import RequestLookup, request_lookup
from appliance.features._repeats import repeated_keys
from appliance.features._sql import feature_columns, ident
from appliance.features._store import (
    FeatureStore,
    model_views,
    open_store,
    store_of,
)
from appliance.features._view_failures import ViewFailure, copy_rows, view_data_error
from appliance.storage import Catalog, latest_models, tables_read

logger = logging.getLogger(__name__)

_REQUEST = "request_rows"
_JOIN_TIME = "_joined_at"
"""Column of a batch with the time its rows are joined to the views at."""
_INDEXED_ROWS = 64
"""Maximum rows of a request filled from the view indexes. A larger request is
joined in DuckDB, whose fixed cost is then shared by more rows."""


class FeatureServer:
    """Fills the feature view columns of prediction requests, per model."""

    def __init__(self, config: Config, catalog: Catalog | None = None) -> None:
        self.config = config
        self.home: Path = config.storage.home
        self._cipher: ColumnCipher | None = None
        self._mismatched_keys: set[tuple[str, str]] = set()
        """Views and keys whose storage differs from the ``sensitive`` setting,
        logged once each."""
        self.catalog = catalog
        """Open catalog to read the dataset versions from, such as the
        daemon's connection; the catalog under the home is opened when None."""
        self.models = {
            name: (
                model_views(m.feature_views, config.feature_views),
                m.event_timestamp,
            )
            for name, m in config.models.items()
            if m.feature_views
        }
        self._store: FeatureStore | None = None
        self._views: dict[str, FeatureViewConfig] = {}
        self._columns: dict[str, list[str]] = {}
        self._indexes: dict[str, ViewIndex] = {}
        self._schemas: dict[str, pa.Schema] = {}
        self._derived: dict[str, DerivedColumns] = {}
        """Derived columns by model, made at the first request that needs them.
        They outlive `load`, because their cache keys hold every value read."""
        self._lock = threading.Lock()
        self._repeats: dict[str, int] = {}
        """Repeated keys of each view at the last load, to log changes only."""
        self._read: dict[str, dict[str, str]] = {}
        """Dataset versions whose rows each served view contains."""
        self.failures: dict[str, ViewFailure] = {}
        """Views whose SQL failed on their rows at the last load, by name."""
        self.failed_loads: dict[str, int] = {}
        """Count of failed loads of each view since the start."""
        self.loaded_at = 0.0

    @classmethod
    def from_versions(cls, config: Config, versions: Sequence[Any]) -> FeatureServer:
        """Return a server over the given dataset versions, read once and kept.

        The CLI uses it while a daemon holds the catalog and lists the
        versions for it.
        """
        server = cls(config)
        server._install(store_of(versions))
        return server

    def uses_features(self, model: str) -> bool:
        """Tell whether `model` joins any feature view."""
        return model in self.models

    def entity_keys(self, model: str) -> list[str]:
        """Return the entity key columns of `model`'s feature views, in view order."""
        if model not in self.models:
            return []
        declared, _ = self.models[model]
        return [key for view in declared for key in view.entities]

    def derived_reads(self, model: str) -> set[str]:
        """Return the lowercase names of the columns that derived columns read.

        These are the derived columns of `model`'s feature views, and a column
        they read comes from the request or from a view.
        """
        if model not in self.models:
            return set()
        return self._derived_columns(model).reads

    def lookup_columns(self, model: str) -> set[str]:
        """Return the columns `model`'s feature lookup reads or adds.

        These are the entity keys, the event time, every column of the
        model's views and the request columns their derived columns read. A
        request that carries them gets no warning about them.
        """
        if model not in self.models:
            return set()
        declared, event_time = self.models[model]
        names = {event_time} if event_time else set()
        for view in declared:
            names.update(view.entities)
            names.update(self._columns.get(view.name, ()))
            names.update(view.derive)
        return names | self.derived_reads(model)

    def request_lookup(self, model: str) -> RequestLookup | None:
        """Return the keys a request of `model` sends and the columns filled.

        Returns None for a model without feature views. The views' columns
        are known once `load` has read them.
        """
        if model not in self.models:
            return None
        declared, event_time = self.models[model]
        with self._lock:
            columns, schemas = self._columns, self._schemas
        return request_lookup(declared, event_time, columns, schemas)

    def load(self) -> None:
        """Read every feature view into memory from the datasets' latest versions.

        The daemon calls this at start, after each ingest it runs and after
        each flush of its ingest buffer.

        A view whose SQL binds but fails on its rows does not stop the
        others. It keeps the rows of its previous load, if any, and is listed
        in `failures` with the error, which is logged. So is a view of a
        registered model that reads a dataset with no version, such as one
        removed with ``--ignore-dependents``, and that view has no rows to
        serve.

        Raises:
            NotFoundError: A view reads a dataset that has no version yet, and
                no model that joins such a view is registered, as on the first
                start of a new home.
            ConfigError: A view's SQL is invalid.
        """
        started = time.perf_counter()
        if self.catalog is None:
            with Catalog(self.home, read_only=True) as catalog:
                store = open_store(catalog)
                registered = {version.model for version in latest_models(catalog)}
        else:
            with self.catalog.cursor() as catalog:
                store = open_store(catalog)
                registered = {version.model for version in latest_models(catalog)}
        missing = self._check_datasets(store, registered)
        before = self.failures
        self._install(store, missing)
        self._log_failures(before)
        logger.info(
            "feature views loaded views=%d failed=%d datasets=%s seconds=%.3f",
            len(self._views),
            len(self.failures),
            ",".join(f"{d}@{v}" for d, v in sorted(store.versions.items())),
            time.perf_counter() - started,
        )

    def _log_failures(self, before: dict[str, ViewFailure]) -> None:
        """Log each failed view, and each view that loads again."""
        for name, failure in sorted(self.failures.items()):
            logger.error(
                "feature view load failed view=%s serving=%s error=%s",
                name,
                "none" if failure.served is None else "previous rows",
                failure.message,
            )
        for name in sorted(set(before) - set(self.failures)):
            logger.info("feature view loaded again view=%s", name)

    def unserved(self) -> dict[str, list[str]]:
        """Return the models that cannot be served, with the views that fail.

        Those are the views whose last load failed with no previous rows.
        """
        with self._lock:
            failures = self.failures
        found: dict[str, list[str]] = {}
        for model, (declared, _) in self.models.items():
            names = [
                view.name
                for view in declared
                if view.name in failures and failures[view.name].served is None
            ]
            if names:
                found[model] = names
        return found

    def check_served(self, model: str) -> None:
        """Raise `ViewDataError` when a view of `model` has no rows to serve.

        The fill methods call it, and so does a caller that skips the fill
        for rows that carry every feature column.
        """
        if not self.failures:
            # Every view loaded: the common case, checked on every request.
            return
        failing = self.unserved().get(model)
        if failing:
            failure = self.failures[failing[0]]
            raise ViewDataError(
                f"model {model!r} cannot be served now: {failure.message}"
            )

    def _check_datasets(
        self, store: FeatureStore, registered: set[str]
    ) -> dict[str, ViewFailure | None]:
        """Return each view that reads a dataset with no version.

        A view that a model of `registered` joins gets a `ViewFailure` with
        no rows served, and any other view None, because its models are not
        served anyway.

        Raises:
            NotFoundError: Views read datasets with no version, and none of
                them is joined by a model of `registered`.
            StorageError: The files of a dataset a view reads are gone.
        """
        users: dict[str, list[str]] = {}
        views: dict[str, FeatureViewConfig] = {}
        for model, (declared, _) in sorted(self.models.items()):
            for view in declared:
                users.setdefault(view.name, []).append(model)
                views[view.name] = view
        problems, lost = [], []
        missing: dict[str, ViewFailure | None] = {}
        unreadable = {name.lower(): error for name, error in store.unreadable.items()}
        for name, view in views.items():
            for dataset in _datasets_without_version(store, view.sql):
                reader = f"feature view {name!r} of model {', '.join(users[name])}"
                error = unreadable.get(dataset.lower())
                if error is not None:
                    lost.append(f"{reader} cannot read its data: {error}")
                    continue
                problems.append(
                    f"{reader} reads dataset {dataset!r}, which has no version yet; "
                    f"ingest it with 'appliance ingest {dataset} FILE'"
                )
                missing[name] = _missing_dataset(view, dataset, registered, users)
        if lost:
            # Files gone from the lake are a storage fault, not a missing name.
            raise StorageError("; ".join(lost + problems))
        if problems and not any(missing.values()):
            raise NotFoundError("; ".join(problems))
        return missing

    def _install(
        self, store: FeatureStore, missing: dict[str, ViewFailure | None] | None = None
    ) -> None:
        """Materialize the served models' views in `store` and serve from it.

        A view whose SQL fails on its rows gets the rows of the previous
        store, when it had any, and a `ViewFailure`. A view in `missing`,
        which reads a dataset with no version, gets no rows and keeps the
        failure it has there, if any.
        """
        views, columns, indexes, schemas = {}, {}, {}, {}
        missing = missing or {}
        failures = {n: f for n, f in missing.items() if f is not None}
        read: dict[str, dict[str, str]] = {}
        for model_view_list, _ in self.models.values():
            for view in model_view_list:
                done = view.name in views or view.name in failures
                if done or view.name in missing:
                    continue
                columns[view.name] = store.view_columns(view)
                table = f"feature_view_{view.name}"
                failure = self._materialize(store, table, view)
                if failure is not None:
                    failures[view.name] = failure
                    if failure.served is None:
                        del columns[view.name]
                        continue
                    columns[view.name] = self._columns[view.name]
                read[view.name] = (
                    store.versions_read([view]) if failure is None else failure.served
                )
                views[view.name] = dataclasses.replace(
                    view, sql=f"SELECT * FROM {ident(table)}"
                )
                schemas[view.name] = arrow_types(store.db, views[view.name])
                added = _looked_up(view, columns[view.name])
                indexes[view.name] = ViewIndex(store.db, views[view.name], added)
                self._warn_repeats(store, views[view.name])
                self._warn_key_storage(store, view)
        # The previous store is not closed here, because a request may still
        # be reading it; it is closed when the last reference goes.
        with self._lock:
            self._store, self._views, self._columns = store, views, columns
            self._indexes, self._schemas = indexes, schemas
            self._read, self.failures = read, failures
            for name in failures:
                self.failed_loads[name] = self.failed_loads.get(name, 0) + 1
            self.loaded_at = time.time()

    def unload(self) -> None:
        """Stop serving the views read before, such as after their dataset was
        removed; the next request that needs them reads them again."""
        with self._lock:
            self._store, self._views, self._columns = None, {}, {}
            self._indexes, self._schemas = {}, {}
            self._read, self.failures = {}, {}
            self.loaded_at = 0.0

    def _materialize(
        self, store: FeatureStore, table: str, view: FeatureViewConfig
    ) -> ViewFailure | None:
        """Create `table` in `store` with the rows of `view`'s SQL.

        When the SQL fails on the rows, the table gets the view's rows of the
        previous store instead, if it had any.

        Returns:
            None, or the failure when the SQL failed on the rows.
        """
        try:
            store.db.execute(f"CREATE TABLE {ident(table)} AS {view.sql}")
            return None
        except duckdb.IOException:
            raise
        except duckdb.Error as exc:
            versions = store.versions_read([view])
            with self._lock:
                previous, old_store = self._read.get(view.name), self._store
            if previous is not None and old_store is not None:
                # Requests may read the previous store meanwhile, on cursors.
                with old_store.db.cursor() as source:
                    copy_rows(source, store.db, table)
            else:
                previous = None
            error = view_data_error(view, versions, exc, previous)
            return ViewFailure(view.name, str(error), versions, previous)

    def _warn_key_storage(self, store: FeatureStore, view: FeatureViewConfig) -> None:
        """Log a warning, once per view and key, when a key's storage differs
        from its ``sensitive`` setting, as after a change of the setting."""
        declared = self.config.sensitive_columns
        for key in view.entities:
            if (key in declared) == (key in store.encrypted):
                continue
            if (view.name, key) in self._mismatched_keys:
                continue
            self._mismatched_keys.add((view.name, key))
            logger.warning(
                "feature view key stored unlike its sensitive setting view=%s key=%s "
                "declared_sensitive=%s stored_encrypted=%s; ingest the view's "
                "datasets again with --mode replace to apply the setting",
                view.name,
                key,
                key in declared,
                key in store.encrypted,
            )

    def _warn_repeats(self, store: FeatureStore, view: FeatureViewConfig) -> None:
        """Log a warning when a view's count of repeated keys changes.

        The daemon loads the views after every flush of its ingest buffer, so
        an unchanged count is not logged again.
        """
        found = repeated_keys(store.db, view)
        count = 0 if found is None else found.keys
        if self._repeats.get(view.name, 0) == count:
            return
        self._repeats[view.name] = count
        if found is None:
            logger.info("feature view keys unique again view=%s", view.name)
            return
        logger.warning(
            "feature view repeats entity keys view=%s keys=%s repeated=%d "
            "dropped_rows=%d example=%r",
            view.name,
            ",".join(view.entities),
            found.keys,
            found.dropped,
            found.example,
        )

    def encrypted_keys(self, model: str) -> list[str]:
        """Return the entity keys of `model` that the datasets store encrypted.

        The latest versions decide, not the configuration, so a version
        ingested before a key was declared sensitive is still looked up in
        plaintext.
        """
        if model not in self.models:
            return []
        if self._store is None:
            self.load()
        assert self._store is not None
        stored = self._store.encrypted
        return [key for key in self.entity_keys(model) if key in stored]

    def cipher(self) -> ColumnCipher:
        """Return the column key's cipher, reading the key file at first need."""
        if self._cipher is None:
            self._cipher = column_cipher(self.config)
        return self._cipher

    def fill(self, model: str, rows: Sequence[Any]) -> list[Any]:
        """Return `rows` with every feature column of `model`'s views filled in.

        A value the request already carries is kept. Rows of a model without
        feature views are returned unchanged. Entity keys that the datasets
        store encrypted are encrypted for the lookup, and the rows returned
        keep the plaintext keys sent.

        Raises:
            RequestError: A row is not an object, lacks an entity key column or
                has an event time that is not a time.
            ColumnKeyError: The column key file is missing or invalid.
        """
        encrypted = self.encrypted_keys(model)
        if not encrypted:
            return self._fill(model, rows)
        filled = self._fill(model, encrypt_rows(rows, encrypted, self.cipher()))
        for sent, row in zip(rows, filled):
            for key in encrypted:
                if isinstance(sent, dict) and key in sent:
                    row[key] = sent[key]
        return filled

    def _fill(self, model: str, rows: Sequence[Any]) -> list[Any]:
        if model not in self.models:
            return list(rows)
        declared, event_time = self.models[model]
        _check_rows(model, rows, declared)
        if self._store is None:
            self.load()
        assert self._store is not None
        self.check_served(model)
        if len(rows) <= _INDEXED_ROWS:
            try:
                return self._fill_indexed(model, rows, declared, event_time)
            except Unsupported as exc:
                logger.debug("filled by a join model=%s reason=%s", model, exc)
        features = {
            name
            for view in declared
            for name in feature_columns(view, self._columns[view.name])
        }
        table, names = _request_table(rows, event_time, features)
        joined = self._fill_table(model, table.drop_columns(["_row"]))
        added = joined.column_names[len(names) :]
        found = joined.select(added).to_pylist()
        filled = []
        for row, values in zip(rows, found):
            merged = dict(row)
            for name in added:
                merged.setdefault(name, _json_value(values[name]))
            filled.append(merged)
        return filled

    def _fill_indexed(
        self,
        model: str,
        rows: Sequence[dict[str, Any]],
        declared: list[FeatureViewConfig],
        event_column: str | None,
    ) -> list[Any]:
        """Fill `rows` from the view indexes, as the join in `fill` would.

        Raises:
            Unsupported: A view has no index, or a row's key or event time
                needs DuckDB to be compared exactly.
        """
        with self._lock:
            store, indexes = self._store, self._indexes
            schemas, view_columns = self._schemas, self._columns
        assert store is not None
        if any(view.name not in indexes for view in declared):
            raise Unsupported("a feature view has no index")
        timed = any(view.timestamp is not None for view in declared)
        if timed and not event_column:
            raise Unsupported("no event time to look up a timestamped view at")
        now = dt.datetime.now(dt.timezone.utc)
        found: list[dict[str, Any]] = []
        for row in rows:
            at = event_time(row.get(event_column), now) if event_column else None
            values: dict[str, Any] = {}
            for view in declared:
                values.update(indexes[view.name].lookup(row, at))
            found.append(values)
        order = [
            name
            for view in declared
            for name in feature_columns(view, view_columns[view.name])
        ]
        if any(view.derive for view in declared):
            types = [schemas[view.name] for view in declared]
            timed = _at_request_time(rows, event_column, now)
            try:
                _add_cached(
                    self._derived_columns(model), timed, found, types, set(order)
                )
            except NotCached:
                _add_derived(
                    model,
                    store,
                    timed,
                    found,
                    declared,
                    types,
                    set(order),
                    event_column,
                )
        filled = []
        for row, values in zip(rows, found):
            merged = dict(row)
            for name in order:
                merged.setdefault(name, _json_value(values[name]))
            filled.append(merged)
        return filled

    def clear_derived(self) -> None:
        """Forget the cached derived values, keyed by the values of request rows."""
        with self._lock:
            derived = list(self._derived.values())
        for columns in derived:
            columns.cache.clear()

    def _derived_columns(self, model: str) -> DerivedColumns:
        derived = self._derived.get(model)
        if derived is None:
            declared, event_column = self.models[model]
            with self._lock:
                derived = self._derived.setdefault(
                    model, DerivedColumns(model, declared, event_column)
                )
        return derived

    def fill_table(self, model: str, table: pa.Table) -> pa.Table:
        """Return `table` with `model`'s feature columns it lacks joined in.

        The views are joined as training joins them (`join_table`), with the
        views' rows kept in the store's cache between batches. A row without
        an event time gets the features as of now. A feature column the table
        already has is kept as it is. Entity keys that the datasets store
        encrypted are encrypted for the join, and the table returned keeps
        the plaintext keys sent.

        Raises:
            RequestError: The table lacks an entity key column, a row's event
                time is not a time, or a derived column cannot be computed.
            ColumnKeyError: The column key file is missing or invalid.
        """
        encrypted = [k for k in self.encrypted_keys(model) if k in table.column_names]
        if not encrypted:
            return self._fill_table(model, table)
        filled = self._fill_table(model, encrypt_table(table, encrypted, self.cipher()))
        for key in encrypted:
            index = filled.column_names.index(key)
            filled = filled.set_column(
                index, table.schema.field(key), table.column(key)
            )
        return filled

    def _fill_table(self, model: str, table: pa.Table) -> pa.Table:
        if model not in self.models:
            return table
        declared, event_time = self.models[model]
        for key in sorted({k for view in declared for k in view.entities}):
            if key not in table.column_names:
                raise RequestError(
                    f"column {key!r} is missing; model {model!r} joins its feature "
                    "views on it, so add it to the rows",
                    model=model,
                    column=key,
                )
        if self._store is None:
            self.load()
        self.check_served(model)
        with self._lock:
            store, views, columns = self._store, self._views, self._columns
            assert store is not None
            cursor = store.db.cursor()
        features = {
            name
            for view in declared
            for name in feature_columns(view, columns[view.name])
        }
        request = table.select([n for n in table.column_names if n not in features])
        try:
            cursor.execute("SET TimeZone = 'UTC'")
            join_time = None
            if event_time:
                request, join_time = _with_join_time(cursor, model, request, event_time)
            try:
                joined = join_table(
                    cursor,
                    request,
                    [views[view.name] for view in declared],
                    columns,
                    join_time,
                    store.cache,
                )
            except duckdb.Error as exc:
                raise RequestError(
                    f"features of model {model!r} cannot be joined to these "
                    f"rows: {exc}",
                    model=model,
                ) from None
        finally:
            cursor.close()
        for name in joined.column_names[request.num_columns :]:
            if name not in table.column_names:
                table = table.append_column(name, joined.column(name))
        return table


def _with_join_time(
    cursor: Any, model: str, request: pa.Table, event_time: str
) -> tuple[pa.Table, str]:
    """Return `request` with its event times as times and the column to join at.

    The event time column becomes ``TIMESTAMPTZ``, as derived expressions
    read it, and so does the added column, the time the views are joined at:
    both are the event time, or now where it is null or missing.

    Raises:
        RequestError: A row's event time is not a time.
    """
    if event_time in request.column_names:
        times = request.column(event_time)
    else:
        times = pa.nulls(request.num_rows, pa.string())
    cursor.register(_REQUEST, pa.table({event_time: times}))
    column = f"TRY_CAST({ident(event_time)} AS TIMESTAMPTZ)"
    # DuckDB keeps the rows' order in a projection without ORDER BY, as long
    # as preserve_insertion_order is on, its default.
    cast = cursor.sql(
        f"SELECT {column}, coalesce({column}, now()) FROM {_REQUEST}"
    ).to_arrow_table()
    cursor.unregister(_REQUEST)
    unread = pc.and_(pc.is_valid(times), pc.is_null(cast.column(0)))
    row = pc.index(unread, True).as_py()
    if row >= 0:
        value = times[row].as_py()
        raise _event_time_error(model, event_time, row, str(value))

    if event_time in request.column_names:
        index = request.column_names.index(event_time)
        request = request.set_column(index, event_time, cast.column(1))
    else:
        request = request.append_column(event_time, cast.column(1))
    join_time = _JOIN_TIME
    while join_time in request.column_names:
        join_time = "_" + join_time
    return request.append_column(join_time, cast.column(1)), join_time


def _at_request_time(
    rows: Sequence[dict[str, Any]], event_column: str | None, now: dt.datetime
) -> Sequence[dict[str, Any]]:
    """Return `rows` with `now` as the event time of rows that have none.

    The views are joined as of now for such a row, so its derived columns are
    computed at the same time, such as a plane's age in the current year.
    """
    if not event_column or all(row.get(event_column) is not None for row in rows):
        return rows
    text = now.isoformat()
    return [
        row if row.get(event_column) is not None else {**row, event_column: text}
        for row in rows
    ]


def _looked_up(view: FeatureViewConfig, columns: list[str]) -> list[str]:
    """Return the columns a view adds to a row from its own rows, not derived."""
    return [c for c in feature_columns(view, columns) if c not in view.derive]


def _add_cached(
    derived: DerivedColumns,
    rows: Sequence[dict[str, Any]],
    found: list[dict[str, Any]],
    schemas: list[pa.Schema],
    features: set[str],
) -> None:
    """Add the views' derived columns to `found`, computed by `derived`.

    Only the columns the expressions read are converted to Arrow, with the
    types `_add_derived` gives them.

    Raises:
        NotCached: An expression reads a column the rows do not have.
        RequestError: An expression fails on a row.
    """
    names = _request_names(rows, derived.event_column, features)
    request = {
        name: _column_array([row.get(name) for row in rows])
        for name in names
        if name.lower() in derived.reads
    }
    looked_up = {}
    for name in found[0] if found else []:
        if name.lower() in derived.reads:
            field = next(s.field(name) for s in schemas if name in s.names)
            column = [values[name] for values in found]
            looked_up[name] = pa.array(column, field.type)
    computed = derived.compute(request, looked_up, len(rows))
    for values, row in zip(found, computed):
        values.update(zip(derived.derive, row))


def _add_derived(
    model: str,
    store: FeatureStore,
    rows: Sequence[dict[str, Any]],
    found: list[dict[str, Any]],
    views: list[FeatureViewConfig],
    schemas: list[pa.Schema],
    features: set[str],
    event_column: str | None,
) -> None:
    """Compute the views' derived columns over the rows and their found values.

    The request's own values of feature columns are left out, as the join
    leaves them out, so an expression reads the view's value.

    Raises:
        RequestError: An expression fails on these rows, such as one that
            reads a column the request lacks.
    """
    table, names = _request_table(rows, event_column, features)
    for name in found[0] if found else []:
        field = next(s.field(name) for s in schemas if name in s.names)
        column = [values[name] for values in found]
        table = table.append_column(name, pa.array(column, field.type))
    derived = ", ".join(
        f"({expr}) AS {ident(name)}"
        for view in views
        for name, expr in view.derive.items()
    )
    with store.db.cursor() as cursor:
        cursor.execute("SET TimeZone = 'UTC'")
        cursor.register(_REQUEST, table)
        try:
            result = cursor.execute(
                f"SELECT {derived} FROM ({_rows_sql(names, event_column)}) "
                "ORDER BY _row"
            ).fetchall()
        except duckdb.Error as exc:
            named = ", ".join(repr(n) for view in views for n in view.derive)
            raise RequestError(
                f"derived columns {named} of the feature views of model {model!r} "
                f"cannot be computed from this request: {exc}",
                model=model,
            ) from None
        columns = [d[0] for d in cursor.description]
    for values, computed in zip(found, result):
        values.update(zip(columns, computed))


def _check_rows(
    model: str, rows: Sequence[Any], views: list[FeatureViewConfig]
) -> None:
    keys = {key for view in views for key in view.entities}
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(
                f"row {index} of the request to model {model!r} is not a JSON object",
                model=model,
                row=index,
            )
        for key in sorted(keys):
            if key not in row:
                raise RequestError(
                    f"row {index} of the request to model {model!r} is missing "
                    f"entity key {key!r}, needed to look up its features",
                    model=model,
                    row=index,
                    column=key,
                )


def _event_time_error(
    model: str, event_time: str, row: int, value: str
) -> RequestError:
    """Return the error for a row whose event time, as text, is not a time."""
    return RequestError(
        f"row {row} of the request to model {model!r}: event time column "
        f"{event_time!r} is {shown(value)}, not a time; send an ISO 8601 time such as "
        "2013-04-01T05:00:00Z, or null for the current time",
        model=model,
        row=row,
        column=event_time,
    )


def _request_table(
    rows: Sequence[dict[str, Any]], event_time: str | None, features: set[str]
) -> tuple[pa.Table, list[str]]:
    """Build an Arrow table of the request's columns, leaving out feature columns."""
    names = _request_names(rows, event_time, features)
    arrays = {"_row": pa.array(range(len(rows)), pa.int64())}
    for name in names:
        arrays[name] = _column_array([row.get(name) for row in rows])
    return pa.table(arrays), names


def _request_names(
    rows: Sequence[dict[str, Any]], event_time: str | None, features: set[str]
) -> list[str]:
    """Return the request's column names in first-seen order, without features."""
    names: list[str] = []
    for row in rows:
        names += [name for name in row if name not in names and name not in features]
    if event_time and event_time not in names:
        names.append(event_time)
    return names


def _column_array(values: list[Any]) -> pa.Array:
    """Return one request column as Arrow infers it, else as float64 or text."""
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        # pyarrow raises for values of mixed types, and OverflowError or
        # ArrowInvalid for an integer of 2**63 or more, which int64 cannot hold.
        array = _float_or_text(values)
    if array.type == pa.null():
        array = array.cast(pa.string())
    return array


def _float_or_text(values: list[Any]) -> pa.Array:
    """Return a column of numbers as float64, or any other column as text.

    A float64 contains an integer beyond int64, as it does for the model's
    number inputs. pyarrow converts no such Python integer to float64, so
    each number is converted here.
    """
    if all(v is None or type(v) in (int, float) for v in values):
        try:
            return pa.array(
                [None if v is None else float(v) for v in values], pa.float64()
            )
        except OverflowError:
            pass  # An integer beyond the float64 range is kept as text.
    return _text_array(values)


def _text_array(values: list[Any]) -> pa.Array:
    return pa.array([None if v is None else str(v) for v in values], pa.string())


def _rows_sql(names: list[str], event_time: str | None) -> str:
    if not event_time:
        return f"SELECT * FROM {_REQUEST}"
    column = ident(event_time)
    return (
        f"SELECT * REPLACE (TRY_CAST({column} AS TIMESTAMPTZ) AS {column}) "
        f"FROM {_REQUEST}"
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def _missing_dataset(
    view: FeatureViewConfig,
    dataset: str,
    registered: set[str],
    users: dict[str, list[str]],
) -> ViewFailure | None:
    """Return the failure of `view`, which reads `dataset` that has no version,
    or None when no model of `registered` joins the view."""
    if not registered.intersection(users[view.name]):
        return None
    message = (
        f"feature view {view.name!r} reads dataset {dataset!r}, which has no "
        f"version yet; ingest it with 'appliance ingest {dataset} FILE'"
    )
    return ViewFailure(view.name, message, {}, None)


def _datasets_without_version(store: FeatureStore, sql: str) -> list[str]:
    """Return the tables `sql` reads that are neither a dataset nor a CTE.

    SQL that does not parse returns none, so `view_columns` reports it.
    """
    read = tables_read(store.db, sql)
    if not read:
        return []
    known = {name.lower() for name in (*store.versions, *store.tables)}
    known |= _cte_names(store.db, sql)
    return sorted(name for name in read if name.lower() not in known)


def _cte_names(db: duckdb.DuckDBPyConnection, sql: str) -> set[str]:
    """Return the lowercase names of the common table expressions in `sql`."""
    row = first_row(db.execute("SELECT json_serialize_sql(?)", [sql]))
    names: set[str] = set()
    pending: list[Any] = [json.loads(row[0]) if row else {}]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            for entry in (node.get("cte_map") or {}).get("map", []):
                names.add(str(entry.get("key", "")).lower())
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return names
