"""In-memory lookup of one feature view's rows by entity key, for small requests.

A point-in-time join in DuckDB costs several milliseconds of planning even
for one request row. `ViewIndex` keeps a view's rows sorted by entity key and
availability time, so the row a request gets is found with a binary search:
the same row the ``ASOF LEFT JOIN`` of `_sql` picks, with the same TTL rule.
Entity keys compare as DuckDB's ``CAST(... AS VARCHAR)`` text, as in the
join. A request value the index cannot convert exactly as DuckDB would (a
float key, a time that is not ISO 8601) makes `lookup` raise `Unsupported`,
and the caller joins in DuckDB instead.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from appliance.config import FeatureViewConfig
from appliance.errors import shown
from appliance.features._sql import AVAILABLE, OBSERVED, ident, source_sql

_ISO_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?"
)
"""The ISO 8601 texts that `datetime.fromisoformat` and DuckDB read alike."""


class Unsupported(Exception):
    """A request value that only DuckDB can compare or convert exactly."""


class ViewIndex:
    """Rows of one feature view by entity key, sorted by availability time."""

    def __init__(
        self,
        db: duckdb.DuckDBPyConnection,
        view: FeatureViewConfig,
        features: Sequence[str],
    ) -> None:
        """Read and sort the view's rows from `db`, where `view.sql` can run."""
        self.view = view
        self.features = list(features)
        names = [f"_key{i}" for i in range(len(view.entities))]
        keys = ", ".join(
            f"CAST({ident(k)} AS VARCHAR) AS {n}" for k, n in zip(view.entities, names)
        )
        present = " AND ".join(f"{ident(k)} IS NOT NULL" for k in view.entities)
        picked = "".join(f", {ident(c)}" for c in self.features)
        times = ""
        order = list(names)
        if view.timestamp is not None:
            times = f", epoch_us({AVAILABLE}) AS _at, epoch_us({OBSERVED}) AS _seen"
            present += f" AND {AVAILABLE} IS NOT NULL"
            order.append("_at")
        # Repeated keys are read too, without the window of `unique_sql`.
        # The sort is stable, so rows of equal keys and times stay in the
        # view's row order and `lookup` takes the last of them.
        rows = source_sql(view, unique=False)
        table = db.sql(
            f"SELECT {keys}{times}{picked} FROM ({rows}) WHERE {present}"
        ).to_arrow_table()
        table = table.take(
            pc.sort_indices(table, [(name, "ascending") for name in order])
        )
        self.values = table.select(self.features)
        self.keys: dict[tuple[str, ...], tuple[int, int]] = {}
        columns = [table.column(n).to_pylist() for n in names]
        for index, key in enumerate(zip(*columns)):
            start, _ = self.keys.get(key, (index, index))
            self.keys[key] = (start, index + 1)
        self.times: list[int] = []
        self.seen: list[int] = []
        if view.timestamp is not None:
            self.times = table.column("_at").to_pylist()
            self.seen = table.column("_seen").to_pylist()

    def lookup(self, row: Mapping[str, Any], at: dt.datetime | None) -> dict[str, Any]:
        """Return the view's feature values for a request row at time `at`.

        Args:
            row: The request row, with the view's entity keys.
            at: Event time of the row; required when the view has a timestamp.

        Raises:
            Unsupported: A key value is not text or an integer.
        """
        missing = dict.fromkeys(self.features)
        key = _key_texts([row.get(name) for name in self.view.entities])
        if key is None or key not in self.keys:
            return missing
        start, end = self.keys[key]
        position = end - 1
        if self.view.timestamp is not None:
            assert at is not None
            micros = _epoch_us(at)
            position = bisect.bisect_right(self.times, micros, start, end) - 1
            if position < start:
                return missing
            ttl = self.view.ttl_seconds
            if ttl is not None and self.seen[position] < micros - ttl * 1_000_000:
                return missing
        if not self.features:
            return {}
        return self.values.slice(position, 1).to_pylist()[0]


def event_time(value: Any, now: dt.datetime) -> dt.datetime:
    """Return a request's event time as DuckDB's TIMESTAMPTZ cast in UTC reads it.

    A missing value means `now`, as the join's ``coalesce(time, now())``.

    Raises:
        Unsupported: The value is not None or an ISO 8601 text of the forms
            both read alike.
    """
    if value is None:
        return now
    if not isinstance(value, str) or not _ISO_TIME.fullmatch(value):
        raise Unsupported(f"event time {shown(value)} is not a plain ISO 8601 text")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise Unsupported(f"event time {shown(value)} is not a valid time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed


def arrow_types(db: duckdb.DuckDBPyConnection, view: FeatureViewConfig) -> pa.Schema:
    """Return the Arrow schema of a view's rows, for tables of looked-up values."""
    return db.sql(f"SELECT * FROM ({view.sql}) LIMIT 0").to_arrow_table().schema


def _key_texts(values: list[Any]) -> tuple[str, ...] | None:
    """Return the entity key as the join compares it, or None if a part is null."""
    parts = []
    for value in values:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise Unsupported(f"entity key {shown(value)} is not text or an integer")
        parts.append(str(value))
    return tuple(parts)


def _epoch_us(at: dt.datetime) -> int:
    delta = at - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
