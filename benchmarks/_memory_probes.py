"""In-process memory probes of `benchmarks/memory.py`, each run in a fresh process.

``components CONFIG``: enter the daemon's components (`appliance.daemon.
COMPONENTS`) one by one, as its lifespan does, and print what each adds to
the resident memory. The home of CONFIG must not be held by a daemon.

``duckdb ROWS MEMORY_MB``: insert ROWS distinct prediction-log-like rows into
a fresh DuckDB file in batches of 1,000, with ``memory_limit`` set to
MEMORY_MB (0 keeps DuckDB's default), and print the process's memory.

``rollover ROWS MEMORY_MB``: fill the prediction log's table with ROWS rows
whose inputs are 672 bytes, run its `roll_over` down to ROWS / 2 rows (which
moves three quarters of them to Parquet), and print the error DuckDB raised,
if any, and the process's peak memory.

Each prints one JSON document on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

from appliance.memory import process_memory


def _memory() -> dict[str, float]:
    memory = process_memory()
    return {key: memory[key] for key in ("VmRSS", "RssAnon", "RssFile")}


async def _enter_components(config_path: Path) -> list[list[object]]:
    from appliance import daemon
    from appliance.config import load_config
    from appliance.serving import DaemonState, ServingMetrics

    config = load_config(config_path)
    state = DaemonState(
        config=config, metrics=ServingMetrics(), host="127.0.0.1", port=0
    )
    rows: list[list[object]] = [["imports", *_memory().values()]]
    async with AsyncExitStack() as stack:
        before = _memory()
        for component in daemon.COMPONENTS:
            await stack.enter_async_context(component(state))
            # Threads started by a component allocate their first memory now.
            await asyncio.sleep(0.3)
            after = _memory()
            rows.append([component.__name__, *(after[k] - before[k] for k in after)])
            before = after
    return rows


def components(config_path: Path) -> None:
    """Print [component, +RSS, +anonymous, +file-backed MB] per component."""
    from appliance.serving import skip_pyarrow_pandas_probe

    skip_pyarrow_pandas_probe()
    print(json.dumps(asyncio.run(_enter_components(config_path))))


def _input_row(index: int) -> str:
    """Return a JSON request row of 20 numeric inputs, about 670 bytes, unique."""
    return json.dumps({f"feature_{k}": index * 1.000001 + k for k in range(20)})


def duckdb_inserts(rows: int, memory_mb: int) -> None:
    """Print the process's memory before and after `rows` distinct inserts."""
    import duckdb
    import pyarrow as pa

    from appliance.memory import limit_duckdb

    with tempfile.TemporaryDirectory(prefix="memory-probe-") as folder:
        db = duckdb.connect(str(Path(folder) / "probe.duckdb"))
        limit_duckdb(db, memory_mb)
        db.execute(
            "CREATE TABLE predictions (request_id VARCHAR, input VARCHAR, "
            "output VARCHAR, latency_ms DOUBLE)"
        )
        before = _memory()
        started = time.perf_counter()
        for batch in range(rows // 1000):
            ids = range(batch * 1000, (batch + 1) * 1000)
            table = pa.table(
                {
                    "request_id": [f"{i:032x}" for i in ids],
                    "input": [_input_row(i) for i in ids],
                    "output": [json.dumps({"probabilities": [i / rows]}) for i in ids],
                    "latency_ms": [1.0] * 1000,
                }
            )
            cursor = db.cursor()
            cursor.register("batch", table)
            cursor.execute("INSERT INTO predictions SELECT * FROM batch")
            cursor.close()
        seconds = time.perf_counter() - started
        print(json.dumps({"before": before, "after": _memory(), "seconds": seconds}))
        db.close()


def rollover(rows: int, memory_mb: int) -> None:
    """Print whether the prediction log's roll-over of `rows` rows succeeds."""
    import duckdb

    from appliance.memory import limit_duckdb
    from appliance.predictions._store import create_table, roll_over

    with tempfile.TemporaryDirectory(prefix="memory-probe-") as folder:
        home = Path(folder)
        db = duckdb.connect(str(home / "catalog.duckdb"))
        limit_duckdb(db, memory_mb)
        create_table(db)
        for start in range(0, rows, 25_000):
            db.execute(
                "INSERT INTO predictions (request_id, row_index, model, version, "
                "predicted_at, input, output, latency_ms) "
                "SELECT md5(i::VARCHAR), 0, 'demo', 1, "
                "TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_microseconds(i), "
                "repeat(md5(i::VARCHAR), 21), '{\"prediction\": 1}', 1.0 "
                "FROM range(?, ?) AS t(i)",
                [start, min(rows, start + 25_000)],
            ).fetchall()
        before = _memory()
        started = time.perf_counter()
        try:
            roll_over(db, home, keep_rows=rows // 2)
            error = None
        except duckdb.OutOfMemoryException as exc:
            error = str(exc).splitlines()[0]
        seconds = time.perf_counter() - started
        peak = process_memory().get("VmHWM", 0.0)
        print(
            json.dumps(
                {"error": error, "seconds": seconds, "before": before, "peak": peak}
            )
        )
        db.close()


if __name__ == "__main__":
    if sys.argv[1] == "components":
        components(Path(sys.argv[2]))
    elif sys.argv[1] == "rollover":
        rollover(int(sys.argv[2]), int(sys.argv[3]))
    else:
        duckdb_inserts(int(sys.argv[2]), int(sys.argv[3]))
