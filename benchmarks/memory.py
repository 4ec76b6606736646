"""Memory benchmark: resident memory of the serving daemon after start and load.

Serves the flights_late model of `benchmarks/serving.py` (same home, same
request rows) and prints, for each run:

- start to ready and VmRSS, anonymous and file-backed memory after start;
- the same after a fixed number of single-row requests (full rows, then
  keys-only rows that join the feature views), so a faster daemon is not
  charged for receiving more requests, and again once the daemon's periodic
  ``malloc_trim`` has run after the load;
- the largest mappings of ``/proc/PID/smaps`` (shared libraries, heaps).

Three configurations run in alternating order: this version's defaults
(``catalog_memory_mb = 0``), the defaults with a 64 MB catalog limit
(``catalog_memory_mb = 64``), and the settings before the memory limits
(``recent_rows = 200000``, ``catalog_memory_mb = 0``, ``malloc_arenas = 0``,
``malloc_trim_seconds = 0``).
It also measures, each in a fresh process, what each import of the daemon
adds, what each of the daemon's components adds as the lifespan enters it,
the memory of inserting distinct prediction-log-like rows into DuckDB
with and without a ``memory_limit``, and the prediction log's roll-over under
several limits (`benchmarks/_memory_probes.py`).

Run: .venv/bin/python benchmarks/memory.py [--requests 30000] [--repeats 2]
Writes the "Memory" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import serving
from _http_load import post_many
from _page import PAGE, write_section

SECTION = "Memory"
VARIANTS = {
    "defaults": {},
    "catalog limit 64 MB": {"server": {"catalog_memory_mb": 64}},
    "before the limits": {
        "server": {
            "catalog_memory_mb": 0,
            "malloc_arenas": 0,
            "malloc_trim_seconds": 0,
        },
        "monitoring": {"recent_rows": 200000},
    },
}
"""Settings per configuration, added to the tables of the benchmark config."""
IMPORTS = [
    "numpy",
    "pyarrow",
    "duckdb",
    "onnxruntime",
    "msgspec",
    "litestar",
    "uvicorn",
    "prometheus_client",
    "apscheduler",
    "river._river_rust",
    "appliance.serving",
    "appliance.daemon",
    "appliance.monitoring",
    "appliance.retraining",
]
"""Modules in the order the daemon imports them."""
_IMPORT_PROBE = """
import json, re, sys, time
def status():
    text = open("/proc/self/status").read()
    return {k: int(v) / 1024 for k, v in re.findall(r"^(VmRSS|RssAnon|RssFile):\\s+(\\d+)", text, re.M)}
rows, before = [], status()
rows.append(["python", before["VmRSS"], before["RssAnon"], before["RssFile"], 0.0])
for name in sys.argv[1:]:
    started = time.perf_counter()
    __import__(name)
    seconds = time.perf_counter() - started
    after = status()
    rows.append([name, after["VmRSS"] - before["VmRSS"], after["RssAnon"] - before["RssAnon"],
                 after["RssFile"] - before["RssFile"], seconds])
    before = after
print(json.dumps(rows))
"""


def write_variant_config(port: int, settings: dict[str, dict[str, object]]) -> Path:
    """Write the serving benchmark's config with `settings` added to its tables."""
    text = serving.write_config(port).read_text()
    for table, values in settings.items():
        for key, value in values.items():
            # Every key set here is unique to its table in config.toml.
            text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
            if count == 0:
                text, count = re.subn(
                    rf"(?m)^\[{table}\]$", f"[{table}]\n{key} = {value}", text
                )
            assert count == 1, f"{key} of [{table}] not set in the benchmark config"
    path = serving.WORK / f"memory-{port}.toml"
    path.write_text(text)
    return path


def read_memory(pid: int) -> dict[str, object]:
    """Return smaps_rollup totals and the resident MB of the largest mappings."""
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    totals = {
        key: int(kb) / 1024
        for key, kb in re.findall(r"^(\w+):\s+(\d+) kB", rollup, re.MULTILINE)
    }
    status = Path(f"/proc/{pid}/status").read_text()
    peak = re.search(r"VmHWM:\s+(\d+) kB", status)
    groups: Counter[str] = Counter()
    name = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            path = parts[5] if len(parts) > 5 else "[anonymous]"
            name = Path(path).name if path.startswith("/") else path
            name = re.sub(r"\.cpython-\d+.*$|-[0-9a-f]{8}\.so.*$", "", name)
        elif parts[0] == "Rss:":
            groups[name] += int(parts[1])
    return {
        "rss": totals["Rss"],
        "pss": totals["Pss"],
        "anonymous": totals["Anonymous"],
        "file": totals["Rss"] - totals["Anonymous"],
        "peak": int(peak.group(1)) / 1024 if peak else 0.0,
        "threads": len(list(Path(f"/proc/{pid}/task").iterdir())),
        "mappings": {k: v / 1024 for k, v in groups.most_common(12)},
    }


def run_daemon(variant: str, requests: int, settle_seconds: float) -> dict[str, object]:
    """Start the daemon with `variant`'s settings, load it and read its memory."""
    port = serving.free_port()
    config = write_variant_config(port, VARIANTS[variant])
    server = serving.Server(
        "appliance",
        [sys.executable, "-m", "appliance", "--config", str(config), "serve"],
        f"http://127.0.0.1:{port}/v1/models/{serving.MODEL}/predict",
        "",
        f"http://127.0.0.1:{port}/health/ready",
        env={"APPLIANCE_HOME": str(serving.HOME)},
    )
    path = f"/v1/models/{serving.MODEL}/predict"
    result: dict[str, object] = {"variant": variant}
    server.start()
    try:
        assert server.process is not None
        pid = server.process.pid
        result["ready_seconds"] = server.ready_seconds
        time.sleep(1.0)
        result["start"] = read_memory(pid)
        full_rps, full_errors = post_many(
            "127.0.0.1", port, path, FULL_BODY, requests, 8
        )
        keys_rps, keys_errors = post_many(
            "127.0.0.1", port, path, KEYS_BODY, max(requests // 10, 1), 8
        )
        time.sleep(2.0)
        result["load"] = read_memory(pid)
        result["rps"] = [full_rps, keys_rps]
        result["errors"] = full_errors + keys_errors
        if settle_seconds:
            # The daemon trims every malloc_trim_seconds (60 by default) from
            # its start, so one trim falls within this wait.
            time.sleep(settle_seconds)
            result["settled"] = read_memory(pid)
    finally:
        server.stop()
    return result


def import_breakdown() -> list[list[object]]:
    """Return [module, +RSS, +anonymous, +file MB, seconds] per import, in order."""
    output = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, *IMPORTS],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(output)


def probe(*args: str) -> object:
    """Run `_memory_probes.py` with `args` and return the JSON it prints."""
    output = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("_memory_probes.py")), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "APPLIANCE_HOME": str(serving.HOME)},
    ).stdout
    return json.loads(output)


def settled(runs: list[dict]) -> str:
    """Return the median RSS after the trim wait, or "-" when it was skipped."""
    values = [r["settled"]["rss"] for r in runs if "settled" in r]
    return f"{median(values):.0f}" if values else "-"


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=62.0,
        help="wait after the load for one periodic malloc_trim, then read the "
        "memory again; 0 skips it",
    )
    parser.add_argument(
        "--rollover-rows",
        type=int,
        default=500_000,
        help="rows of the roll-over probe, half of them rolled over; 0 skips it",
    )
    parser.add_argument(
        "--duckdb-rows",
        type=int,
        default=300_000,
        help="distinct rows of the DuckDB insert probe; 0 skips it",
    )
    args = parser.parse_args()
    load_average = os.getloadavg()
    if len(os.sched_getaffinity(0)) > 1:
        # The daemon runs on CPU 0 (serving.Server pins it); the client stays off it.
        os.sched_setaffinity(0, os.sched_getaffinity(0) - {0})
    serving.prepare_model()
    global FULL_BODY, KEYS_BODY
    FULL_BODY = json.dumps({"rows": [serving.filled_row()]}).encode()
    KEYS_BODY = json.dumps({"rows": [serving.ROW]}).encode()
    imports = import_breakdown()
    # The component probe opens the catalog, so it runs before any daemon.
    components = probe("components", str(write_variant_config(0, {})))
    inserts = {
        limit: probe("duckdb", str(args.duckdb_rows), str(limit))
        for limit in ((64, 0) if args.duckdb_rows else ())
    }
    rollovers = {
        limit: probe("rollover", str(args.rollover_rows), str(limit))
        for limit in ((64, 256, 0) if args.rollover_rows else ())
    }
    runs = []
    for repeat in range(args.repeats):
        order = list(VARIANTS) if repeat % 2 == 0 else list(reversed(VARIANTS))
        for variant in order:
            result = run_daemon(variant, args.requests, args.settle_seconds)
            print(json.dumps(result), flush=True)
            runs.append(result)
    (serving.WORK / "memory.json").write_text(json.dumps({"runs": runs}))
    write_report(
        runs,
        (imports, components, inserts, rollovers),
        args,
        load_average,
        os.getloadavg(),
    )
    return 0


FULL_BODY = b""
KEYS_BODY = b""


def write_report(runs, probes, args, load_before, load_after) -> None:  # noqa: ANN001
    imports, components, inserts, rollovers = probes
    lines = [
        f"## {SECTION}",
        "",
        "Written by `benchmarks/memory.py`.",
        "",
        f"- {platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; load average {load_before[0]:.1f} at the start "
        f"and {load_after[0]:.1f} at the end (shared machine).",
        f"- The daemon of `benchmarks/serving.py` (model `{serving.MODEL}`, one "
        "model) pinned to CPU 0; the load client on the other CPU sends "
        f"{args.requests:,} single-row requests with every input, then "
        f"{max(args.requests // 10, 1):,} with only the entity keys, over 8 "
        "connections. Memory is read 1 s after ready and 2 s after the load.",
        f"- {args.repeats} runs per configuration, in alternating order; the "
        "table gives medians. The defaults set `catalog_memory_mb = 0`; "
        "'catalog limit 64 MB' is the defaults with `catalog_memory_mb = 64`; 'before "
        "the limits' sets `recent_rows = 200000`, `catalog_memory_mb = 0`, "
        "`malloc_arenas = 0` and `malloc_trim_seconds = 0`. 'After trim' is read "
        f"{args.settle_seconds:.0f} s after the load, once the daemon's periodic "
        "`malloc_trim` (every 60 s) has run, except in 'before the limits'.",
        "",
        "| configuration | start to ready, s | RSS after start, MB | anonymous | "
        "file-backed | RSS after load, MB | anonymous | file-backed | RSS after "
        "trim, MB | peak RSS, MB | req/s full, keys |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for variant in VARIANTS:
        mine = [r for r in runs if r["variant"] == variant]

        def med(phase: str, key: str, mine: list = mine) -> float:
            return median([r[phase][key] for r in mine])

        lines.append(
            f"| {variant} | {median([r['ready_seconds'] for r in mine]):.2f} | "
            f"{med('start', 'rss'):.0f} | {med('start', 'anonymous'):.0f} | "
            f"{med('start', 'file'):.0f} | {med('load', 'rss'):.0f} | "
            f"{med('load', 'anonymous'):.0f} | {med('load', 'file'):.0f} | "
            f"{settled(mine)} | {med('load', 'peak'):.0f} | "
            f"{median([r['rps'][0] for r in mine]):.0f}, "
            f"{median([r['rps'][1] for r in mine]):.0f} |"
        )
    last = [r for r in runs if r["variant"] == "defaults"][-1]
    lines += [
        "",
        "Largest mappings of the daemon with the defaults after the load "
        "(resident MB; `[anonymous]` and `[heap]` are allocator memory, the "
        "rest shared libraries):",
        "",
        "| mapping | after start | after load |",
        "| --- | ---: | ---: |",
    ]
    for name, size in last["load"]["mappings"].items():
        start = last["start"]["mappings"].get(name, 0.0)
        lines.append(f"| `{name}` | {start:.1f} | {size:.1f} |")
    lines += [
        "",
        "What each import adds in a fresh process, in the daemon's order (MB):",
        "",
        "| import | RSS | anonymous | file-backed | seconds |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, rss, anonymous, file, seconds in imports:
        lines.append(
            f"| `{name}` | {rss:.1f} | {anonymous:.1f} | {file:.1f} | {seconds:.2f} |"
        )
    lines += [
        "",
        "What each component of the daemon adds as its lifespan enters it, in one "
        "process on the same home and config (MB; `imports` is the total before):",
        "",
        "| component | RSS | anonymous | file-backed |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, rss, anonymous, file in components:
        lines.append(f"| `{name}` | {rss:.1f} | {anonymous:.1f} | {file:.1f} |")
    if inserts:
        lines += [
            "",
            f"DuckDB alone: {args.duckdb_rows:,} distinct rows of a prediction "
            "log (request id, a 20-input JSON row of about 670 bytes, an output) "
            "inserted from Arrow in batches of 1,000 into a fresh file (MB):",
            "",
            "| memory_limit | RSS before | RSS after | anonymous after | seconds |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for limit, result in inserts.items():
            shown = f"{limit} MB" if limit else "default (80% of RAM)"
            lines.append(
                f"| {shown} | {result['before']['VmRSS']:.0f} | "
                f"{result['after']['VmRSS']:.0f} | {result['after']['RssAnon']:.0f} | "
                f"{result['seconds']:.1f} |"
            )
    if rollovers:
        lines += [
            "",
            f"Roll-over under a limit: the prediction log's `roll_over` moves "
            f"{args.rollover_rows - args.rollover_rows // 4:,} of "
            f"{args.rollover_rows:,} log rows with inputs of 672 bytes to "
            "Parquet:",
            "",
            "| memory_limit | result | seconds | peak RSS of the process, MB |",
            "| --- | --- | ---: | ---: |",
        ]
        for limit, result in rollovers.items():
            shown = f"{limit} MB" if limit else "default (80% of RAM)"
            outcome = result["error"] or "done"
            lines.append(
                f"| {shown} | {outcome} | {result['seconds']:.1f} | "
                f"{result['peak']:.0f} |"
            )
    errors = sum(r["errors"] for r in runs)
    if errors:
        lines += ["", f"Responses other than 200 during the loads: {errors}."]
    write_section(SECTION, "\n".join(lines))
    print(f"wrote the {SECTION} section of {PAGE}")


if __name__ == "__main__":
    sys.exit(main())
