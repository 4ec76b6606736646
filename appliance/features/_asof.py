"""Point-in-time matching of rows to feature view rows with numpy and Arrow.

These functions compute which view row each row gets, as positions into the
view's rows (null for none), with the rules of the ``ASOF LEFT JOIN`` in
`_sql`: equal entity keys, the latest availability time at or before the
row's event time, and nothing when that view row's event time is older than
the time-to-live. A null key part or a null time never matches. Among view
rows with equal keys and equal availability time, the first in the view's
row order is taken.

Times are int64 microseconds since the epoch in UTC, as DuckDB's ``epoch_us``
returns them. Keys arrive as Arrow columns that already compare as the join
compares them (see `_join`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_MAX_COMPOSITE = 2**62
"""Largest key code times time span that one int64 sort key may hold."""


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
    if len(left) == 1:
        distinct = pc.unique(right[0]).drop_null()
        return (
            pc.index_in(left[0], value_set=distinct, skip_nulls=True),
            _codes(pc.index_in(right[0], value_set=distinct, skip_nulls=True)),
            len(distinct),
        )
    left_codes = np.zeros(len(left[0]), dtype=np.int64)
    right_codes = np.zeros(len(right[0]), dtype=np.int64)
    count = 1
    for left_column, right_column in zip(left, right):
        distinct = pc.unique(right_column).drop_null()
        right_part = pc.index_in(right_column, value_set=distinct, skip_nulls=True)
        left_part = pc.index_in(left_column, value_set=distinct, skip_nulls=True)
        right_codes = _combine(right_codes, right_part, len(distinct))
        left_codes = _combine(left_codes, left_part, len(distinct))
        left_codes, right_codes, count = _densify(left_codes, right_codes)
    return pa.array(left_codes, mask=left_codes < 0), right_codes, count


def _codes(part: pa.ChunkedArray) -> np.ndarray:
    """Return index_in's positions as int64, with -1 for null."""
    return part.fill_null(-1).to_numpy().astype(np.int64)


def _combine(codes: np.ndarray, part: pa.ChunkedArray, width: int) -> np.ndarray:
    values = _codes(part)
    combined = codes * max(width, 1) + values
    combined[(codes < 0) | (values < 0)] = -1
    return combined


def _densify(
    left_codes: np.ndarray, right_codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Renumber codes to 0..n-1 over the right side's, so products stay small."""
    distinct = np.unique(right_codes[right_codes >= 0])
    dense_right = np.where(
        right_codes >= 0, np.searchsorted(distinct, right_codes), -1
    ).astype(np.int64)
    found = np.searchsorted(distinct, left_codes)
    found_clipped = np.minimum(found, max(len(distinct) - 1, 0))
    known = (left_codes >= 0) & (len(distinct) > 0)
    if len(distinct):
        known &= distinct[found_clipped] == left_codes
    dense_left = np.where(known, found_clipped, -1).astype(np.int64)
    return dense_left, dense_right, len(distinct)


def asof_positions(
    left_codes: pa.Array | pa.ChunkedArray,
    left_times: pa.Array | pa.ChunkedArray,
    right_codes: np.ndarray,
    available: np.ndarray,
    observed: np.ndarray,
    ttl_us: int | None,
) -> pa.Array | pa.ChunkedArray:
    """Return the position of the view row each row is joined to, or null.

    The rows' side stays in Arrow, whose memory pool reuses buffers: on a few
    hundred thousand rows, fresh numpy arrays cost more in page faults than
    in arithmetic. The view's side is small and sorted with numpy.

    Args:
        left_codes: Key code of each row, null for none (see `key_codes`).
        left_times: Event time of each row as int64, null for none.
        right_codes: Key code of each view row, -1 for none.
        available: Availability time of each view row: event time plus delay.
        observed: Event time of each view row, for the time-to-live check.
        ttl_us: Time-to-live in microseconds, or None for no limit.
    """
    usable = np.flatnonzero(right_codes >= 0)
    code_range = pc.min_max(left_codes).as_py()
    time_range = pc.min_max(left_times).as_py()
    if usable.size == 0 or code_range["max"] is None or time_range["max"] is None:
        return pa.nulls(len(left_codes), pa.int64())
    # A stable sort keeps ties in the view's row order.
    order = usable[np.lexsort((available[usable], right_codes[usable]))]
    codes, times = right_codes[order], available[order]
    starts = np.ones(order.size, dtype=bool)
    starts[1:] = (codes[1:] != codes[:-1]) | (times[1:] != times[:-1])
    first_of_tie = np.maximum.accumulate(np.where(starts, np.arange(order.size), 0))
    view = _SortedView(codes, times, order[first_of_tie], observed, ttl_us)

    count = max(int(codes[-1]), code_range["max"]) + 2
    low = min(int(times.min()), time_range["min"])
    span = max(int(times.max()), time_range["max"]) - low + 1
    if count * span >= _MAX_COMPOSITE:
        return _match_rows(view, left_codes, left_times)
    # Rows share few (key, time) pairs, such as flights per airport and hour:
    # hashing the pairs packed in one int64 and looking each up once is
    # faster than sorting the rows. Code -1 (no key) sorts first.
    packed = pc.add(
        pc.multiply(pc.add(left_codes.cast(pa.int64()), 1), span),
        pc.subtract(left_times, low),
    )
    if isinstance(packed, pa.ChunkedArray):
        packed = packed.combine_chunks()
    encoded = pc.dictionary_encode(packed)
    distinct = encoded.dictionary.to_numpy()
    pair_order = np.argsort(distinct)
    pairs = distinct[pair_order]
    by_pair = np.empty(len(pairs), dtype=np.int64)
    by_pair[pair_order] = view.match(
        (codes + 1) * span + times - low,
        pairs,
        pairs // span - 1,
        pairs % span + low,
    )
    return pc.take(pa.array(by_pair, mask=by_pair < 0), encoded.indices)


class _SortedView:
    """View rows sorted by (key code, availability time), for lookups."""

    def __init__(
        self,
        codes: np.ndarray,
        times: np.ndarray,
        rows: np.ndarray,
        observed: np.ndarray,
        ttl_us: int | None,
    ) -> None:
        self.codes, self.times, self.rows = codes, times, rows
        """Code, time and position in the view of the row each sorted row is
        joined as: the first of its ties."""
        self.observed, self.ttl_us = observed, ttl_us

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


def _match_rows(
    view: _SortedView,
    left_codes: pa.Array | pa.ChunkedArray,
    left_times: pa.Array | pa.ChunkedArray,
) -> pa.Array:
    """Look up every row, with times ranked among the view's distinct times.

    Ranks keep the order of (code, time) pairs in an int64 when the times
    span too much to pack them, but rows between two view times share a
    rank, so each row is looked up with its own time.
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
    return pa.array(positions, mask=positions < 0)


def static_positions(
    left_codes: pa.Array | pa.ChunkedArray, right_codes: np.ndarray, count: int
) -> pa.Array | pa.ChunkedArray | None:
    """Return the position of the view row with each row's key, or null.

    Returns None when two view rows have one key: a ``LEFT JOIN`` then gives
    the row once per view row, which positions cannot express.
    """
    usable = np.flatnonzero(right_codes >= 0)
    by_code = np.full(max(count, 1), -1, dtype=np.int64)
    by_code[right_codes[usable]] = usable
    if np.count_nonzero(by_code >= 0) != usable.size:
        return None
    return pc.take(pa.array(by_code, mask=by_code < 0), left_codes)


def take_rows(values: pa.Table, positions: pa.Array | pa.ChunkedArray) -> pa.Table:
    """Return the rows of `values` at `positions`, with nulls where it is null."""
    return values.take(positions)
