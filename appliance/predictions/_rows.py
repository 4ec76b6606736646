"""Conversion of served predictions into rows of the prediction log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import msgspec
import numpy as np
import pyarrow as pa

from appliance.jsonnumbers import overflowed_text
from appliance.predictions._store import LOG_SCHEMA


@dataclass(slots=True)
class LogEntry:
    """The predictions of one request, waiting to be logged.

    `inputs` and `outputs` are either lists of JSON-ready rows (JSON requests)
    or Arrow tables of the same length (Arrow requests). The outputs of an
    Arrow request are the table of the response (see `OnnxModel.format_table`),
    and `entries_to_table` logs them in the shape of a JSON response's.
    """

    request_id: str
    model: str
    version: int
    predicted_at: float
    """Seconds since the epoch when the request arrived."""
    latency_ms: float
    inputs: list[Any] | pa.Table
    outputs: list[Any] | pa.Table

    @property
    def rows(self) -> int:
        """Number of predicted rows."""
        return len(self.inputs)


_encode = msgspec.json.Encoder(enc_hook=overflowed_text).encode


_UNIT_ENTRIES = 16
"""JSON entries converted between two calls of the `tick` callback."""


def entries_to_table(
    entries: list[LogEntry],
    db: duckdb.DuckDBPyConnection,
    tick: Callable[[], None] | None = None,
) -> pa.Table:
    """Return the log rows of `entries` as one table of `LOG_SCHEMA`.

    Args:
        entries: Entries to convert.
        db: DuckDB cursor used to write Arrow rows as JSON; it is only read.
        tick: Called after every few JSON entries, such as a pacer's tick.
    """
    rows = [entry for entry in entries if entry.rows and isinstance(entry.inputs, list)]
    parts = [_json_entries_table(rows, tick)] if rows else []
    parts += [
        _entry_table(entry, db)
        for entry in entries
        if entry.rows and not isinstance(entry.inputs, list)
    ]
    if not parts:
        return LOG_SCHEMA.empty_table()
    return pa.concat_tables(parts)


def log_tables(
    entries: list[LogEntry],
    db: duckdb.DuckDBPyConnection,
    slice_rows: int,
    tick: Callable[[], None] | None = None,
) -> Iterator[pa.Table]:
    """Yield the log rows of `entries` as tables of `LOG_SCHEMA`.

    The JSON entries come first, in one table. Each Arrow entry follows in
    slices of at most `slice_rows` rows, so the JSON text of a large Arrow
    request is never built at once. In one piece, 300,000 flights rows took
    about 290 MB at the peak of their conversion for 140 MB of log rows
    (one-off measurement).

    Args:
        entries: Entries to convert.
        db: DuckDB cursor used to write Arrow rows as JSON; it is only read.
        slice_rows: Maximum rows of an Arrow entry converted at once.
        tick: Called after every few JSON entries and after each slice.
    """
    rows = [entry for entry in entries if entry.rows and isinstance(entry.inputs, list)]
    if rows:
        yield _json_entries_table(rows, tick)
    for entry in entries:
        if isinstance(entry.inputs, list):
            continue
        for start in range(0, entry.rows, slice_rows):
            yield _entry_table(entry, db, start, slice_rows)
            if tick is not None:
                tick()


def _json_entries_table(
    entries: list[LogEntry], tick: Callable[[], None] | None
) -> pa.Table:
    """Convert entries of JSON requests with one pass over their rows."""
    request_ids, indexes, models, versions, micros = [], [], [], [], []
    inputs, outputs, latencies = [], [], []
    for number, entry in enumerate(entries, 1):
        if tick is not None and number % _UNIT_ENTRIES == 0:
            tick()
        count = entry.rows
        request_ids += [entry.request_id] * count
        indexes += range(count)
        models += [entry.model] * count
        versions += [entry.version] * count
        micros += [int(entry.predicted_at * 1_000_000)] * count
        latencies += [entry.latency_ms] * count
        inputs += [_encode(row).decode() for row in entry.inputs]
        outputs += [_encode(row).decode() for row in entry.outputs]
    return pa.table(
        [
            pa.array(request_ids, pa.string()),
            pa.array(indexes, pa.int32()),
            pa.array(models, pa.string()),
            pa.array(versions, pa.int32()),
            pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            pa.array(inputs, pa.string()),
            pa.array(outputs, pa.string()),
            pa.array(latencies, pa.float64()),
        ],
        schema=LOG_SCHEMA,
    )


def _entry_table(
    entry: LogEntry,
    db: duckdb.DuckDBPyConnection,
    start: int = 0,
    length: int | None = None,
) -> pa.Table:
    """Convert the rows of an Arrow entry from row `start`, `length` of them
    (all when None)."""
    assert isinstance(entry.inputs, pa.Table), "a JSON entry has no slices"
    assert isinstance(entry.outputs, pa.Table), "a JSON entry has no slices"
    inputs_table = entry.inputs.slice(start, length)
    count = inputs_table.num_rows
    inputs = _json_column(inputs_table, db)
    outputs = _json_column(entry.outputs.slice(start, length), db, outputs=True)
    micros = int(entry.predicted_at * 1_000_000)
    return pa.table(
        [
            pa.array([entry.request_id] * count, pa.string()),
            pa.array(np.arange(start, start + count, dtype=np.int32)),
            pa.array([entry.model] * count, pa.string()),
            pa.array(np.full(count, entry.version, dtype=np.int32)),
            pa.array(np.full(count, micros, dtype=np.int64)).cast(
                pa.timestamp("us", tz="UTC")
            ),
            inputs,
            outputs,
            pa.array(np.full(count, entry.latency_ms, dtype=np.float64)),
        ],
        schema=LOG_SCHEMA,
    )


def _json_column(
    values: list[Any] | pa.Table,
    db: duckdb.DuckDBPyConnection,
    outputs: bool = False,
) -> pa.Array:
    """Return each row of `values` as a JSON object text.

    An Arrow table of `outputs` is written in the shape of a JSON response's
    outputs (see `_response_outputs`).
    """
    if not isinstance(values, pa.Table):
        return pa.array([_encode(row).decode() for row in values], pa.string())
    import pyarrow.compute as pc  # Arrow requests only; about 9 MB resident

    # DuckDB writes NaN and infinity as bare NaN and Infinity, which JSON
    # parsers reject. msgspec writes both as null in the outputs of a JSON
    # request, so outputs get null for both.
    # NOTE: an infinite input is still written as Infinity.
    if outputs:
        table = _response_outputs(_null_floats(values, _not_finite))
    else:
        table = _null_floats(values, pc.is_nan)
    arrays = [column.chunk(0) for column in table.columns]
    rows = pa.table({"row": pa.StructArray.from_arrays(arrays, table.column_names)})
    # DuckDB writes a whole row as JSON without a Python loop.
    db.register("_prediction_json", rows)
    try:
        result = db.sql(
            "SELECT to_json(row)::VARCHAR AS row FROM _prediction_json"
        ).to_arrow_table()
    finally:
        db.unregister("_prediction_json")
    return result.column(0).combine_chunks().cast(pa.string())


def _null_floats(table: pa.Table, invalid: Callable[[pa.Array], pa.Array]) -> pa.Table:
    """Return `table` in one chunk per column, with `invalid` floats as null."""
    import pyarrow.compute as pc

    table = table.combine_chunks()
    arrays = []
    for column in table.columns:
        array = column.chunk(0) if column.num_chunks else pa.array([], column.type)
        if pa.types.is_floating(array.type):
            array = pc.if_else(invalid(array), pa.scalar(None, array.type), array)
        arrays.append(array)
    return pa.table(arrays, names=table.column_names)


def _not_finite(array: pa.Array) -> pa.Array:
    import pyarrow.compute as pc

    return pc.invert(pc.is_finite(array))


_PREDICTION = "prediction"
_PROBABILITY = "probability_"


def _response_outputs(table: pa.Table) -> pa.Table:
    """Return the outputs of an Arrow response in the shape of a JSON response's.

    An Arrow response has a ``prediction`` column and, for a classifier, a
    ``probability_<class>`` column per class. A JSON response has a
    ``value`` per row for a regression, and for a classifier a ``label`` and
    an object of ``probabilities`` by class. Logging both in the JSON shape
    gives the log and its readers one shape per model.
    """
    names = table.column_names
    if _PREDICTION not in names:
        return table
    if names == [_PREDICTION]:
        return pa.table({"value": table.column(_PREDICTION)})
    classes = [n for n in names if n.startswith(_PROBABILITY)]
    probabilities = pa.StructArray.from_arrays(
        [table.column(n).chunk(0) for n in classes],
        [n[len(_PROBABILITY) :] for n in classes],
    )
    return pa.table(
        {"label": table.column(_PREDICTION), "probabilities": probabilities}
    )
