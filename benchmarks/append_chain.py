"""Time one-row flushes of the ingest buffer as the append chain grows.

Each flush of the HTTP ingest buffer makes an ``append`` version that reads
its own file and its ancestors' files. The script makes `--flushes` one-row
flushes into a fresh home. It prints the wall time and the CPU time of this
process (DuckDB's threads included) per flush at the chain lengths given in
`--at`, as medians over the `--window` flushes starting there. On a shared
machine the CPU time varies less with the other load than the wall time.

Run: ``python benchmarks/append_chain.py /tmp/bench-home --flushes 310``.
The code under test must accept the dataset settings in `CONFIG`, so
``--compact-after`` needs a version with compaction.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

import duckdb

from appliance.config import load_config
from appliance.storage import IngestBuffer

CONFIG = """
[storage]
home = "home"

[ingest]
flush_rows = 100000
flush_seconds = 3600

[datasets.events]
keep_versions = {keep}
{compact}

[datasets.events.contract.columns.value]
type = "DOUBLE"
min = 0
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="scratch folder, emptied first")
    parser.add_argument(
        "--flushes", type=int, default=310, help="number of one-row flushes"
    )
    parser.add_argument(
        "--at",
        type=int,
        nargs="+",
        default=[1, 100, 300],
        help="chain lengths at which to print the times",
    )
    parser.add_argument(
        "--window", type=int, default=10, help="flushes per printed median"
    )
    parser.add_argument(
        "--keep", type=int, default=2, help="keep_versions of the dataset"
    )
    parser.add_argument(
        "--compact-after",
        type=int,
        help="set compact_after, which compacts the chain after a flush once "
        "the latest version reads more than this many version folders",
    )
    args = parser.parse_args()

    shutil.rmtree(args.folder, ignore_errors=True)
    args.folder.mkdir(parents=True)
    compact = f"compact_after = {args.compact_after}" if args.compact_after else ""
    config = CONFIG.format(keep=args.keep, compact=compact)
    (args.folder / "config.toml").write_text(config)

    seconds, cpu_seconds = _time_flushes(args.folder, args.flushes)

    print(
        f"python {platform.python_version()} duckdb {duckdb.__version__} "
        f"cpus {os.cpu_count()} load {os.getloadavg()[0]:.2f}"
    )
    for length in args.at:
        window = seconds[length - 1 : length - 1 + args.window]
        cpu = cpu_seconds[length - 1 : length - 1 + args.window]
        print(
            f"chain length {length}-{length + len(window) - 1}: wall median "
            f"{statistics.median(window) * 1000:.0f} ms, mean "
            f"{statistics.mean(window) * 1000:.0f} ms; CPU median "
            f"{statistics.median(cpu) * 1000:.0f} ms per flush"
        )


def _time_flushes(folder: Path, flushes: int) -> tuple[list[float], list[float]]:
    """Return the wall and CPU seconds of each of `flushes` one-row flushes."""
    buffer = IngestBuffer(load_config(folder / "config.toml"))
    seconds, cpu_seconds = [], []
    for index in range(flushes):
        buffer.append("events", [{"id": index, "value": index * 0.5, "tag": "a"}])
        start, cpu_start = time.perf_counter(), time.process_time()
        buffer.flush("events")
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    return seconds, cpu_seconds


if __name__ == "__main__":
    main()
