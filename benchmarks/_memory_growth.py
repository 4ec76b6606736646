"""Growth of the serving daemon's memory under load: Python, DuckDB, Arrow.

Starts the daemon of `benchmarks/memory.py` (same home, config and request
rows) through this file, which adds a SIGUSR1 handler to the daemon. The
handler runs ``malloc_trim``, then writes pymalloc's arena total, the bytes
of Arrow's default memory pool and DuckDB's ``duckdb_memory()`` of the
catalog to a JSON file. The driver reads those and ``/proc/PID/smaps`` after
start and after each round of load, so the rounds show whether memory keeps
growing or stops.

Run: .venv/bin/python benchmarks/_memory_growth.py [--rounds 4] [--requests 30000]
Prints one JSON line per reading; nothing is written to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

_STATS_ENV = "APPLIANCE_GROWTH_STATS"


def _install_stats_handler() -> None:
    """Make SIGUSR1 write the daemon's allocator and DuckDB figures to a file."""
    import pyarrow as pa

    from appliance.memory import trim_malloc
    from appliance.storage import _catalog

    catalogs: list[object] = []
    original_init = _catalog.Catalog.__init__

    def recording_init(self: object, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)  # type: ignore[arg-type]
        catalogs.append(self)

    _catalog.Catalog.__init__ = recording_init  # type: ignore[method-assign]

    def write_stats(signum: int, frame: object) -> None:
        trim_malloc()
        path = Path(os.environ[_STATS_ENV])
        partial = path.with_suffix(".tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        saved = os.dup(2)
        os.dup2(fd, 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(fd)
        totals = re.findall(r"^Total\s+=\s+([\d,]+)", partial.read_text(), re.MULTILINE)
        pool = pa.default_memory_pool()
        stats: dict[str, object] = {
            "pymalloc_mb": round(int(totals[0].replace(",", "")) / 2**20, 1),
            "arrow_mb": round(pool.bytes_allocated() / 2**20, 1),
            "arrow_peak_mb": round(pool.max_memory() / 2**20, 1),
        }
        if catalogs:
            cursor = catalogs[0].db.cursor()  # type: ignore[attr-defined]
            rows = cursor.execute(
                "SELECT tag, memory_usage_bytes FROM duckdb_memory() "
                "WHERE memory_usage_bytes > 0"
            ).fetchall()
            cursor.close()
            stats["duckdb_mb"] = {tag: round(size / 2**20, 1) for tag, size in rows}
        partial.write_text(json.dumps(stats))
        partial.replace(path)

    signal.signal(signal.SIGUSR1, write_stats)


def _run_daemon(config: str) -> int:
    _install_stats_handler()
    from appliance.cli import main

    return main(["--config", config, "serve"])


def _read_stats(pid: int, path: Path) -> dict[str, object]:
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 30
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(
                f"the daemon wrote no stats to {path} within 30 s; see "
                f"{path.parent / 'appliance-growth.log'}"
            )
        time.sleep(0.1)
    return json.loads(path.read_text())


def _drive(rounds: int, requests: int) -> None:
    import memory
    import serving
    from _http_load import post_many

    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, os.sched_getaffinity(0) - {0})
    serving.prepare_model()
    full = json.dumps({"rows": [serving.filled_row()]}).encode()
    keys = json.dumps({"rows": [serving.ROW]}).encode()
    port = serving.free_port()
    config = memory.write_variant_config(port, {})
    stats_path = serving.WORK / f"growth-{port}.json"
    server = serving.Server(
        "appliance-growth",
        [sys.executable, __file__, "--daemon", str(config)],
        "",
        "",
        f"http://127.0.0.1:{port}/health/ready",
        env={"APPLIANCE_HOME": str(serving.HOME), _STATS_ENV: str(stats_path)},
    )
    path = f"/v1/models/{serving.MODEL}/predict"
    server.start()
    try:
        assert server.process is not None
        pid = server.process.pid
        time.sleep(1.0)
        readings = [("start", None)]
        readings += [(f"round {n + 1}", n) for n in range(rounds)]
        for label, round_index in readings:
            rates = None
            if round_index is not None:
                full_rps, _ = post_many("127.0.0.1", port, path, full, requests, 8)
                keys_rps, _ = post_many(
                    "127.0.0.1", port, path, keys, max(requests // 10, 1), 8
                )
                rates = [round(full_rps), round(keys_rps)]
                time.sleep(2.0)
            stats = _read_stats(pid, stats_path)
            smaps = memory.read_memory(pid)
            line = {
                "reading": label,
                "req/s": rates,
                "rss_mb": round(smaps["rss"], 1),
                "anonymous_mb": round(smaps["anonymous"], 1),
                **stats,
            }
            print(json.dumps(line), flush=True)
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=30000)
    parser.add_argument("--daemon", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.daemon:
        return _run_daemon(args.daemon)
    _drive(args.rounds, args.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
