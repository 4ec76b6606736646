"""Peer side of the data benchmarks, run by the pandas venv's Python.

Usage: python _pandas_peer.py ingest CSV OUT REPEATS [DATE_COLUMN]
       python _pandas_peer.py asof FLIGHTS WEATHER OUT REPEATS TTL_HOURS

Prints one JSON object with the seconds of each repetition; only the
operation is timed, not the interpreter start or imports. One untimed run
goes first, so lazy imports and first-touch allocations are not timed.
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd


def ingest(csv: str, out: str, repeats: int, dates: list[str]) -> list[float]:
    """Time ``read_csv`` plus ``to_parquet``; `dates` are parsed as timestamps."""
    seconds = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        frame = pd.read_csv(csv, parse_dates=dates or None)
        frame.to_parquet(out, compression="zstd", index=False)
        seconds.append(time.perf_counter() - started)
    return seconds[1:]


def asof(
    flights: str, weather: str, out: str, repeats: int, ttl_hours: int
) -> list[float]:
    left = pd.read_parquet(flights)
    right = pd.read_parquet(weather)
    seconds = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        joined = pd.merge_asof(
            left.sort_values("time_hour"),
            right.sort_values("time_hour"),
            on="time_hour",
            by="origin",
            direction="backward",
            tolerance=pd.Timedelta(hours=ttl_hours),
        )
        seconds.append(time.perf_counter() - started)
    joined.to_parquet(out, index=False)
    return seconds[1:]


def main() -> None:
    command, *args = sys.argv[1:]
    if command == "ingest":
        seconds = ingest(args[0], args[1], int(args[2]), args[3:])
    else:
        seconds = asof(args[0], args[1], args[2], int(args[3]), int(args[4]))
    print(json.dumps({"seconds": seconds, "pandas": pd.__version__}))


if __name__ == "__main__":
    main()
