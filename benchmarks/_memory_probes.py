"""In-process memory probes of `benchmarks/memory.py`, each run in a fresh process.

``components CONFIG``: enter the daemon's components (`appliance.daemon.
COMPONENTS`) one by one, as its lifespan does, and print what each adds to
the resident memory. The home of CONFIG must not be held by a daemon.

``duckdb ROWS MEMORY_MB``: insert ROWS distinct prediction-log-like rows into
a fresh DuckDB file in batches of 1,000, with ``memory_limit`` set to
MEMORY_MB (0 keeps DuckDB's default), and print the process's memory.

Both print one JSON document on stdout.
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


if __name__ == "__main__":
    if sys.argv[1] == "components":
        components(Path(sys.argv[2]))
    else:
        duckdb_inserts(int(sys.argv[2]), int(sys.argv[3]))
