"""Point-in-time matching of rows to feature view rows with numpy and Arrow.

These functions compute which view row each row gets, as positions into the
view's rows, with the rules of the ``ASOF LEFT JOIN`` in `_sql`: equal entity
keys, the latest availability time at or before the row's event time, and
nothing when that view row's event time is older than the time-to-live. A
null key part or a null time never matches. Among view rows with equal keys
and equal availability time, the last in the view's row order is taken, the
row `_sql.unique_sql` keeps.

The view's side is prepared once (`ViewKeys`, `SortedView`) and can be kept
for later joins; only the rows' side is computed per join.

Times are int64 microseconds since the epoch in UTC, as DuckDB's ``epoch_us``
returns them. Keys arrive as Arrow columns that already compare as the join
compares them (see `_join`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

_MAX_COMPOSITE = 2**62
"""Largest key code times time span that one int64 sort key may hold."""
_GCD_SAMPLE = 4096
"""Number of rows whose times give the candidate step of the time grid."""


@dataclass(frozen=True)
class ViewKeys:
    """The distinct entity keys of a view's rows, numbered from 0.

    Equal keys get equal codes from 0 to `count` - 1, and a view row with a
    null key part gets -1.
    """

    parts: tuple[pa.Array, ...]
    """Distinct non-null values of each key column, the sets codes index."""
    steps: tuple[np.ndarray, ...]
    """For keys of several columns: after each column from the second, the
    sorted distinct combined codes of the view's rows, which renumber a
    combined code to its position."""
    codes: np.ndarray
    """Code of each view row, -1 for none."""
    count: int
    """Number of distinct keys."""

    @classmethod
    def of(cls, columns: Sequence[pa.ChunkedArray]) -> ViewKeys:
        """Number the keys of a view's rows, one Arrow column per key part."""
        parts = tuple(pc.unique(column).drop_null() for column in columns)
        codes = _codes(pc.index_in(columns[0], value_set=parts[0], skip_nulls=True))
        steps = []
        for column, part in zip(columns[1:], parts[1:]):
            values = _codes(pc.index_in(column, value_set=part, skip_nulls=True))
            combined = _combine(codes, values, len(part))
            distinct = np.unique(combined[combined >= 0])
            codes = np.where(
                combined >= 0, np.searchsorted(distinct, combined), -1
            ).astype(np.int64)
            steps.append(distinct)
        count = len(parts[0]) if not steps else len(steps[-1])
        return cls(parts, tuple(steps), codes, count)

    def encode(self, columns: Sequence[pa.ChunkedArray]) -> pa.Array | pa.ChunkedArray:
        """Return the code of each row's key, null for a null part or a key
        that no view row has.

        Each column must be of the Arrow type of the view's column it is
        compared with.
        """
        first = pc.index_in(columns[0], value_set=self.parts[0], skip_nulls=True)
        if not self.steps:
            return first
        codes = _codes(first)
        for column, part, distinct in zip(columns[1:], self.parts[1:], self.steps):
            values = _codes(pc.index_in(column, value_set=part, skip_nulls=True))
            combined = _combine(codes, values, len(part))
            found = np.searchsorted(distinct, combined)
            clipped = np.minimum(found, max(len(distinct) - 1, 0))
            known = combined >= 0
            if len(distinct):
                known &= distinct[clipped] == combined
            else:
                known[:] = False
            codes = np.where(known, clipped, -1).astype(np.int64)
        return pa.array(codes, mask=codes < 0)


def key_codes(
    left: Sequence[pa.ChunkedArray], right: Sequence[pa.ChunkedArray]
) -> tuple[pa.Array | pa.ChunkedArray, np.ndarray, int]:
    """Encode multi-column keys of both sides as codes of the right side's keys.

    Each pair of columns must be of one Arrow type. Equal keys get equal codes
    from 0 to the count of distinct right keys. A left key with a null part,
    or that no right row has, gets a null code; a right one gets -1.

    Returns:
        The left codes, the right codes and the count of distinct right keys.
    """
    keys = ViewKeys.of(right)
    return keys.encode(left), keys.codes, keys.count


def _codes(part: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Return index_in's positions as int64, with -1 for null."""
    return part.fill_null(-1).to_numpy().astype(np.int64)


def _combine(codes: np.ndarray, values: np.ndarray, width: int) -> np.ndarray:
    combined = codes * max(width, 1) + values
    combined[(codes < 0) | (values < 0)] = -1
    return combined


class SortedView:
    """View rows sorted by (key code, availability time), for lookups."""

    def __init__(
        self,
        codes: np.ndarray,
        available: np.ndarray,
        observed: np.ndarray,
        ttl_us: int | None,
    ) -> None:
        """Sort the view rows that have a key and an availability time.

        Args:
            codes: Key code of each view row, -1 for none (see `ViewKeys`).
            available: Availability time of each view row: event time plus
                delay. A row without one must have code -1.
            observed: Event time of each view row, for the time-to-live check.
            ttl_us: Time-to-live in microseconds, or None for no limit.
        """
        usable = np.flatnonzero(codes >= 0)
        # A stable sort keeps ties in the view's row order, and a search with
        # side="right" in `match` lands on the last of them.
        order = usable[np.lexsort((available[usable], codes[usable]))]
        self.codes, self.times = codes[order], available[order]
        self.rows = order
        """Position in the view of each sorted row."""
        self.observed, self.ttl_us = observed, ttl_us

    def positions(
        self,
        left_codes: pa.Array | pa.ChunkedArray,
        left_times: pa.Array | pa.ChunkedArray,
        missing: int,
    ) -> np.ndarray:
        """Return the position of the view row each row is joined to.

        The rows' key codes and times stay in Arrow until the lookup, whose
        memory pool reuses buffers: on a few hundred thousand rows, fresh
        numpy arrays cost more in page faults than in arithmetic.

        Args:
            left_codes: Key code of each row, null for none (see `ViewKeys`).
            left_times: Event time of each row as int64, null for none.
            missing: Position given to a row that no view row matches.
        """
        code_range = pc.min_max(left_codes).as_py()
        time_range = pc.min_max(left_times).as_py()
        if self.codes.size == 0 or None in (code_range["max"], time_range["max"]):
            return np.full(len(left_codes), missing, dtype=np.int64)
        count = max(int(self.codes[-1]), code_range["max"]) + 1
        low = min(int(self.times.min()), time_range["min"])
        span = max(int(self.times.max()), time_range["max"]) - low + 1
        if (count + 1) * span >= _MAX_COMPOSITE:
            found = _match_rows(self, left_codes, left_times)
            return np.where(found < 0, missing, found)
        packed = _Packing(low, span)
        grid = _grid(
            left_codes, left_times, count, time_range["min"], time_range["max"]
        )
        if grid is not None:
            return grid.positions(self, packed, missing)
        return _match_pairs(self, packed, left_codes, left_times, missing)

    def match(
        self,
        right_keys: np.ndarray,
        query_keys: np.ndarray,
        query_codes: np.ndarray,
        query_times: np.ndarray,
    ) -> np.ndarray:
        """Return the view position for each query, or -1.

        `right_keys` and `query_keys` sort as (code, time) pairs, and sorted
        queries make searchsorted walk memory in order, several times faster.
        """
        found = np.searchsorted(right_keys, query_keys, side="right") - 1
        at = np.maximum(found, 0)
        matched = (query_codes >= 0) & (found >= 0)
        matched &= self.codes[at] == query_codes
        matched &= self.times[at] <= query_times
        candidates = self.rows[at]
        if self.ttl_us is not None:
            matched &= self.observed[candidates] >= query_times - self.ttl_us
        return np.where(matched, candidates, -1)


@dataclass(frozen=True)
class _Packing:
    """A (key code, time) pair packed in one int64 that sorts as the pair.

    Code -1 (no key) sorts first.
    """

    low: int
    span: int

    def pack(self, codes: np.ndarray, times: np.ndarray) -> np.ndarray:
        return (codes + 1) * self.span + (times - self.low)

    def lookup(
        self, view: SortedView, codes: np.ndarray, times: np.ndarray
    ) -> np.ndarray:
        """Return the view position of each sorted (code, time) query, or -1."""
        right = self.pack(view.codes, view.times)
        return view.match(right, self.pack(codes, times), codes, times)


@dataclass(frozen=True)
class _Grid:
    """Rows whose times all fall on `low` plus a multiple of `step`.

    Each row is then one of `count` times `slots` cells, and every cell is
    looked up once, in order: hourly label times of a year and three keys
    make 26,280 cells, however many rows share them.
    """

    cells: np.ndarray
    """Cell of each row: code times slots plus slot; the rows without a code
    or a time are in the cells after the last key's."""
    count: int
    low: int
    step: int
    slots: int

    def positions(self, view: SortedView, packed: _Packing, missing: int) -> np.ndarray:
        codes = np.repeat(np.arange(self.count, dtype=np.int64), self.slots)
        slot_times = self.low + np.arange(self.slots, dtype=np.int64) * self.step
        times = np.tile(slot_times, self.count)
        by_cell = np.full((self.count + 1) * self.slots, missing, dtype=np.int64)
        found = packed.lookup(view, codes, times)
        by_cell[: found.size] = np.where(found < 0, missing, found)
        return gather(by_cell, self.cells)


def _grid(
    left_codes: pa.Array | pa.ChunkedArray,
    left_times: pa.Array | pa.ChunkedArray,
    count: int,
    low: int,
    high: int,
) -> _Grid | None:
    """Return the rows' cells, or None when they need more cells than rows.

    The step is the greatest common divisor of the offsets from `low` of
    rows spread evenly over the table, checked on every row, so irregular
    times return None.
    """
    rows = len(left_times)
    offsets = numpy_view(pc.subtract(left_times.fill_null(low), low))
    sample = offsets[:: max(rows // _GCD_SAMPLE, 1)]
    step = int(np.gcd.reduce(sample)) or 1
    slots = (high - low) // step + 1
    if (count + 1) * slots > rows:
        return None
    slot = pool_array(rows, np.int64)
    np.floor_divide(offsets, step, out=slot)
    cells = pool_array(rows, np.int64)
    np.multiply(slot, step, out=cells)
    np.subtract(cells, offsets, out=cells)
    if cells.any():
        return None
    codes = left_codes.fill_null(count)
    if left_times.null_count:
        no_time = pa.scalar(count, codes.type)
        codes = pc.if_else(left_times.is_null(), no_time, codes)
    np.multiply(numpy_view(codes), slots, out=cells, dtype=np.int64)
    np.add(cells, slot, out=cells)
    return _Grid(cells, count, low, step, slots)


def pool_array(length: int, dtype: npt.DTypeLike) -> np.ndarray:
    """Return an uninitialized numpy array in Arrow's memory pool.

    numpy takes arrays of a few MB from fresh pages of the OS each time, and
    on 336,776 rows the page faults cost about as much as the arithmetic.
    Arrow's pool (mimalloc in pyarrow 26) reuses freed memory instead.
    """
    dtype = np.dtype(dtype)
    return np.frombuffer(pa.allocate_buffer(length * dtype.itemsize), dtype=dtype)


def gather(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Return ``values[positions]`` in Arrow's memory pool (see `pool_array`).

    Every position must be within `values`.
    """
    out = pool_array(len(positions), values.dtype)
    return np.take(values, positions, out=out, mode="clip")


def numpy_view(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Return integers without nulls as numpy, sharing Arrow's memory."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.to_numpy()


def _match_pairs(
    view: SortedView,
    packed: _Packing,
    left_codes: pa.Array | pa.ChunkedArray,
    left_times: pa.Array | pa.ChunkedArray,
    missing: int,
) -> np.ndarray:
    """Look up each distinct (code, time) pair of the rows once.

    Rows share few pairs, such as flights per airport and hour: hashing the
    pairs packed in one int64 is faster than sorting the rows.
    """
    pairs = pc.add(
        pc.multiply(pc.add(left_codes.cast(pa.int64()), 1), packed.span),
        pc.subtract(left_times, packed.low),
    )
    if isinstance(pairs, pa.ChunkedArray):
        pairs = pairs.combine_chunks()
    encoded = pc.dictionary_encode(pairs)
    distinct = encoded.dictionary.to_numpy()
    pair_order = np.argsort(distinct)
    sorted_pairs = distinct[pair_order]
    by_pair = np.empty(len(sorted_pairs) + 1, dtype=np.int64)
    found = view.match(
        packed.pack(view.codes, view.times),
        sorted_pairs,
        sorted_pairs // packed.span - 1,
        sorted_pairs % packed.span + packed.low,
    )
    by_pair[pair_order] = np.where(found < 0, missing, found)
    by_pair[-1] = missing
    return gather(by_pair, numpy_view(encoded.indices.fill_null(len(sorted_pairs))))


def _match_rows(
    view: SortedView,
    left_codes: pa.Array | pa.ChunkedArray,
    left_times: pa.Array | pa.ChunkedArray,
) -> np.ndarray:
    """Look up every row, with times ranked among the view's distinct times.

    Ranks keep the order of (code, time) pairs in an int64 when the times
    span too much to pack them, but rows between two view times share a
    rank, so each row is looked up with its own time. Returns -1 for no match.
    """
    codes = left_codes.cast(pa.int64()).fill_null(-1).to_numpy()
    times = left_times.fill_null(0).to_numpy()
    codes = np.where(left_times.is_null().to_numpy(zero_copy_only=False), -1, codes)
    distinct = np.unique(view.times)
    span = len(distinct) + 1
    right_keys = (view.codes + 1) * span + np.searchsorted(distinct, view.times) + 1
    left_keys = (codes + 1) * span + np.searchsorted(distinct, times, side="right")
    query_order = np.argsort(left_keys)
    positions = np.empty(len(codes), dtype=np.int64)
    positions[query_order] = view.match(
        right_keys,
        left_keys[query_order],
        codes[query_order],
        times[query_order],
    )
    return positions


def asof_positions(
    left_codes: pa.Array | pa.ChunkedArray,
    left_times: pa.Array | pa.ChunkedArray,
    right_codes: np.ndarray,
    available: np.ndarray,
    observed: np.ndarray,
    ttl_us: int | None,
) -> pa.Array:
    """Return the position of the view row each row is joined to, or null.

    Args:
        left_codes: Key code of each row, null for none (see `key_codes`).
        left_times: Event time of each row as int64, null for none.
        right_codes: Key code of each view row, -1 for none.
        available: Availability time of each view row: event time plus delay.
        observed: Event time of each view row, for the time-to-live check.
        ttl_us: Time-to-live in microseconds, or None for no limit.
    """
    view = SortedView(right_codes, available, observed, ttl_us)
    found = view.positions(left_codes, left_times, -1)
    return pa.array(found, mask=found < 0)


def static_index(right_codes: np.ndarray, count: int, missing: int) -> np.ndarray:
    """Return the position of the view row of each key code, then `missing`.

    The entry after the last code is `missing`, for rows without a code. Of
    view rows with one key, the last is taken, as `_sql.unique_sql` keeps it.
    """
    usable = np.flatnonzero(right_codes >= 0)[::-1]
    codes, first = np.unique(right_codes[usable], return_index=True)
    by_code = np.full(count + 1, missing, dtype=np.int64)
    by_code[codes] = usable[first]
    return by_code


def static_positions(
    left_codes: pa.Array | pa.ChunkedArray,
    right_codes: np.ndarray,
    count: int,
    missing: int = -1,
) -> np.ndarray:
    """Return the position of the view row with each row's key, or `missing`.

    Of view rows with one key, the last is taken (see `static_index`).
    """
    by_code = static_index(right_codes, count, missing)
    return gather(by_code, numpy_view(left_codes.fill_null(count)))


def with_null_row(values: pa.Table) -> pa.Table:
    """Return `values` with one row of nulls appended, in one chunk per column.

    Taking at its position, ``values.num_rows``, gives nulls, so positions
    need no null mask. Every field becomes nullable, as in a ``LEFT JOIN``.
    """
    schema = pa.schema([field.with_nullable(True) for field in values.schema])
    values = pa.Table.from_arrays(values.columns, schema=schema)
    nulls = pa.Table.from_arrays(
        [pa.nulls(1, field.type) for field in schema], schema=schema
    )
    return pa.concat_tables([values, nulls]).combine_chunks()
