"""The daemon side of the replay: a fresh home, its config, and HTTP calls.

`ReplayHome` writes the config of the replay's model with its retraining
policy, ingests the first quarter and trains the static champion through the
`appliance` command. `ReplayDaemon` runs ``appliance serve`` as a subprocess
on a free port of 127.0.0.1, stops it by its pid, and wraps the routes one
replayed day uses: predict, dataset rows, feedback, drift, alerts, retrain.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import pandas as pd

from appliance.client import DaemonClient
from appliance.errors import ApplianceError, DaemonError
from appliance.homelock import DaemonAddress

logger = logging.getLogger(__name__)

MODEL = "flights_late"
DATASET = "flights"
HOST = "127.0.0.1"
READY_SECONDS = 90.0
STOP_SECONDS = 60.0
RETRAIN_WAIT_SECONDS = 900.0
"""Maximum wait for one retraining (training, export, parity and refit)."""
MONITOR_WAIT_SECONDS = 120.0
"""Maximum wait for the monitoring thread to observe the predicted rows."""
SETTLE_SECONDS = 0.2
"""Pause between the monitor's catching up and reading whether a retraining
runs, because the monitoring thread stores its detections and only then calls
the retraining service.

NOTE: an estimate, not a guarantee. An alarm that reaches the retraining
service later starts its run while the next day is replayed."""
HISTORY_LIMIT = 1000
"""Retraining records read per status; skips of one day stay far below it."""
_POLL_SECONDS = 0.2


class ReplayError(ApplianceError):
    """The replay could not drive the daemon: a command failed or timed out."""


@dataclass(frozen=True)
class PolicySettings:
    """The ``[models.flights_late.retrain]`` table of the replay's config."""

    cooldown_days: float = 14.0
    budget: int = 3
    budget_days: float = 30.0
    window: str = "expanding"
    window_days: float | None = None
    min_new_labels: int = 5000
    holdout_days: float = 7.0
    promote_margin: float = 0.002
    refit: bool = True

    def table(self) -> dict[str, Any]:
        """Return the TOML keys of the policy, with the event clock."""
        table: dict[str, Any] = {
            "trigger": "drift",
            "clock": "event",
            "cooldown_hours": self.cooldown_days * 24,
            "budget": self.budget,
            "budget_days": self.budget_days,
            "window": self.window,
            "min_new_labels": self.min_new_labels,
            "holdout_days": self.holdout_days,
            "metric": "roc_auc",
            "promote_margin": self.promote_margin,
            "refit": self.refit,
        }
        if self.window_days is not None:
            table["window_days"] = self.window_days
        return table


class ReplayHome:
    """A fresh appliance home with the replay's config, data and static model.

    Args:
        home: Folder of the home; it must not hold a catalog yet.
        numeric: Numeric features of the model.
        categorical: Categorical features of the model.
        params: LightGBM parameters.
        policy: The retraining policy.
        stream_horizon: ``[monitoring] stream_horizon``; the daemon's default
            when None.
    """

    def __init__(
        self,
        home: Path,
        numeric: list[str],
        categorical: list[str],
        params: dict[str, Any],
        policy: PolicySettings,
        stream_horizon: int | None = None,
    ) -> None:
        self.home = home
        self.numeric = numeric
        self.categorical = categorical
        self.params = params
        self.policy = policy
        self.stream_horizon = stream_horizon
        self.config = home / "config.toml"

    def create(self, first_rows: pd.DataFrame) -> None:
        """Write the config, ingest `first_rows` and train the static champion.

        Raises:
            ReplayError: The home already has a catalog, or a command failed.
        """
        if (self.home / "catalog.duckdb").exists():
            raise ReplayError(
                f"{self.home} already contains a catalog; the replay needs a fresh "
                "home, so pass another --home or delete that folder"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        self.config.write_text(self._config_text(), encoding="utf-8")
        source = self.home / "source" / "flights_q1.parquet"
        source.parent.mkdir(exist_ok=True)
        first_rows.to_parquet(source, index=False)
        self.run("ingest", DATASET, str(source))
        self.run("train", MODEL)

    def run(self, *args: str) -> str:
        """Run ``python -m appliance --config CONFIG ARGS`` and return its output.

        Raises:
            ReplayError: The command exited with an error.
        """
        command = [sys.executable, "-m", "appliance", "--config", str(self.config)]
        logger.info("command started args=%s", " ".join(args))
        done = subprocess.run(
            [*command, *args], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise ReplayError(
                f"'appliance {' '.join(args)}' failed with status "
                f"{done.returncode}: {done.stderr.strip()[-2000:]}"
            )
        return done.stdout

    def _config_text(self) -> str:
        features = self.numeric + self.categorical
        lines = [
            'log_level = "WARNING"',
            "[storage]",
            f"home = {json.dumps(str(self.home))}",
            "[server]",
            f'host = "{HOST}"',
            "[datasets.flights]",
            "keep_versions = 3",
            # Flush appended rows only when a retraining run flushes the buffer,
            # so 275 days do not make 275 dataset versions.
            "[ingest]",
            "flush_rows = 1000000",
            "flush_seconds = 86400.0",
            f"[models.{MODEL}]",
            f'dataset = "{DATASET}"',
            'target = "late"',
            'task = "classification"',
            'algorithm = "lightgbm"',
            f"features = {json.dumps(features)}",
            f"categorical = {json.dumps(self.categorical)}",
            'event_timestamp = "time_hour"',
            f"[models.{MODEL}.params]",
            *(f"{key} = {json.dumps(value)}" for key, value in self.params.items()),
            f"[models.{MODEL}.split]",
            'method = "time"',
            'column = "time_hour"',
            "test_size = 0.2",
            f"[models.{MODEL}.retrain]",
            *(f"{key} = {_toml(value)}" for key, value in self.policy.table().items()),
        ]
        if self.stream_horizon is not None:
            lines += ["[monitoring]", f"stream_horizon = {self.stream_horizon}"]
        return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


class ReplayDaemon:
    """``appliance serve`` on a free port, and the routes a replayed day uses.

    Use it as a context manager: entering starts the daemon and waits for
    ``/health``, leaving stops it with SIGTERM to its pid.
    """

    def __init__(self, home: ReplayHome) -> None:
        self.home = home
        self.port = _free_port()
        self.client = DaemonClient(DaemonAddress(0, HOST, self.port))
        self._process: subprocess.Popen[bytes] | None = None
        self._log = home.home / "daemon.log"

    def __enter__(self) -> Self:
        command = [
            sys.executable,
            "-m",
            "appliance",
            "--config",
            str(self.home.config),
            "serve",
            "--port",
            str(self.port),
        ]
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=log)
        logger.info("daemon started pid=%d port=%d", self._process.pid, self.port)
        self._wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        process = self._process
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            logger.error(
                "daemon did not stop in %.0f s pid=%d", STOP_SECONDS, process.pid
            )
            process.kill()
            process.wait()
        logger.info("daemon stopped pid=%d status=%d", process.pid, process.returncode)
        self._process = None

    def predict(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Predict one day's rows; return the daemon's response."""
        return self.client.post(f"/v1/models/{MODEL}/predict", {"rows": rows})

    def append_rows(self, rows: list[dict[str, Any]]) -> None:
        """Append labelled rows to the dataset through the HTTP ingest buffer."""
        self.client.post(f"/v1/datasets/{DATASET}/rows", {"rows": rows})

    def send_labels(self, request_id: str, labels: list[int]) -> dict[str, Any]:
        """Send the labels of every row of one predict request."""
        body = {
            "labels": [
                {"request_id": request_id, "row": row, "label": label}
                for row, label in enumerate(labels)
            ]
        }
        return self.client.post(f"/v1/models/{MODEL}/feedback", body)

    def wait_monitored(self, version: int, rows: int) -> None:
        """Wait until the streaming monitor of `version` has seen `rows` rows.

        Drift alarms come from the daemon's monitoring thread, which reads a
        queue behind the predict route; waiting for it keeps the replay's
        retrainings on the day whose rows raised them.

        Raises:
            ReplayError: The monitor did not catch up in time.
        """
        deadline = time.monotonic() + MONITOR_WAIT_SECONDS
        while time.monotonic() < deadline:
            stream = self.client.get(f"/v1/models/{MODEL}/drift")["stream"]
            if stream.get("version") != version or stream.get("rows", 0) >= rows:
                return
            time.sleep(_POLL_SECONDS)
        raise ReplayError(
            f"the monitor of {MODEL} v{version} did not observe {rows} rows within "
            f"{MONITOR_WAIT_SECONDS:.0f} s; see {self._log}"
        )

    def retrain_status(self) -> dict[str, Any]:
        """Return ``{"running": bool, "history": [...]}``, newest record first."""
        return self.client.get(f"/v1/models/{MODEL}/retrain", {"limit": HISTORY_LIMIT})

    def wait_retrain(self, settle: float = 0.0) -> dict[str, Any]:
        """Wait `settle` seconds, then while a retraining runs; return the status.

        Raises:
            ReplayError: The retraining did not finish in time.
        """
        time.sleep(settle)
        deadline = time.monotonic() + RETRAIN_WAIT_SECONDS
        while time.monotonic() < deadline:
            status = self.retrain_status()
            if not status["running"]:
                return status
            time.sleep(_POLL_SECONDS)
        raise ReplayError(
            f"the retraining of {MODEL} still ran after {RETRAIN_WAIT_SECONDS:.0f} s;"
            f" see {self._log}"
        )

    def alerts(self) -> list[dict[str, Any]]:
        """Return the model's open or acknowledged alerts of every kind."""
        return self.client.get("/v1/alerts", {"model": MODEL})["alerts"]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ReplayError(
                    f"the daemon exited with status {self._process.returncode} "
                    f"before it was ready; see {self._log}"
                )
            try:
                self.client.get("/health", timeout=2.0)
                return
            except DaemonError:
                time.sleep(_POLL_SECONDS)
        raise ReplayError(
            f"the daemon was not ready within {READY_SECONDS:.0f} s; see {self._log}"
        )


def request_rows(rows: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """Return JSON-ready rows: times as ISO text, missing numbers as null."""
    records = rows[columns].to_dict("records")
    for record in records:
        for key, value in record.items():
            if isinstance(value, pd.Timestamp):
                record[key] = value.isoformat()
            elif isinstance(value, float) and math.isnan(value):
                record[key] = None
    return records


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]
