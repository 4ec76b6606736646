"""Prediction journal micro-benchmark: cost per request of the write-ahead
journal and of request ids, in process.

Run from the repository with the project venv: .venv/bin/python benchmarks/journal.py
Options: --repeats N (default 200), --entries N (calls per repeat, default 500).
Writes the "Prediction journal" section of docs/benchmarks.md. Candidates run
one after the other inside each short repeat, so load changes hit them alike;
the table gives the median and the minimum over the repeats.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import platform
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import msgspec
import pyarrow as pa
from _page import write_section

from appliance.predictions import LogEntry
from appliance.predictions._journal import Journal, encode_entry
from appliance.serving._ids import new_request_id

SECTION = "Prediction journal"
INPUT_ROW = {
    "sched_dep_time": 1530,
    "sched_arr_time": 1815,
    "hour": 15,
    "minute": 30,
    "distance": 1065.0,
    "carrier": "UA",
    "origin": "EWR",
    "dest": "ORD",
    "tailnum": "N14228",
    "time_hour": "2013-04-01T15:00:00+00:00",
    "temp": 51.08,
    "dewp": 28.04,
    "humid": 40.99,
    "wind_dir": 300.0,
    "wind_speed": 17.26,
    "precip": 0.0,
    "visib": 10.0,
    "plane_age": 13.0,
    "seats": 191,
}
"""A flights request row with its weather and plane features, as logged."""
OUTPUT_ROW = {"prediction": 0, "probability_0": 0.8123, "probability_1": 0.1877}


def single_row_entry() -> LogEntry:
    """Return the log entry of one single-row JSON request."""
    return LogEntry(
        new_request_id(),
        "flights_late",
        3,
        time.time(),
        0.61,
        [INPUT_ROW],
        [OUTPUT_ROW],
    )


def arrow_entry(rows: int) -> LogEntry:
    """Return the log entry of one Arrow request of `rows` rows."""
    inputs = pa.Table.from_pylist([INPUT_ROW] * rows)
    outputs = pa.Table.from_pylist([OUTPUT_ROW] * rows)
    return LogEntry(
        new_request_id(), "flights_late", 3, time.time(), 5.0, inputs, outputs
    )


_json = msgspec.json.Encoder().encode
_msgpack = msgspec.msgpack.Encoder().encode


def encode_json(entry: LogEntry) -> bytes:
    """Encode an entry as msgspec JSON, the alternative to MessagePack."""
    head = (entry.request_id, entry.model, entry.version, entry.predicted_at)
    return _json((*head, entry.latency_ms, entry.inputs, entry.outputs))


def encode_msgpack(entry: LogEntry) -> bytes:
    """Encode an entry as the MessagePack payload of a journal record."""
    head = (entry.request_id, entry.model, entry.version, entry.predicted_at)
    return _msgpack((*head, entry.latency_ms, entry.inputs, entry.outputs))


def encode_arrow_ipc(entry: LogEntry) -> bytes:
    """Encode an entry as one Arrow IPC stream of a one-row-per-entry table."""
    table = pa.table(
        {
            "request_id": [entry.request_id],
            "model": [entry.model],
            "version": [entry.version],
            "predicted_at": [entry.predicted_at],
            "latency_ms": [entry.latency_ms],
            "inputs": [entry.inputs],
            "outputs": [entry.outputs],
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def per_call_us(function: Callable[[], object], calls: int) -> float:
    """Return the mean time of one call of `function` in microseconds."""
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls * 1e6


def measure(repeats: int, entries: int, folder: Path) -> dict[str, list[float]]:
    """Run every candidate once per repeat; return its times in microseconds."""
    single = single_row_entry()
    arrow = arrow_entry(100)
    prefix = os.urandom(8).hex()
    counter = itertools.count()
    candidates: dict[str, tuple[Callable[[], object], int]] = {
        "payload, MessagePack (journal)": (lambda: encode_msgpack(single), 1),
        "payload, msgspec JSON": (lambda: encode_json(single), 1),
        "payload, Arrow IPC stream": (lambda: encode_arrow_ipc(single), 20),
        "record, `encode_entry` (payload, CRC-32, header)": (
            lambda: encode_entry(single),
            1,
        ),
        "record, 100-row Arrow request": (lambda: encode_entry(arrow), 20),
        "id, os.urandom block (new)": (new_request_id, 1),
        "id, prefix and counter (old)": (
            lambda: f"{prefix}{next(counter) & 0xFFFFFFFFFFFFFFFF:016x}",
            1,
        ),
        "id, uuid.uuid4().hex": (lambda: uuid.uuid4().hex, 1),
        "id, secrets.token_hex(16)": (lambda: secrets.token_hex(16), 1),
    }
    times: dict[str, list[float]] = {name: [] for name in candidates}
    times["Journal.write, single-row request"] = []
    for _ in range(repeats):
        for name, (function, divisor) in candidates.items():
            times[name].append(per_call_us(function, entries // divisor))
        journal = Journal(folder, fsync_seconds=0.0)
        times["Journal.write, single-row request"].append(
            per_call_us(functools.partial(journal.write, single), entries)
        )
        journal.close(remove=True)
    return times


def report(times: dict[str, list[float]], args: argparse.Namespace) -> str:
    """Return the Markdown section of one run."""
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("msgspec", "pyarrow")
    )
    machine = (
        f"- {platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; {versions}"
    )
    method = (
        f"- {args.repeats} repeats of {args.entries} calls each (a 20th of that "
        "for the Arrow rows), candidates alternating inside each repeat. Load average "
        f"{args.load_average:.2f} at the start (the machine is shared, so the "
        "numbers are noisy)."
    )
    entry = (
        "- The entry is one single-row flights request (19 input columns, 3 "
        "outputs) unless stated. The journal folder is on the disk of "
        f"`{args.folder_root}`, with no fsync."
    )
    lines = [f"## {SECTION}", "", "Written by `benchmarks/journal.py`.", ""]
    lines += [machine, method, entry, ""]
    lines += [
        "| step | µs per call, median | min |",
        "| --- | ---: | ---: |",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.2f} | {min(values):.2f} |")
    lines.append("")
    lines.append(
        "`Journal.write` is what `PredictionLog.append` adds per queued request: "
        "the MessagePack encoding, its CRC-32 and one `os.write`."
    )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--entries", type=int, default=500)
    args = parser.parse_args()
    args.load_average = os.getloadavg()[0]
    root = Path(__file__).resolve().parent / ".work"
    root.mkdir(exist_ok=True)
    args.folder_root = "benchmarks/.work"
    with tempfile.TemporaryDirectory(dir=root) as folder:
        times = measure(args.repeats, args.entries, Path(folder))
    for name, values in times.items():
        print(f"{name}: {statistics.median(values):.2f} us")
    write_section(SECTION, report(times, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
