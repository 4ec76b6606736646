"""Erasure of one tail number from synthetic flights, offline and in a daemon.

Two versions of flights (half the rows, then the other half appended) over
1,000 tail numbers, so one tail number has 1 row in 1,000. A logistic
regression on `distance` is trained and served. The script times
`appliance erase --dry-run` and `appliance erase` with no daemon, then starts
the daemon, sends single-row predictions one after another, and erases a
second tail number over HTTP meanwhile. It reports the erasure's time and
the request latency before and during it.

Run: .venv/bin/python benchmarks/erasure.py [--rows 1000000]
Writes the "Erasure" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _page import write_section  # noqa: E402
from support import start_daemon, stop_daemon  # noqa: E402

CONFIG = """
[storage]
home = "home"

[models.late]
dataset = "flights"
target = "late"
task = "classification"
algorithm = "logistic_regression"
features = ["distance"]
"""


def appliance(root: Path, *args: str) -> float:
    """Run ``appliance ARGS`` in `root`; return its wall time in seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "appliance", "--log-level", "WARNING"]
    started = time.perf_counter()
    subprocess.run(
        [*command, "--config", str(root / "config.toml"), *args],
        cwd=root,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def write_flights(path: Path, start: int, rows: int) -> Path:
    with path.open("w") as handle:
        handle.write("tailnum,distance,late\n")
        for i in range(start, start + rows):
            late = str(i % 3 == 0).lower()
            handle.write(f"N{i % 1000:04d}X,{100 + (i * 37) % 900},{late}\n")
    return path


def latencies(url: str, stop: threading.Event, count: int | None) -> list[float]:
    """Send single-row predictions until `stop` is set or `count` are sent."""
    found = []
    body = {"rows": [{"tailnum": "N0001X", "distance": 500}]}
    with httpx.Client(trust_env=False, timeout=30) as client:
        while not stop.is_set() and (count is None or len(found) < count):
            started = time.perf_counter()
            client.post(f"{url}/v1/models/late/predict", json=body).raise_for_status()
            found.append((time.perf_counter() - started) * 1000)
    return found


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure_daemon(root: Path) -> tuple[float, list[float], list[float]]:
    """Return the HTTP erasure's seconds and the latencies before and during it."""
    daemon = start_daemon(root / "config.toml", root / "home", root / "daemon.log")
    try:
        before = latencies(daemon.base_url, threading.Event(), 2000)
        stop = threading.Event()
        during: list[float] = []
        sender = threading.Thread(
            target=lambda: during.extend(latencies(daemon.base_url, stop, None))
        )
        sender.start()
        started = time.perf_counter()
        response = httpx.post(
            f"{daemon.base_url}/v1/admin/erase",
            json={"dataset": "flights", "keys": {"tailnum": "N0042X"}},
            timeout=600,
            trust_env=False,
        )
        seconds = time.perf_counter() - started
        stop.set()
        sender.join()
        response.raise_for_status()
    finally:
        stop_daemon(daemon)
    return seconds, before, during


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="erasure-bench-") as folder:
        root = Path(folder)
        (root / "config.toml").write_text(CONFIG)
        half = args.rows // 2
        appliance(
            root, "ingest", "flights", str(write_flights(root / "a.csv", 0, half))
        )
        second = write_flights(root / "b.csv", half, args.rows - half)
        appliance(root, "ingest", "flights", str(second), "--mode", "append")
        appliance(root, "train", "late")
        dry = appliance(
            root, "erase", "flights", "--where", "tailnum=N0007X", "--dry-run"
        )
        offline = appliance(root, "erase", "flights", "--where", "tailnum=N0007X")
        seconds, before, during = measure_daemon(root)
    rows = [
        ("before", before),
        ("during the erasure", during),
    ]
    table = "\n".join(
        f"| {name} | {len(values)} | {statistics.median(values):.2f} | "
        f"{percentile(values, 0.99):.2f} | {max(values):.2f} |"
        for name, values in rows
    )
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    write_section(
        "Erasure",
        f"""## Erasure

Written by `benchmarks/erasure.py` on {stamp}.
{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs,
shared with other work. {args.rows:,} flights in two versions (the second
appended), 1,000 tail numbers. Each erasure removes one tail number's
{args.rows // 1000:,} rows from both versions.

| run | seconds |
| --- | ---: |
| `appliance erase --dry-run`, no daemon (process start included) | {dry:.2f} |
| `appliance erase`, no daemon (with the catalog compaction) | {offline:.2f} |
| `POST /v1/admin/erase` to a serving daemon | {seconds:.2f} |

Single-row predictions sent one after another to the same daemon:

| requests | count | p50 ms | p99 ms | max ms |
| --- | ---: | ---: | ---: | ---: |
{table}
""",
    )


if __name__ == "__main__":
    main()
