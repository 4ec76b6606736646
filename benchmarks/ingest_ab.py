"""Compare the ingest of two revisions against raw DuckDB, alternating, with CPU time.

Each round runs a worker process per side, in turns (A B, then B A): this
working tree, and the ``appliance`` package of ``--base`` (a git revision,
extracted with ``git archive`` into a temporary folder that the worker
imports first). A worker ingests the flights CSV and runs raw DuckDB
``read_csv`` to Parquet right after each ingest, after one untimed pair,
and reports the wall time and the process CPU time (user plus system, all
threads) of both. The CPU ratio moves less than the wall ratio on a busy
machine, and the ratio of the fastest runs of each side shows the least
disturbed ones. Prints a summary; writes nothing to the docs.

Run: ``.venv/bin/python benchmarks/ingest_ab.py --base main --rounds 4``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CSV = ROOT / "benchmarks" / ".data" / "flights.csv"
KEYS = ("appliance", "raw", "appliance_cpu", "raw_cpu")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="git revision to compare")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="ingests per worker")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(CSV, args.repeats)))
        return 0
    if not CSV.exists():
        sys.exit(f"{CSV} is missing; run benchmarks/data_bench.py once to export it")
    base = Path(tempfile.mkdtemp(prefix="ingest-ab-"))
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.base, "appliance"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        sides = {args.base: str(base), "working tree": str(ROOT)}
        results = _alternate(sides, args.rounds, args.repeats)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for side, found in results.items():
        print(_summary(side, found))
    print(f"load average at the end: {os.getloadavg()}")
    return 0


def _alternate(sides: dict[str, str], rounds: int, repeats: int) -> dict[str, dict]:
    results: dict[str, dict] = {s: {**{k: [] for k in KEYS}, "load": []} for s in sides}
    for number in range(rounds):
        order = list(sides) if number % 2 == 0 else list(reversed(sides))
        for side in order:
            found = _run_worker(sides[side], repeats)
            for key in KEYS:
                results[side][key] += found[key]
            results[side]["load"].append(found["load"])
    return results


def _run_worker(package_root: str, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": package_root}
    # The working folder is not the repository, so PYTHONPATH decides which
    # appliance package the worker imports.
    done = subprocess.run(
        [sys.executable, str(Path(__file__)), "--worker", "--repeats", str(repeats)],
        env=env,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def _worker(csv: Path, repeats: int) -> dict:
    import duckdb

    from appliance.config import DatasetConfig
    from appliance.storage import Catalog, ingest

    work = Path(tempfile.mkdtemp(prefix="ingest-ab-worker-"))
    found: dict = {**{k: [] for k in KEYS}, "load": os.getloadavg()[0]}
    try:
        for run in range(repeats + 1):
            with Catalog(work / f"home{run}") as catalog:
                cpu, wall = _cpu(), time.perf_counter()
                ingest(
                    catalog, "flights", [csv], settings=DatasetConfig(name="flights")
                )
                ours = (time.perf_counter() - wall, _cpu() - cpu)
            db = duckdb.connect()
            cpu, wall = _cpu(), time.perf_counter()
            db.execute(
                f"COPY (SELECT * FROM read_csv('{csv}')) TO '{work}/raw{run}.parquet' "
                "(FORMAT parquet, COMPRESSION zstd)"
            )
            raw = (time.perf_counter() - wall, _cpu() - cpu)
            db.close()
            if run == 0:
                continue  # untimed first pair
            for key, value in zip(KEYS, (ours[0], raw[0], ours[1], raw[1])):
                found[key].append(value)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return found


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _summary(side: str, found: dict) -> str:
    median = statistics.median
    wall = [a / b for a, b in zip(found["appliance"], found["raw"])]
    cpu = [a / b for a, b in zip(found["appliance_cpu"], found["raw_cpu"])]
    return (
        f"{side}: {len(wall)} ingests, median {median(found['appliance']):.3f} s "
        f"against raw DuckDB {median(found['raw']):.3f} s, wall ratio "
        f"{median(wall):.2f}x; CPU {median(found['appliance_cpu']):.3f} s against "
        f"{median(found['raw_cpu']):.3f} s, CPU ratio {median(cpu):.2f}x; fastest "
        f"runs {min(found['appliance']):.3f} s against {min(found['raw']):.3f} s "
        f"({min(found['appliance']) / min(found['raw']):.2f}x); load "
        f"{min(found['load']):.1f} to {max(found['load']):.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
