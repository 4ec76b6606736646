"""A model's derived features of small requests come from a cache, as DuckDB computes them."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pytest

from appliance import derive
from appliance.derive import CastError, RowCache, row_keys

DERIVE = {
    "age": "year(ts) - built",
    "ratio_text": "CAST(ratio AS VARCHAR)",
    "inverse": "1 / ratio",
    "tag": "upper(code) || ':' || coalesce(CAST(age AS VARCHAR), 'none')",
}
REQUEST = [
    {"name": "ts", "sql_type": "TIMESTAMP"},
    {"name": "built", "sql_type": "BIGINT"},
    {"name": "ratio", "sql_type": "DOUBLE"},
    {"name": "code", "sql_type": "VARCHAR"},
    {"name": "unused", "sql_type": "INTEGER"},
]
NUMERIC = ["age", "inverse"]
CATEGORICAL = ["ratio_text", "tag"]
ROWS: list[dict[str, Any]] = [
    {"ts": "2024-05-01 10:00:00", "built": 2001.0, "ratio": 0.5, "code": "ab"},
    {"ts": "2024-05-01 10:00:00", "built": 2001.0, "ratio": -0.0, "code": "ab"},
    {"ts": "2024-05-01 10:00:00", "built": 2001.0, "ratio": 0.0, "code": "ab"},
    {"ts": "2030-01-01 00:00:00", "built": None, "ratio": math.nan, "code": None},
    {"ts": None, "built": 1990.0, "ratio": None, "code": "zz"},
    {"ts": "2024-05-01 10:00:00", "built": 2001.0, "ratio": 0.5, "code": "AB"},
]


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    """Return request rows as `OnnxModel.derived_features` hands them over."""
    return pa.table(
        {
            "ts": pa.array([r["ts"] for r in rows], pa.string()),
            "built": pa.array([r["built"] for r in rows], pa.float64()),
            "ratio": pa.array([r["ratio"] for r in rows], pa.float64()),
            "code": pa.array([r["code"] for r in rows], pa.string()),
            "unused": pa.array([r.get("unused", "7") for r in rows], pa.string()),
        }
    )


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    """Return a table's rows, with floats as hex text so -0.0 and NaN compare."""
    columns = [
        [v.hex() if isinstance(v, float) else v for v in column.to_pylist()]
        for column in table.columns
    ]
    return list(zip(*columns))


@pytest.fixture(autouse=True)
def _fresh_caches(monkeypatch) -> None:
    monkeypatch.setattr(derive, "_feature_caches", type(derive._feature_caches)())


def _cache() -> RowCache:
    (cache,) = derive._feature_caches.values()
    return cache


def test_compute_cached_equals_query() -> None:
    expected = derive._compute_sql(DERIVE, REQUEST, NUMERIC, CATEGORICAL, _table(ROWS))

    for _ in range(2):
        for index, row in enumerate(ROWS):
            got = derive.compute(DERIVE, REQUEST, NUMERIC, CATEGORICAL, _table([row]))
            assert _rows(got) == _rows(expected)[index : index + 1], row
    together = derive.compute(DERIVE, REQUEST, NUMERIC, CATEGORICAL, _table(ROWS))

    assert together.column_names == NUMERIC + CATEGORICAL
    assert _rows(together) == _rows(expected)
    assert _cache().hits == 2 * len(ROWS)
    assert _cache().misses == len(ROWS)


def test_compute_cached_values() -> None:
    got = derive.compute(DERIVE, REQUEST, NUMERIC, CATEGORICAL, _table(ROWS))

    assert got.column("age").to_pylist()[:2] == [23.0, 23.0]
    assert got.column("inverse").to_pylist()[1:3] == [-math.inf, math.inf]
    assert got.column("ratio_text").to_pylist()[1:3] == ["-0.0", "0.0"]
    assert got.column("tag").to_pylist()[3] == ""
    assert got.column("tag").to_pylist()[4] == "ZZ:none"
    assert got.column("tag").to_pylist()[5] == "AB:23"


def test_compute_key_ignores_unread_column() -> None:
    derive.compute(DERIVE, REQUEST, NUMERIC, CATEGORICAL, _table(ROWS[:1]))
    other = _table([{**ROWS[0], "unused": "8"}])

    derive.compute(DERIVE, REQUEST, NUMERIC, CATEGORICAL, other)

    assert _cache().hits == 1


def test_compute_cast_error_names_row_of_request() -> None:
    derive.compute(DERIVE, REQUEST, NUMERIC, CATEGORICAL, _table(ROWS[:2]))
    rows = [*ROWS[:2], {**ROWS[0], "ts": "not a time"}]

    with pytest.raises(CastError, match="'not a time' cannot be cast") as err:
        derive.compute(DERIVE, REQUEST, NUMERIC, CATEGORICAL, _table(rows))

    assert err.value.row == 2
    assert err.value.column == "ts"


def test_compute_large_table_skips_cache() -> None:
    rows = ROWS * (derive.CACHED_ROWS // len(ROWS) + 1)

    got = derive.compute(DERIVE, REQUEST, NUMERIC, CATEGORICAL, _table(rows))

    assert got.num_rows == len(rows)
    assert derive._feature_caches == {}


def test_row_cache_bounded() -> None:
    cache = RowCache(max_entries=2)
    keys = row_keys([pa.array([1, 2, 3]), pa.array(["a", "b", "c"])], 3)

    cache.put(keys, [(1,), (2,), (3,)])
    values, missed = cache.get(keys)

    assert len(cache) == 2
    assert values == [None, (2,), (3,)]
    assert missed == [0]


def test_row_keys_tell_types_apart() -> None:
    ints = row_keys([pa.array([7, 0])], 2)
    floats = row_keys([pa.array([7.0, -0.0])], 2)
    zero = row_keys([pa.array([0.0])], 1)

    assert ints[0] != floats[0]
    assert row_keys([pa.array([True])], 1) != row_keys([pa.array([1])], 1)
    assert floats[1] != zero[0]
    assert row_keys([pa.array(["x" * 300])], 1) == [None]
    assert row_keys([], 2) == [((), ()), ((), ())]
