"""Time the flights ingest with ``tailnum`` sensitive against without, alternating.

Each round ingests the 336,776-row flights CSV into a new home twice, once
with ``sensitive = ["tailnum"]`` and once without, in turns (plain then
encrypted, then the other way), after one untimed pair. It reports the
median wall and process CPU time (user plus system, all threads) of each
side and their ratio, the median of the per-round ratios, and the time of
the ``tailnum`` column's encryption alone, measured on the staged column.
Prints a summary; writes nothing to the docs.

Run: ``.venv/bin/python benchmarks/encrypt_ingest.py --rounds 8``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CSV = ROOT / "benchmarks" / ".data" / "flights.csv"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    if not CSV.exists():
        sys.exit(f"{CSV} is missing; run benchmarks/data_bench.py once to export it")
    sys.path.insert(0, str(ROOT))
    from appliance.config import DatasetConfig
    from appliance.crypto import ColumnCipher

    cipher = ColumnCipher(os.urandom(64), Path("benchmark.key"))
    sides = {
        "plain": DatasetConfig(name="flights"),
        "encrypted": DatasetConfig(name="flights", sensitive=("tailnum",)),
    }
    work = Path(tempfile.mkdtemp(prefix="encrypt-ingest-"))
    found: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
    try:
        for number in range(args.rounds + 1):
            order = list(sides) if number % 2 == 0 else list(reversed(sides))
            for side in order:
                home = work / f"{side}{number}"
                timed = _ingest(home, sides[side], cipher)
                shutil.rmtree(home, ignore_errors=True)
                if number:
                    found[side].append(timed)
        column = _column_seconds(cipher)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _print_summary(found, column)
    return 0


def _ingest(home: Path, settings, cipher) -> tuple[float, float]:
    from appliance.storage import Catalog, ingest

    with Catalog(home) as catalog:
        cpu, wall = _cpu(), time.perf_counter()
        ingest(catalog, "flights", [CSV], settings=settings, cipher=cipher)
        return time.perf_counter() - wall, _cpu() - cpu


def _column_seconds(cipher) -> tuple[float, int, int]:
    """Return the time to encrypt the tailnum column, its rows and distinct values."""
    import duckdb

    table = duckdb.sql(f"SELECT tailnum FROM read_csv('{CSV}')").to_arrow_table()
    column = table.column("tailnum")
    fresh = type(cipher)(os.urandom(64), Path("column.key"))
    started = time.perf_counter()
    fresh.encrypt_array(column)
    seconds = time.perf_counter() - started
    return seconds, len(column), len(column.unique())


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _print_summary(found: dict, column: tuple[float, int, int]) -> None:
    median = statistics.median
    for side, runs in found.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(
            f"{side}: {len(runs)} ingests, median {median(walls):.3f} s "
            f"(min {min(walls):.3f}, max {max(walls):.3f}), CPU {median(cpus):.3f} s"
        )
    plain, encrypted = found["plain"], found["encrypted"]
    wall = [e[0] / p[0] for p, e in zip(plain, encrypted)]
    cpu = [e[1] / p[1] for p, e in zip(plain, encrypted)]
    print(
        f"encrypted / plain: wall ratio of medians "
        f"{median(e for e, _ in encrypted) / median(p for p, _ in plain):.2f}x, "
        f"median of round ratios {median(wall):.2f}x, CPU {median(cpu):.2f}x"
    )
    seconds, rows, distinct = column
    print(
        f"tailnum column alone: {rows} rows, {distinct} distinct values, "
        f"encrypted in {seconds:.3f} s"
    )
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    sys.exit(main())
