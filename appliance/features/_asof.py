"""Point-in-time matching of rows to feature view rows with numpy and Arrow.

These functions compute which view row each row gets, as positions into the
view's rows (-1 for none), with the rules of the ``ASOF LEFT JOIN`` in `_sql`:
equal entity keys, the latest availability time at or before the row's event
time, and nothing when that row's event time is older than the time-to-live.
A null key part or a null time never matches. Among view rows with equal keys
and equal availability time, the first in the view's row order is taken.

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
) -> tuple[np.ndarray, np.ndarray, int]:
    """Encode multi-column keys of both sides as codes of the right side's keys.

    Each pair of columns must be of one Arrow type. Equal keys get equal codes
    from 0 to the count of distinct right keys; a key with a null part, or a
    left key that no right row has, gets -1.

    Returns:
        The left codes, the right codes and the count of distinct right keys.
    """
    left_codes = np.zeros(len(left[0]), dtype=np.int64)
    right_codes = np.zeros(len(right[0]), dtype=np.int64)
    count = 1
    for left_column, right_column in zip(left, right):
        distinct = pc.unique(right_column).drop_null()
        right_part = pc.index_in(right_column, value_set=distinct, skip_nulls=True)
        left_part = pc.index_in(left_column, value_set=distinct, skip_nulls=True)
        right_codes = _combine(right_codes, right_part, len(distinct))
        left_codes = _combine(left_codes, left_part, len(distinct))
        count *= max(len(distinct), 1)
        if len(left) > 1:
            left_codes, right_codes, count = _densify(left_codes, right_codes)
    return left_codes, right_codes, count


def _combine(codes: np.ndarray, part: pa.ChunkedArray, width: int) -> np.ndarray:
    values = part.fill_null(-1).to_numpy().astype(np.int64)
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
    left_codes: np.ndarray,
    left_times: np.ndarray,
    right_codes: np.ndarray,
    available: np.ndarray,
    observed: np.ndarray,
    ttl_us: int | None,
) -> np.ndarray:
    """Return the position of the view row each row is joined to, or -1.

    Args:
        left_codes: Key code of each row, -1 for none (see `key_codes`).
        left_times: Event time of each row; masked rows have code -1.
        right_codes: Key code of each view row, -1 for none.
        available: Availability time of each view row: event time plus delay.
        observed: Event time of each view row, for the time-to-live check.
        ttl_us: Time-to-live in microseconds, or None for no limit.
    """
    usable = np.flatnonzero(right_codes >= 0)
    positions = np.full(len(left_codes), -1, dtype=np.int64)
    if usable.size == 0 or len(left_codes) == 0:
        return positions
    # A stable sort keeps ties in the view's row order.
    order = usable[np.lexsort((available[usable], right_codes[usable]))]
    codes, times = right_codes[order], available[order]
    starts = np.ones(order.size, dtype=bool)
    starts[1:] = (codes[1:] != codes[:-1]) | (times[1:] != times[:-1])
    first_of_tie = np.maximum.accumulate(np.where(starts, np.arange(order.size), 0))

    right_keys, left_keys = _sort_keys(codes, times, left_codes, left_times)
    # Sorted queries make searchsorted walk memory in order, several times faster.
    query_order = np.argsort(left_keys)
    found = np.empty(len(left_keys), dtype=np.int64)
    found[query_order] = (
        np.searchsorted(right_keys, left_keys[query_order], side="right") - 1
    )

    at = np.maximum(found, 0)
    matched = (left_codes >= 0) & (found >= 0)
    matched &= codes[at] == left_codes
    matched &= times[at] <= left_times
    if ttl_us is not None:
        matched &= observed[order][first_of_tie[at]] >= left_times - ttl_us
    positions[matched] = order[first_of_tie[at[matched]]]
    return positions


def _sort_keys(
    codes: np.ndarray, times: np.ndarray, left_codes: np.ndarray, left_times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return int64 keys that sort as (code, time) pairs on both sides.

    A left key only has to land after every right pair at or before it; the
    caller checks the code and time of the row found, so a left time outside
    the right side's range is clipped to the range's edge.
    """
    count = int(codes[-1]) + 1
    low, high = int(times.min()), int(times.max())
    span = high - low + 2
    if count * span < _MAX_COMPOSITE:
        right_keys = codes * span + (times - low + 1)
        left_steps = np.clip(left_times - low + 1, 0, span - 1)
        return right_keys, left_codes * span + left_steps
    # Times as ranks among the right side's distinct times: fewer steps.
    distinct = np.unique(times)
    span = len(distinct) + 1
    right_steps = np.searchsorted(distinct, times) + 1
    left_steps = np.searchsorted(distinct, left_times, side="right")
    return codes * span + right_steps, left_codes * span + left_steps


def static_positions(
    left_codes: np.ndarray, right_codes: np.ndarray, count: int
) -> np.ndarray | None:
    """Return the position of the view row with each row's key, or -1.

    Returns None when two view rows have one key: a ``LEFT JOIN`` then gives
    the row once per view row, which positions cannot express.
    """
    usable = np.flatnonzero(right_codes >= 0)
    by_code = np.full(max(count, 1), -1, dtype=np.int64)
    by_code[right_codes[usable]] = usable
    if np.count_nonzero(by_code >= 0) != usable.size:
        return None
    return np.where(left_codes >= 0, by_code[np.maximum(left_codes, 0)], -1)


def take_rows(values: pa.Table, positions: np.ndarray) -> pa.Table:
    """Return the rows of `values` at `positions`, with nulls where it is -1."""
    indices = pa.array(positions, mask=positions < 0)
    return values.take(indices)
