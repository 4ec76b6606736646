"""A feature view's rows read once and kept ready for point-in-time joins.

Reading a view's rows out of DuckDB, numbering their keys and sorting them
by key and time is the same work for every join of that view, so a store
keeps the result in a `ViewCache`. A store reads fixed dataset versions, and
a new version means a new store (`FeatureServer.load` opens one), so the
cache stays valid as long as the tables a view's SQL reads do not change.

NOTE: a change to a DuckDB table that a view reads, such as an ``UPDATE`` on
the store's connection, is not detected; the code that makes it must call
`FeatureStore.clear_cache`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from appliance.config import FeatureViewConfig
from appliance.features._asof import (
    SortedView,
    ViewKeys,
    gather,
    numpy_view,
    static_index,
    with_null_row,
)

logger = logging.getLogger(__name__)

_MAX_VIEWS = 32
"""Prepared views a cache keeps; the oldest is dropped for a new one."""


@dataclass(frozen=True)
class PreparedView:
    """A view's rows with their keys numbered and their times sorted."""

    key_types: tuple[pa.DataType, ...]
    """Arrow type each key column of the rows is cast to before encoding."""
    keys: ViewKeys
    values: pa.Table
    """The columns the view adds, plus a row of nulls at position
    ``values.num_rows - 1`` for rows that match nothing."""
    sorted_view: SortedView | None
    """The rows sorted for as-of lookups; None for a static view."""
    by_code: np.ndarray | None
    """For a static view: the position of the row of each key code, with the
    null row's position after the last code."""
    numpy_columns: tuple[_NumpyColumn | None, ...]
    """The numpy gather of each column of `values` (see `_NumpyColumn`), or None
    where Arrow's take is used, for columns that are not fixed width."""

    @property
    def missing(self) -> int:
        """Position of the row of nulls in `values`."""
        return self.values.num_rows - 1

    def positions(
        self,
        left_keys: Sequence[pa.ChunkedArray],
        left_times: pa.Array | pa.ChunkedArray | None,
    ) -> np.ndarray:
        """Return the position in `values` of the row each row is joined to.

        Args:
            left_keys: The rows' key columns, cast to `key_types`.
            left_times: The rows' event times in microseconds, null for none;
                required when the view has a timestamp.
        """
        codes = self.keys.encode(left_keys)
        if self.by_code is not None:
            return gather(self.by_code, numpy_view(codes.fill_null(self.keys.count)))
        assert self.sorted_view is not None and left_times is not None
        return self.sorted_view.positions(codes, left_times, self.missing)

    def take(self, positions: np.ndarray) -> list[pa.Array | pa.ChunkedArray]:
        """Return the columns of `values` at `positions`."""
        taken = []
        for column, numpy_column in zip(self.values.columns, self.numpy_columns):
            if numpy_column is None:
                taken.append(column.take(positions))
            else:
                taken.append(numpy_column.take(positions))
        return taken


@dataclass(frozen=True)
class _NumpyColumn:
    """One fixed-width column of values as numpy arrays, to take rows from.

    Arrow's take of a float64 column at a few hundred thousand positions
    took twice as long as numpy's take of its values and validity plus
    packing the validity into bits (0.9 ms against 0.45 ms, pyarrow 26).
    The values move as unsigned integers of their width, so bits are kept.
    """

    arrow_type: pa.DataType
    data: np.ndarray
    valid: np.ndarray

    @classmethod
    def of(cls, column: pa.ChunkedArray) -> _NumpyColumn | None:
        """Return the column as numpy arrays, or None if it is not fixed width."""
        kind = column.type
        fixed = (
            pa.types.is_integer(kind)
            or pa.types.is_floating(kind)
            or pa.types.is_temporal(kind)
        )
        if not fixed or column.num_chunks != 1 or kind.bit_width not in _UNSIGNED:
            return None
        chunk = column.chunk(0)
        if chunk.buffers()[1] is None:
            return None
        data = np.frombuffer(chunk.buffers()[1], dtype=_UNSIGNED[kind.bit_width])
        valid = chunk.is_valid().to_numpy(zero_copy_only=False)
        return cls(kind, data[chunk.offset : chunk.offset + len(chunk)], valid)

    def take(self, positions: np.ndarray) -> pa.Array:
        data = pa.allocate_buffer(len(positions) * self.data.itemsize)
        out = np.frombuffer(data, dtype=self.data.dtype)
        np.take(self.data, positions, out=out, mode="clip")
        valid = np.packbits(gather(self.valid, positions), bitorder="little")
        return pa.Array.from_buffers(
            self.arrow_type, len(positions), [pa.py_buffer(valid), data]
        )


_UNSIGNED = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}
"""Numpy type with the bit width of an Arrow value, by width."""


def prepare(
    keys: Sequence[pa.ChunkedArray],
    observed: pa.ChunkedArray | None,
    delay_us: int,
    values: pa.Table,
    ttl_us: int | None,
) -> PreparedView:
    """Number, sort and index a view's rows.

    Args:
        keys: The view's key columns, already of the types rows are cast to.
        observed: Event time of each row as int64 microseconds, null for
            none; None for a static view.
        delay_us: Availability delay in microseconds. A row is available at
            its event time plus the delay, as ``+ INTERVAL n SECOND`` adds
            microseconds in `source_sql`.
        values: The columns the view adds.
        ttl_us: Time-to-live in microseconds, or None for no limit.
    """
    view_keys = ViewKeys.of(keys)
    padded = with_null_row(values)
    missing = values.num_rows
    numpy_columns = tuple(_NumpyColumn.of(column) for column in padded.columns)
    key_types = tuple(k.type for k in keys)
    if observed is None:
        by_code = static_index(view_keys.codes, view_keys.count, missing)
        return PreparedView(key_types, view_keys, padded, None, by_code, numpy_columns)
    unknown = observed.is_null().to_numpy(zero_copy_only=False)
    times = _int64(observed)
    sorted_view = SortedView(
        np.where(unknown, -1, view_keys.codes), times + delay_us, times, ttl_us
    )
    return PreparedView(key_types, view_keys, padded, sorted_view, None, numpy_columns)


def _int64(column: pa.ChunkedArray) -> np.ndarray:
    return column.fill_null(0).to_numpy().astype(np.int64, copy=False)


CacheKey = tuple[object, ...]


def cache_key(
    view: FeatureViewConfig, added: Sequence[str], left_types: Sequence[pa.DataType]
) -> CacheKey:
    """Return what a prepared view depends on: its rows and the rows' key types."""
    return (
        view.sql,
        view.entities,
        view.timestamp,
        view.delay_seconds,
        view.ttl_seconds,
        tuple(added),
        tuple(left_types),
    )


class ViewCache:
    """Prepared views of one store, by `cache_key`; safe across threads.

    A view that only the SQL join can join is kept as None, so it is not
    read again either.
    """

    def __init__(self, max_views: int = _MAX_VIEWS) -> None:
        self.max_views = max_views
        self._views: dict[CacheKey, PreparedView | None] = {}
        self._columns: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Return the number of views kept, those only SQL can join included."""
        with self._lock:
            return len(self._views)

    def view(
        self, key: CacheKey, build: Callable[[], PreparedView | None]
    ) -> PreparedView | None:
        """Return the prepared view of `key`, built by `build` on a miss."""
        with self._lock:
            if key in self._views:
                return self._views[key]
        prepared = build()
        with self._lock:
            self._views[key] = prepared
            while len(self._views) > self.max_views:
                del self._views[next(iter(self._views))]
        return prepared

    def columns(self, sql: str, describe: Callable[[], list[str]]) -> list[str]:
        """Return the output columns of a view's SQL, from `describe` on a miss."""
        with self._lock:
            found = self._columns.get(sql)
        if found is None:
            found = describe()
            with self._lock:
                self._columns[sql] = found
        return list(found)

    def clear(self) -> None:
        """Forget every prepared view, after a table a view reads changed."""
        with self._lock:
            dropped = len(self._views)
            self._views.clear()
            self._columns.clear()
        logger.debug("feature view cache cleared views=%d", dropped)
