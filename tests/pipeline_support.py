"""Helpers for the pipeline tests: train a model on a small table, run the daemon."""

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
from typing import Any

import pandas as pd

from appliance.config import Config, load_config
from appliance.serving import OnnxModel
from appliance.signing import trusted_keys
from appliance.storage import Catalog, get_version, ingest
from appliance.training import TrainResult, train_model


def write_config(folder: Path, models: str) -> Path:
    """Write a config file whose home is `folder`/home and whose models are `models`."""
    path = folder / "config.toml"
    path.write_text(f'[storage]\nhome = "{folder / "home"}"\n\n{models}\n')
    return path


def train_on(
    folder: Path, data: pd.DataFrame, models: str, name: str = "m"
) -> tuple[Config, TrainResult]:
    """Ingest `data` as dataset ``d`` and train model `name` of the `models` TOML."""
    config = load_config(write_config(folder, models))
    source = folder / "d.parquet"
    data.to_parquet(source, index=False)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "d", [source])
    return config, train_model(config, name)


def load_model(config: Config, name: str = "m") -> OnnxModel:
    """Load the latest registered version of model `name`."""
    with Catalog(config.storage.home, read_only=True) as catalog:
        version = get_version(catalog, name, None)
    return OnnxModel.load(version.path, version.sha256, trusted=trusted_keys(config))


def native_pipeline(config: Config, name: str, data: pd.DataFrame) -> Any:
    """Fit the native pipeline the way training does, to compare with ONNX."""
    from appliance.training._frame import load_frame
    from appliance.training._pipeline import build_pipeline

    cfg = config.model(name)
    with Catalog(config.storage.home, read_only=True) as catalog:
        frame = load_frame(catalog, cfg)
    pipeline = build_pipeline(cfg, frame.numeric, frame.categorical)
    return pipeline.fit(frame.x_train, frame.y_train), frame


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Daemon:
    """The real daemon as a subprocess on 127.0.0.1, stopped by its own pid."""

    def __init__(self, config_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "APPLIANCE_CONFIG": str(config_path)}
        env.pop("APPLIANCE_HOME", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "appliance", "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited: {self.process.stderr.read()}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("daemon did not become ready within 30 s")

    def post(self, path: str, body: bytes | Any) -> tuple[int, Any]:
        """POST JSON (or raw bytes) and return the status and decoded body."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path,
            data=data,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def post_arrow(self, path: str, table: Any) -> tuple[int, Any]:
        """POST an Arrow IPC stream and return the status and the decoded body."""
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        request = urllib.request.Request(
            self.base + path,
            data=sink.getvalue().to_pybytes(),
            headers={"Content-Type": "application/vnd.apache.arrow.stream"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, pa.ipc.open_stream(response.read()).read_all()
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def stop(self) -> None:
        """Stop the daemon by its pid and wait for it."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
