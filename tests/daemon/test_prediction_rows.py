"""Prediction log rows built from JSON and Arrow requests, without a daemon."""

from __future__ import annotations

import json
import math

import duckdb
import pyarrow as pa

from appliance.predictions import LOG_SCHEMA, LogEntry, entries_to_table
from appliance.predictions._rows import log_tables


def test_entries_become_one_row_per_prediction() -> None:
    entries = [
        LogEntry(
            "json",
            "m",
            1,
            1_700_000_000.5,
            2.5,
            [{"a": 1.0}, {"a": None}],
            [{"value": 3.0}, {"value": None}],
        ),
        LogEntry(
            "arrow",
            "m",
            2,
            1_700_000_001.0,
            7.0,
            pa.table({"a": [1.5, math.nan], "b": ["x", None]}),
            pa.table({"prediction": [1, 0]}),
        ),
        LogEntry("empty", "m", 1, 1_700_000_002.0, 1.0, [], []),
    ]
    table = entries_to_table(entries, duckdb.connect())
    assert table.schema == LOG_SCHEMA
    rows = table.to_pylist()
    assert [(r["request_id"], r["row_index"]) for r in rows] == [
        ("json", 0),
        ("json", 1),
        ("arrow", 0),
        ("arrow", 1),
    ]
    assert json.loads(rows[1]["input"]) == {"a": None}
    assert json.loads(rows[1]["output"]) == {"value": None}
    assert json.loads(rows[3]["input"]) == {"a": None, "b": None}
    assert json.loads(rows[2]["output"]) == {"value": 1}
    assert rows[2]["version"] == 2
    assert rows[0]["latency_ms"] == 2.5
    assert rows[0]["predicted_at"].timestamp() == 1_700_000_000.5


def test_arrow_outputs_take_json_shape() -> None:
    outputs = pa.table(
        {
            "prediction": ["b", "a"],
            "probability_a": [0.25, math.nan],
            "probability_b": [0.75, 0.5],
        }
    )
    values = pa.table({"prediction": [math.inf, 2.5]})
    entries = [
        LogEntry("class", "m", 1, 0.0, 1.0, pa.table({"x": [1, 2]}), outputs),
        LogEntry("value", "r", 1, 0.0, 1.0, pa.table({"x": [1, 2]}), values),
    ]

    rows = entries_to_table(entries, duckdb.connect()).to_pylist()

    assert [json.loads(r["output"]) for r in rows] == [
        {"label": "b", "probabilities": {"a": 0.25, "b": 0.75}},
        {"label": "a", "probabilities": {"a": None, "b": 0.5}},
        {"value": None},
        {"value": 2.5},
    ]


def test_no_entries_give_empty_table() -> None:
    table = entries_to_table([], duckdb.connect())
    assert table.num_rows == 0
    assert table.schema == LOG_SCHEMA


def test_arrow_entry_converted_in_slices() -> None:
    # Two record batches, so that slices cross a chunk boundary.
    inputs = pa.concat_tables(
        [
            pa.table({"a": [float(i) for i in range(15)]}),
            pa.table({"a": [float(i) for i in range(15, 25)]}),
        ]
    )
    outputs = pa.table({"prediction": [i % 2 for i in range(25)]})
    entries = [
        LogEntry("json", "m", 1, 0.0, 1.0, [{"a": 1.0}], [{"value": 1.0}]),
        LogEntry("arrow", "m", 1, 0.0, 1.0, inputs, outputs),
    ]

    tables = list(log_tables(entries, duckdb.connect(), slice_rows=10))

    assert [t.num_rows for t in tables] == [1, 10, 10, 5]
    whole = entries_to_table(entries, duckdb.connect())
    assert pa.concat_tables(tables).equals(whole)
    rows = whole.to_pylist()
    assert [r["row_index"] for r in rows[1:]] == list(range(25))
    assert json.loads(rows[-1]["input"]) == {"a": 24.0}
    assert json.loads(rows[-1]["output"]) == {"value": 0}
