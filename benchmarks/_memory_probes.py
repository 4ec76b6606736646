"""In-process memory probes of `benchmarks/memory.py`, each run in a fresh process.

``components CONFIG``: enter the daemon's components (`appliance.daemon.
COMPONENTS`) one by one, as its lifespan does, and print what each adds to
the resident memory. The home of CONFIG must not be held by a daemon.

``duckdb ROWS MEMORY_MB``: insert ROWS distinct prediction-log-like rows into
a fresh DuckDB file in batches of 1,000, with ``memory_limit`` set to
MEMORY_MB (0 keeps DuckDB's default), and print the process's memory.

``rollover ROWS MEMORY_MB``: fill a log table with ROWS rows of about 660
bytes, then copy the older half to Parquet in log order, as the prediction
log's roll-over does, and print the error DuckDB raised, if any.

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
    """Print whether a roll-over of half of `rows` log rows to Parquet succeeds.

    The statement is the shape of the prediction log's roll-over: the oldest
    rows, in log order, copied to one Parquet file.
    """
    import duckdb

    from appliance.memory import limit_duckdb

    with tempfile.TemporaryDirectory(prefix="memory-probe-") as folder:
        db = duckdb.connect(str(Path(folder) / "probe.duckdb"))
        limit_duckdb(db, memory_mb)
        db.execute(
            "CREATE TABLE predictions (log_id BIGINT, request_id VARCHAR, "
            "input VARCHAR)"
        )
        for start in range(0, rows, 10_000):
            db.execute(
                "INSERT INTO predictions SELECT i, md5(i::VARCHAR), "
                "repeat(md5(i::VARCHAR), 20) FROM range(?, ?) AS t(i)",
                [start, min(start + 10_000, rows)],
            )
        target = str(Path(folder) / "rolled.parquet").replace("'", "''")
        started = time.perf_counter()
        try:
            db.execute(
                f"COPY (SELECT * FROM predictions WHERE log_id < {rows // 2} "
                f"ORDER BY log_id) TO '{target}' (FORMAT parquet)"
            )
            error = None
        except duckdb.OutOfMemoryException as exc:
            error = str(exc).splitlines()[0]
        seconds = time.perf_counter() - started
        print(json.dumps({"error": error, "seconds": seconds}))
        db.close()


if __name__ == "__main__":
    if sys.argv[1] == "components":
        components(Path(sys.argv[2]))
    elif sys.argv[1] == "rollover":
        rollover(int(sys.argv[2]), int(sys.argv[3]))
    else:
        duckdb_inserts(int(sys.argv[2]), int(sys.argv[3]))
