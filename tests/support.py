"""Helpers and fixtures shared by the tests; conftest.py re-exports the fixtures.

Every test runs against real parts: a DuckDB catalog in a temporary home, ONNX
models exported by the appliance itself, and a daemon started as a subprocess
that listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from appliance.config import Config, load_config
from appliance.storage import Catalog, ingest
from appliance.training import TrainResult, train_model

HOST = "127.0.0.1"
HEALTH_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
CLI_TIMEOUT_SECONDS = 180.0

# Limits of the shared daemon. They are small so that the 413 tests send little
# data, and the requests of the other tests (at most 20 rows) fit under both.
SERVER_MAX_ROWS = 20
SERVER_MAX_BODY_BYTES = 16_384

# Small forests and boosters keep the whole suite within a few minutes.
N_ESTIMATORS = 20

# Datasets of the trained home: name -> (target column, task, categorical column).
DATASETS = {
    "binary": ("malignant", "classification", "site"),
    "multiclass": ("species", "classification", "garden"),
    "regression": ("progression", "regression", "clinic"),
}
CLASSIFIERS = ("lightgbm", "random_forest", "logistic_regression")
REGRESSORS = ("lightgbm", "random_forest", "linear_regression")

# Model name -> (dataset, algorithm) for every algorithm and task combination.
MODELS = {
    **{f"binary_{a}": ("binary", a) for a in CLASSIFIERS},
    **{f"multiclass_{a}": ("multiclass", a) for a in CLASSIFIERS},
    **{f"regression_{a}": ("regression", a) for a in REGRESSORS},
}


# --- environment and subprocesses ------------------------------------------------


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the variables that would redirect the appliance's config or home,
    or send a key."""
    monkeypatch.delenv("APPLIANCE_HOME", raising=False)
    monkeypatch.delenv("APPLIANCE_CONFIG", raising=False)
    monkeypatch.delenv("APPLIANCE_API_KEY", raising=False)


WriteFile = Callable[[str, bytes | str], Path]
"""Type of the storage tests' ``write_file`` fixture: file name and content to path."""


def load_config_text(folder: Path, text: str) -> Config:
    """Write `text` to ``folder/config.toml`` and return the config loaded from it."""
    path = folder / "config.toml"
    path.write_text(text)
    return load_config(path)


def subprocess_env(home: Path) -> dict[str, str]:
    """Return the environment of an appliance subprocess that stores under `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env["APPLIANCE_HOME"] = str(home)
    return env


def run_appliance(
    config: Path, home: Path, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m appliance --config CONFIG ARGS...`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "appliance", "--config", str(config), *args],
        env=subprocess_env(home),
        cwd=cwd or config.parent,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Return `run_appliance`, the runner of ``python -m appliance``."""
    return run_appliance


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# --- config files ------------------------------------------------------------------


def toml_text(table: dict[str, Any]) -> str:
    """Serialize a nested dict of strings, numbers, booleans and lists to TOML."""
    lines: list[str] = []
    _toml_table(table, [], lines)
    return "\n".join(lines) + "\n"


def _toml_table(table: dict[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if path and (scalars or not tables):
        lines.append(f"[{'.'.join(_toml_key(p) for p in path)}]")
    for key, value in scalars.items():
        lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in tables.items():
        _toml_table(value, [*path, key], lines)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # A JSON string with ASCII escapes is also a valid TOML basic string.
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} as a TOML value")


def write_config_file(
    path: Path,
    home: Path | str,
    models: dict[str, dict[str, Any]] | None = None,
    server: dict[str, Any] | None = None,
) -> Path:
    """Write a config.toml at `path` with ``[storage] home`` and ``[models.*]``."""
    table: dict[str, Any] = {"storage": {"home": str(home)}}
    if server:
        table["server"] = server
    if models:
        table["models"] = models
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(toml_text(table), encoding="utf-8")
    return path


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Return a writer of ``tmp_path/config.toml`` whose home is ``tmp_path/home``."""

    def write(
        models: dict[str, dict[str, Any]] | None = None,
        server: dict[str, Any] | None = None,
        home: Path | str | None = None,
    ) -> Path:
        return write_config_file(
            tmp_path / "config.toml",
            tmp_path / "home" if home is None else home,
            models,
            server,
        )

    return write


def model_table(
    dataset: str, target: str, task: str, algorithm: str, **extra: Any
) -> dict[str, Any]:
    """Return a ``[models.NAME]`` table with small estimator settings."""
    table: dict[str, Any] = {
        "dataset": dataset,
        "target": target,
        "task": task,
        "algorithm": algorithm,
    }
    if algorithm in ("lightgbm", "random_forest"):
        table["params"] = {"n_estimators": N_ESTIMATORS}
    if task == "classification":
        table["split"] = {"method": "stratified", "test_size": 0.25}
    table.update(extra)
    return table


# --- datasets ----------------------------------------------------------------------


def _add_gaps(
    frame: pd.DataFrame, numeric: list[str], categorical: str, labels: list[str]
) -> pd.DataFrame:
    """Add a text column and set missing values in numeric and text columns."""
    frame = frame.copy()
    rows = np.arange(len(frame))
    frame.insert(len(numeric), categorical, [labels[i % len(labels)] for i in rows])
    frame[categorical] = frame[categorical].astype(object)
    frame.loc[rows % 10 == 3, categorical] = None
    frame.loc[rows % 9 == 4, numeric[0]] = np.nan
    frame.loc[rows % 13 == 5, numeric[-1]] = np.nan
    return frame


def make_binary() -> pd.DataFrame:
    """Return 300 breast-cancer rows with a 0/1 target ``malignant``."""
    data = load_breast_cancer()
    picked = {
        "mean radius": "radius",
        "mean texture": "texture",
        "mean smoothness": "smoothness",
        "mean concave points": "concave_points",
    }
    features = pd.DataFrame(data.data, columns=data.feature_names)[list(picked)]
    frame = features.rename(columns=picked).head(300)
    numeric = list(frame.columns)
    frame = _add_gaps(frame, numeric, "site", ["north", "south", "east"])
    # load_breast_cancer codes malignant as 0 and benign as 1.
    frame["malignant"] = (data.target[:300] == 0).astype(np.int64)
    return frame


def make_multiclass() -> pd.DataFrame:
    """Return the 150 iris rows with a text target ``species``."""
    data = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    frame = pd.DataFrame(data.data, columns=names)
    frame = _add_gaps(frame, names, "garden", ["kew", "edinburgh"])
    frame["species"] = [str(data.target_names[i]) for i in data.target]
    return frame


def make_regression() -> pd.DataFrame:
    """Return 300 diabetes rows with a numeric target ``progression``."""
    data = load_diabetes()
    names = ["age", "sex", "bmi", "bp", "s1", "s5"]
    frame = pd.DataFrame(data.data, columns=data.feature_names)[names].head(300)
    # The bundled values are standardized, and some nearly equal values differ by
    # only a few ulps in float64. The float32 ONNX input merges them, so a tree
    # split between them flips and parity fails. Six decimals keep them apart.
    frame = frame.round(6)
    frame = _add_gaps(frame, names, "clinic", ["a", "b", "c", "d"])
    frame["progression"] = data.target[:300]
    return frame


DATASET_BUILDERS: dict[str, Callable[[], pd.DataFrame]] = {
    "binary": make_binary,
    "multiclass": make_multiclass,
    "regression": make_regression,
}


@pytest.fixture(scope="session")
def frames() -> dict[str, pd.DataFrame]:
    """Return the three dataset frames by dataset name."""
    return {name: build() for name, build in DATASET_BUILDERS.items()}


def json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Convert frame rows to JSON-ready dicts with None for missing values."""
    rows = []
    for record in frame.to_dict(orient="records"):
        rows.append({k: _json_value(v) for k, v in record.items()})
    return rows


def _json_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- webhook receiver --------------------------------------------------------------


class WebhookReceiver:
    """A webhook receiver on 127.0.0.1 that keeps every JSON body it gets."""

    def __init__(self) -> None:
        bodies: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.bodies = bodies
        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def resolved(self) -> dict[str, dict[str, Any]]:
        """Return the resolution bodies received so far, by alert kind."""
        return {b["kind"]: b for b in self.bodies if b["status"] == "resolved"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    """Return a webhook receiver on 127.0.0.1, closed after the test."""
    started = WebhookReceiver()
    yield started
    started.close()


# --- trained home and daemon -------------------------------------------------------


@dataclass(frozen=True)
class TrainedHome:
    """A home with the three datasets ingested and every model of `MODELS` trained."""

    config_path: Path
    config: Config
    home: Path
    sources: dict[str, Path]
    """CSV file ingested for each dataset."""
    results: dict[str, TrainResult]
    """Training result of each model name."""


@pytest.fixture(scope="session")
def trained(
    tmp_path_factory: pytest.TempPathFactory, frames: dict[str, pd.DataFrame]
) -> TrainedHome:
    """Ingest the datasets as CSV and train every model of `MODELS` once."""
    root = tmp_path_factory.mktemp("trained")
    home = root / "home"
    models = {}
    for name, (dataset, algorithm) in MODELS.items():
        target, task, _ = DATASETS[dataset]
        models[name] = model_table(dataset, target, task, algorithm)
    server = {"max_rows": SERVER_MAX_ROWS, "max_body_bytes": SERVER_MAX_BODY_BYTES}
    config_path = write_config_file(root / "config.toml", home, models, server)

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("APPLIANCE_HOME", raising=False)
        patch.delenv("APPLIANCE_CONFIG", raising=False)
        config = load_config(config_path)

    sources = {}
    with Catalog(config.storage.home) as catalog:
        for dataset, frame in frames.items():
            path = root / "data" / f"{dataset}.csv"
            path.parent.mkdir(exist_ok=True)
            frame.to_csv(path, index=False)
            ingest(catalog, dataset, [path])
            sources[dataset] = path
    results = {name: train_model(config, name) for name in MODELS}
    return TrainedHome(config_path, config, config.storage.home, sources, results)


@dataclass(frozen=True)
class Daemon:
    """A running ``appliance serve`` subprocess."""

    process: subprocess.Popen[bytes]
    base_url: str
    log: Path
    """File that receives the daemon's stderr."""


def start_daemon(config_path: Path, home: Path, log: Path) -> Daemon:
    """Start ``appliance serve`` on a free port and wait until /health is 200.

    Raises:
        RuntimeError: The daemon exited or /health was not 200 in time.
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "appliance",
        "--config",
        str(config_path),
        "serve",
        "--port",
        str(port),
    ]
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            command,
            env=subprocess_env(home),
            cwd=config_path.parent,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    daemon = Daemon(process, f"http://{HOST}:{port}", log)
    deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
    with httpx.Client(base_url=daemon.base_url, trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"daemon exited with status {process.returncode} before "
                    f"/health returned 200; log:\n{log.read_text(errors='replace')}"
                )
            try:
                if client.get("/health").status_code == 200:
                    return daemon
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    stop_daemon(daemon)
    raise RuntimeError(
        f"daemon /health was not 200 within {HEALTH_TIMEOUT_SECONDS} s; "
        f"log:\n{log.read_text(errors='replace')}"
    )


def stop_daemon(daemon: Daemon) -> int:
    """Send SIGTERM to the daemon's own pid and return its exit status."""
    process = daemon.process
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            return process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
            raise
    return process.returncode


@pytest.fixture(scope="module")
def daemon(
    trained: TrainedHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    """Run the daemon over the trained home for one test module.

    The daemon holds the catalog as its single writer, so it stops after the
    module and other tests can open the trained home directly.
    """
    log = tmp_path_factory.mktemp("daemon") / "stderr.log"
    running = start_daemon(trained.config_path, trained.home, log)
    try:
        yield running
    finally:
        stop_daemon(running)


@pytest.fixture
def http(daemon: Daemon) -> Iterator[httpx.Client]:
    """Return an HTTP client of the shared daemon that ignores proxy variables."""
    client = httpx.Client(base_url=daemon.base_url, trust_env=False, timeout=30.0)
    with client:
        yield client


def write_flights_week(folder: Path, days: int = 7) -> tuple[Path, Path]:
    """Write `days` days (at most 28) of 3-hourly flights and weather readings
    at EWR, from 2013-02-01 on.

    Returns:
        The flights CSV (origin, time_hour, distance, late) and the weather
        CSV (origin, time_hour, temp), both in `folder`.
    """
    flights = ["origin,time_hour,distance,late"]
    weather = ["origin,time_hour,temp"]
    for day in range(1, days + 1):
        for hour in range(0, 24, 3):
            stamp = f"2013-02-{day:02d}T{hour:02d}:00:00Z"
            temp = float((day * 7 + hour) % 40)
            weather.append(f"EWR,{stamp},{temp}")
            flights.append(f"EWR,{stamp},{100 + hour * 10},{str(temp > 20).lower()}")
    flights_csv, weather_csv = folder / "flights.csv", folder / "weather.csv"
    flights_csv.write_text("\n".join(flights) + "\n")
    weather_csv.write_text("\n".join(weather) + "\n")
    return flights_csv, weather_csv


TAIL_FLIGHT_ROWS = 120
"""Rows of the flights file that `write_tail_flights` writes."""


def write_tail_flights(folder: Path) -> tuple[Path, Path]:
    """Write flights over three tail numbers and the planes of those tail numbers.

    Returns:
        flights.csv (tailnum, distance, late) of `TAIL_FLIGHT_ROWS` rows and
        planes.csv (tailnum, year, seats), both in `folder`.
    """
    tails = ("N1", "N2", "N3")
    flights = ["tailnum,distance,late"]
    for i in range(TAIL_FLIGHT_ROWS):
        late = str(i % 3 == 0 or i % 7 == 0).lower()
        flights.append(f"{tails[i % 3]},{100 + (i * 37) % 900},{late}")
    flights_csv, planes_csv = folder / "flights.csv", folder / "planes.csv"
    flights_csv.write_text("\n".join(flights) + "\n")
    planes_csv.write_text("tailnum,year,seats\nN1,2003,150\nN2,2010,200\nN3,1999,50\n")
    return flights_csv, planes_csv


def serve_flights_week(root: Path, config_text: str) -> Iterator[Daemon]:
    """Train model ``late`` of `config_text` on `write_flights_week` and serve it.

    A generator for module fixtures: it yields the running daemon and stops
    it when resumed.
    """
    config = load_config_text(root, config_text)
    flights_csv, weather_csv = write_flights_week(root)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "flights", [flights_csv])
        ingest(catalog, "weather", [weather_csv])
    train_model(config, "late")
    daemon = start_daemon(root / "config.toml", config.storage.home, root / "log")
    try:
        yield daemon
    finally:
        stop_daemon(daemon)
