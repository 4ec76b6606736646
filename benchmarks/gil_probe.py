"""How long a DuckDB call in one thread holds up another Python thread.

A writer thread inserts an Arrow table of ROWS prediction-log-like rows into
a DuckDB file every 50 ms, as the prediction log writer does. Meanwhile the
main thread sleeps 0.2 ms at a time for 8 s and records each gap between its
wake-ups. Gaps above 1 ms are waits for the GIL or the CPU. Modes of the
writer:

- ``idle``: no DuckDB call, the machine's own noise;
- ``noop``: ``SELECT 1``;
- ``scan``: the log's insert, ``INSERT ... SELECT * FROM`` the Arrow table;
- ``relation``: ``from_arrow(table).insert_into``;
- ``register``: register the table as a view, insert from it, unregister;
- ``literal``: insert one row of literals, with no Python data;
- ``temp``: insert ROWS integers from ``range`` into a temporary table;
- ``parquet``: write the Arrow table to a Parquet file with pyarrow;
- ``ipc``: append the Arrow table to an open Arrow IPC stream file;
- ``process``: send the table as Arrow IPC bytes through a pipe to a child
  process, which inserts it into its own DuckDB file. Under ``taskset`` the
  child shares the core.

With ``--background`` the writer thread runs at nice 19 and DuckDB uses one
thread, so that only the GIL, not the CPU, can hold up the main thread (on
Linux, under ``taskset -c 0`` to put both threads on one core).

Run: .venv/bin/python benchmarks/gil_probe.py [--background] [ROWS] [MODE...]
Prints one line per mode; it writes only temporary files.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

SECONDS = 8.0
TICK_SECONDS = 0.0002
WRITE_EVERY_SECONDS = 0.05
BACKGROUND = False
"""Whether the writer runs at nice 19 on one DuckDB thread (``--background``)."""


LOG_TABLE = "CREATE TABLE log (request_id VARCHAR, input VARCHAR, score DOUBLE)"


def probe(rows: int, mode: str) -> str:
    """Run the writer in `mode` beside the ticker and describe the gaps."""
    folder = tempfile.mkdtemp()
    db = duckdb.connect(os.path.join(folder, "probe.duckdb"))
    db.execute(LOG_TABLE)
    table = pa.table(
        {
            "request_id": ["r" * 32] * rows,
            "input": ['{"temp": 59.0, "origin": "EWR"}' * 20] * rows,
            "score": [0.25] * rows,
        }
    )
    stop = threading.Event()
    calls: list[float] = []
    sinks = _Sinks(folder, table.schema, mode)
    writer = threading.Thread(target=_write, args=(db, table, mode, stop, calls, sinks))
    writer.start()
    gaps = _tick(SECONDS)
    stop.set()
    writer.join()
    sinks.close()
    db.close()
    gaps.sort()
    long = sum(gap > 0.001 for gap in gaps)
    return (
        f"{mode}: {len(calls)} calls of median {statistics.median(calls) * 1e3:.2f} "
        f"ms; gaps p99 {gaps[int(len(gaps) * 0.99)] * 1e3:.3f} ms, p99.9 "
        f"{gaps[int(len(gaps) * 0.999)] * 1e3:.3f} ms, max {gaps[-1] * 1e3:.2f} "
        f"ms, {long} above 1 ms"
    )


class _Sinks:
    """The IPC stream file and the child process of the modes that use them."""

    def __init__(self, folder: str, schema: pa.Schema, mode: str) -> None:
        self.folder = folder
        self.stream = None
        self.pipe: Connection | None = None
        self.child = None
        if mode == "ipc":
            path = os.path.join(folder, "log.arrow")
            self.stream = pa.ipc.new_stream(pa.OSFile(path, "wb"), schema)
        elif mode == "process":
            context = multiprocessing.get_context("spawn")
            self.pipe, end = context.Pipe()
            self.child = context.Process(target=_insert_sent, args=(end, folder))
            self.child.start()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        if self.pipe is not None and self.child is not None:
            self.pipe.send_bytes(b"")
            self.child.join()


def _insert_sent(pipe: Connection, folder: str) -> None:
    """Insert each Arrow IPC stream sent through `pipe` until an empty one."""
    db = duckdb.connect(os.path.join(folder, "child.duckdb"))
    db.execute(LOG_TABLE)
    while data := pipe.recv_bytes():
        log_rows = pa.ipc.open_stream(data).read_all()  # noqa: F841
        db.execute("INSERT INTO log SELECT * FROM log_rows").fetchall()
    db.close()


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _write(
    db: duckdb.DuckDBPyConnection,
    table: pa.Table,
    mode: str,
    stop: threading.Event,
    calls: list[float],
    sinks: _Sinks,
) -> None:
    cursor = db.cursor()
    cursor.execute("CREATE TEMP TABLE numbers (i BIGINT)")
    if BACKGROUND:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        cursor.execute("SET threads = 1")
    while not stop.is_set():
        started = time.perf_counter()
        if mode == "noop":
            cursor.execute("SELECT 1").fetchall()
        elif mode == "scan":
            log_rows = table  # noqa: F841 (found by DuckDB's replacement scan)
            cursor.execute("INSERT INTO log SELECT * FROM log_rows").fetchall()
        elif mode == "literal":
            cursor.execute("INSERT INTO log VALUES ('r', '{}', 0.25)").fetchall()
        elif mode == "temp":
            cursor.execute(f"INSERT INTO numbers SELECT * FROM range({len(table)})")
        elif mode == "relation":
            cursor.from_arrow(table).insert_into("log")
        elif mode == "parquet":
            pq.write_table(table, os.path.join(sinks.folder, "log.parquet"))
        elif mode == "ipc":
            sinks.stream.write_table(table)
        elif mode == "process":
            sinks.pipe.send_bytes(_ipc_bytes(table))
        elif mode == "register":
            cursor.register("log_view", table)
            cursor.execute("INSERT INTO log SELECT * FROM log_view").fetchall()
            cursor.unregister("log_view")
        calls.append(time.perf_counter() - started)
        time.sleep(WRITE_EVERY_SECONDS)
    cursor.close()


def _tick(seconds: float) -> list[float]:
    gaps = []
    last = time.perf_counter()
    end = last + seconds
    while last < end:
        time.sleep(TICK_SECONDS)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    return gaps


def main() -> int:
    global BACKGROUND
    args = sys.argv[1:]
    BACKGROUND = "--background" in args
    args = [a for a in args if a != "--background"]
    rows = int(args[0]) if args else 270
    modes = args[1:] or ["idle", "noop", "scan", "relation", "register"]
    print(f"rows {rows}, DuckDB {duckdb.__version__}")
    for mode in modes:
        print(probe(rows, mode), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
