"""The numpy matcher of point-in-time joins against a row-by-row reference."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from appliance.features._asof import (
    _grid,
    asof_positions,
    key_codes,
    static_positions,
    with_null_row,
)

HOUR = 3_600_000_000


def positions_of(
    left_codes: np.ndarray,
    left_times: np.ndarray,
    right_codes: np.ndarray,
    available: np.ndarray,
    observed: np.ndarray,
    ttl_us: int | None,
) -> list[int]:
    """Run `asof_positions` with -1 for a missing left code and for no match."""
    found = asof_positions(
        pa.array(left_codes, mask=left_codes < 0),
        pa.array(left_times, pa.int64()),
        right_codes,
        available,
        observed,
        ttl_us,
    )
    return found.fill_null(-1).to_pylist()


def reference_positions(
    left_codes: np.ndarray,
    left_times: np.ndarray,
    right_codes: np.ndarray,
    available: np.ndarray,
    observed: np.ndarray,
    ttl_us: int | None,
) -> np.ndarray:
    """Match each row by scanning every view row: the rule, written plainly."""
    out = np.full(len(left_codes), -1, dtype=np.int64)
    for i, (code, at) in enumerate(zip(left_codes, left_times)):
        if code < 0:
            continue
        best = -1
        for j in range(len(right_codes)):
            if right_codes[j] != code or available[j] > at:
                continue
            # Of equal availability times, the last view row wins.
            if best < 0 or available[j] >= available[best]:
                best = j
        if best >= 0 and (ttl_us is None or observed[best] >= at - ttl_us):
            out[i] = best
    return out


@pytest.mark.parametrize(
    ("keys", "span_us", "seed"),
    [
        (5, 48 * HOUR, 0),
        (40, 10 * HOUR, 1),
        # 2,000 keys over 200 years do not fit one int64 sort key, so the
        # matcher ranks the times instead.
        (2_000, 200 * 365 * 24 * HOUR, 2),
    ],
)
@pytest.mark.parametrize("ttl_steps", [None, 3])
def test_asof_positions_match_reference(
    keys: int, span_us: int, seed: int, ttl_steps: int | None
) -> None:
    rng = np.random.default_rng(seed)
    start = -span_us // 2
    right_codes = rng.integers(-1, keys, 600)
    # Few distinct times, so equal availability times (ties) are common.
    steps = rng.integers(0, 40, 600)
    observed = start + steps * (span_us // 40)
    available = observed + rng.choice([0, HOUR], 600)
    left_codes = rng.integers(-1, keys + 3, 400)
    left_codes[left_codes >= keys] = -1
    left_times = start + rng.integers(-span_us // 10, span_us + span_us // 10, 400)
    # Some rows sit exactly on a view row's availability time.
    left_times[:50] = available[:50]
    left_codes[:50] = right_codes[:50]
    ttl_us = None if ttl_steps is None else ttl_steps * (span_us // 40)

    found = positions_of(
        left_codes, left_times, right_codes, available, observed, ttl_us
    )
    expected = reference_positions(
        left_codes, left_times, right_codes, available, observed, ttl_us
    )

    assert sum(p >= 0 for p in found) > 0
    assert found == expected.tolist()


@pytest.mark.parametrize("ttl_hours", [None, 2])
def test_asof_positions_on_time_grid_match_reference(ttl_hours: int | None) -> None:
    # Hourly row times and more rows than (key, hour) cells take the grid
    # path; the view's times are off the grid by half an hour in places.
    rng = np.random.default_rng(3)
    keys = 4
    right_codes = rng.integers(-1, keys, 300)
    observed = rng.integers(0, 48, 300) * HOUR + rng.choice([0, HOUR // 2], 300)
    available = observed + rng.choice([0, HOUR], 300)
    left_codes = rng.integers(-1, keys + 2, 2_000)
    left_codes[left_codes >= keys] = -1
    left_times = rng.integers(-2, 52, 2_000) * HOUR
    ttl_us = None if ttl_hours is None else ttl_hours * HOUR

    grid = _grid(
        pa.array(left_codes, mask=left_codes < 0),
        pa.array(left_times),
        keys,
        int(left_times.min()),
        int(left_times.max()),
    )
    found = positions_of(
        left_codes, left_times, right_codes, available, observed, ttl_us
    )
    expected = reference_positions(
        left_codes, left_times, right_codes, available, observed, ttl_us
    )

    assert grid is not None
    assert grid.step == HOUR
    assert sum(p >= 0 for p in found) > 0
    assert found == expected.tolist()


def test_asof_positions_grid_null_time_unmatched() -> None:
    times = pa.array([0, None, HOUR, HOUR, 0, HOUR], pa.int64())
    codes = pa.array([0, 0, None, 0, 0, 0])

    grid = _grid(codes, times, 1, 0, HOUR)
    found = asof_positions(
        codes, times, np.array([0, 0]), np.array([0, HOUR]), np.array([0, HOUR]), None
    )

    assert grid is not None
    assert found.to_pylist() == [0, None, None, 1, 0, 1]


def test_asof_positions_off_grid_row_not_gridded() -> None:
    # 10,000 hourly rows, but row 1 is a microsecond late. The step comes
    # from every other row, so only the check of every row can catch it.
    times = np.arange(10_000) % 24 * HOUR
    times[1] += 1
    codes = pa.array(np.zeros(10_000, dtype=np.int64))

    grid = _grid(codes, pa.array(times), 1, 0, int(times.max()))
    found = asof_positions(
        codes,
        pa.array(times),
        np.array([0]),
        np.array([HOUR + 1]),
        np.array([HOUR + 1]),
        None,
    ).to_pylist()

    assert grid is None
    assert found[:4] == [None, 0, 0, 0]
    assert found[24:26] == [None, None]


def test_asof_positions_equal_time_joined() -> None:
    found = positions_of(
        np.array([0, 0]),
        np.array([10, 9]),
        np.array([0]),
        np.array([10]),
        np.array([10]),
        None,
    )

    assert found == [0, -1]


def test_asof_positions_tie_takes_last_row() -> None:
    found = positions_of(
        np.array([0]),
        np.array([20]),
        np.array([0, 0, 0]),
        np.array([5, 10, 10]),
        np.array([5, 10, 10]),
        None,
    )

    assert found == [2]


def test_asof_positions_ttl_boundary() -> None:
    # The view row is exactly 3 units old at 13 (kept) and 4 units at 14.
    found = positions_of(
        np.array([0, 0]),
        np.array([13, 14]),
        np.array([0]),
        np.array([10]),
        np.array([10]),
        3,
    )

    assert found == [0, -1]


def test_asof_positions_empty_view() -> None:
    found = positions_of(
        np.array([0, -1]),
        np.array([1, 2]),
        np.array([], dtype=np.int64),
        np.array([], dtype=np.int64),
        np.array([], dtype=np.int64),
        None,
    )

    assert found == [-1, -1]


def test_key_codes_nulls_and_unknown_keys() -> None:
    left = [pa.chunked_array([["a", None, "c", "b"]])]
    right = [pa.chunked_array([["b", "a", None, "b"]])]

    left_codes, right_codes, count = key_codes(left, right)

    left_list = left_codes.to_pylist()
    assert count == 2
    assert right_codes[2] == -1
    assert left_list[1] is None
    assert left_list[2] is None
    assert left_list[0] == right_codes[1]
    assert left_list[3] == right_codes[0] == right_codes[3]


def test_key_codes_two_columns() -> None:
    left = [
        pa.chunked_array([["a", "a", "b", "b", None]]),
        pa.chunked_array([[1, 2, 1, 3, 1]]),
    ]
    right = [pa.chunked_array([["a", "b", "a"]]), pa.chunked_array([[2, 1, None]])]

    left_codes, right_codes, count = key_codes(left, right)

    left_list = left_codes.to_pylist()
    assert count == 2
    assert right_codes[2] == -1
    assert left_list[0] is None
    assert left_list[1] == right_codes[0]
    assert left_list[2] == right_codes[1]
    assert left_list[3] is None
    assert left_list[4] is None


def test_static_positions_repeated_key_takes_last_row() -> None:
    found = static_positions(pa.array([1, 0, None]), np.array([1, 0, 1, -1, 1]), 2)

    assert found.tolist() == [4, 1, -1]


def test_static_positions_found() -> None:
    found = static_positions(pa.array([1, None, 0, 2]), np.array([0, -1, 1]), 3)

    assert found is not None
    assert found.tolist() == [2, -1, 0, -1]


def test_null_row_taken_for_no_match() -> None:
    values = with_null_row(pa.table({"temp": [1.5, 2.5], "origin": ["a", "b"]}))

    taken = values.take(np.array([1, 2, 0]))

    assert values.num_rows == 3
    assert values.column("temp").num_chunks == 1
    assert taken.column("temp").to_pylist() == [2.5, None, 1.5]
    assert taken.column("origin").to_pylist() == ["b", None, "a"]


def test_null_row_makes_fields_nullable() -> None:
    schema = pa.schema([pa.field("seats", pa.int64(), nullable=False)])
    values = pa.Table.from_arrays([pa.array([150])], schema=schema)

    padded = with_null_row(values)

    assert padded.schema.field("seats").nullable
    assert padded.column("seats").to_pylist() == [150, None]
