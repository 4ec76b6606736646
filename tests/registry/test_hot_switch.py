"""The daemon switches champions under load without failing a request."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from support import HOST, Daemon, free_port, run_appliance, stop_daemon, subprocess_env
from trips_data import make_trips_config

from appliance.config import Config
from appliance.training import train_model

ROW = {"distance": 700.0, "hour": 18, "carrier": "B6"}
LOAD_THREADS = 3


@dataclass
class Load:
    """Requests sent by background threads, as (start time, status, version)."""

    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    results: list[tuple[float, int, int | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        """Send one-row predictions until `stop` is set."""
        with httpx.Client(base_url=self.url, trust_env=False, timeout=30.0) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    response = client.post(
                        "/v1/models/late/predict", json={"rows": [ROW]}
                    )
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.errors.append(repr(exc))
                    continue
                body = response.json()
                with self.lock:
                    self.results.append(
                        (started, response.status_code, body.get("version"))
                    )

    def versions(self, start: float, end: float) -> list[int | None]:
        """Return the versions of the requests started within [start, end)."""
        with self.lock:
            return [v for t, _, v in self.results if start <= t < end]


def _start(config: Config, log: Path) -> Daemon:
    command = [sys.executable, "-m", "appliance", "--config", str(config.path), "serve"]
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            command,
            env=subprocess_env(config.storage.home),
            cwd=config.path.parent,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    daemon = Daemon(process, f"http://{HOST}:{config.server.port}", log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            if httpx.get(daemon.base_url + "/health", trust_env=False).is_success:
                return daemon
        except httpx.TransportError:
            time.sleep(0.2)
    stop_daemon(daemon)
    raise RuntimeError(f"daemon not healthy; log:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, Daemon]]:
    """Run a daemon over two versions of model ``late``; the tests share it."""
    folder = tmp_path_factory.mktemp("hot_switch")
    config = make_trips_config(
        folder,
        f"""
        [server]
        host = "{HOST}"
        port = {free_port()}
        """,
    )
    train_model(config, "late")
    # A second version with other parameters gives other probabilities.
    changed = dataclasses.replace(
        config.models["late"], params={"n_estimators": 5, "num_leaves": 3, "n_jobs": 1}
    )
    train_model(dataclasses.replace(config, models={"late": changed}), "late")
    daemon = _start(config, folder / "daemon.log")
    try:
        yield config, daemon
    finally:
        stop_daemon(daemon)


def _cli(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    return run_appliance(config.path, config.storage.home, *args)


def test_hot_switch_under_load(served: tuple[Config, Daemon]) -> None:
    config, daemon = served
    load = Load(daemon.base_url)
    threads = [threading.Thread(target=load.run) for _ in range(LOAD_THREADS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        promote_started = time.monotonic()
        promoted = _cli(config, "models", "promote", "late", "1", "--reason", "v1")
        promote_done = time.monotonic()
        time.sleep(0.5)
        rollback_started = time.monotonic()
        rolled = _cli(config, "models", "rollback", "late", "--reason", "undo")
        rollback_done = time.monotonic()
        time.sleep(0.5)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=30)

    assert promoted.returncode == 0, promoted.stderr
    assert "the daemon now serves version 1" in promoted.stdout
    assert rolled.returncode == 0, rolled.stderr
    assert "the daemon now serves version 2" in rolled.stdout
    assert load.errors == []
    assert {status for _, status, _ in load.results} == {200}
    # Version 2, the latest, is served until the promotion; version 1 after it
    # until the rollback, which returns to version 2. Requests started while a
    # command ran may get either version.
    before = load.versions(0.0, promote_started)
    promoted_window = load.versions(promote_done, rollback_started)
    after = load.versions(rollback_done, float("inf"))
    assert before and set(before) == {2}
    assert promoted_window and set(promoted_window) == {1}
    assert after and set(after) == {2}


def test_version_query_and_corrupted_promotion(served: tuple[Config, Daemon]) -> None:
    config, daemon = served
    with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
        latest = client.post("/v1/models/late/predict", json={"rows": [ROW]})
        pinned = client.post("/v1/models/late/predict?version=1", json={"rows": [ROW]})
        missing = client.post("/v1/models/late/predict?version=9", json={"rows": [ROW]})
    # The previous test ends with version 2 as the champion.
    assert latest.json()["version"] == 2
    assert pinned.status_code == 200
    assert pinned.json()["version"] == 1
    assert pinned.json()["predictions"] != latest.json()["predictions"]
    assert missing.status_code == 404
    assert "has no version 9" in missing.json()["error"]

    assert _cli(config, "models", "promote", "late", "1").returncode == 0
    # The daemon has the only catalog connection, so the CLI trains through
    # it. With a promoted champion the new version is registered, not served.
    trained = _cli(config, "train", "late")
    assert trained.returncode == 0, trained.stderr
    assert "keeps serving the champion" in trained.stdout
    listed = _cli(config, "models", "list", "--json").stdout.splitlines()
    third = next(v for v in map(json.loads, listed) if v["version"] == 3)
    assert third["serving"] is False
    artifact = Path(third["path"]) / "model.onnx"
    data = bytearray(artifact.read_bytes())
    data[100] ^= 0x01
    artifact.write_bytes(bytes(data))

    result = _cli(config, "models", "promote", "late", "3")

    assert result.returncode == 1
    assert "sha256" in result.stderr
    assert "changed after signing" in result.stderr
    with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
        champion = client.post("/v1/models/late/predict", json={"rows": [ROW]})
        corrupted = client.post(
            "/v1/models/late/predict?version=3", json={"rows": [ROW]}
        )
    assert champion.status_code == 200
    assert champion.json()["version"] == 1
    assert corrupted.status_code == 409
    assert "sha256" in corrupted.json()["error"]
    history = _cli(config, "models", "history", "late", "--json").stdout
    last = json.loads(history.splitlines()[-1])
    assert (last["version"], last["action"]) == (1, "set")


def test_corrupted_champion_falls_back_at_start(
    served: tuple[Config, Daemon], tmp_path: Path
) -> None:
    config, daemon = served
    # The previous test ends with version 1 as the champion, after version 2.
    assert stop_daemon(daemon) == 0
    listed = _cli(config, "models", "list", "--json").stdout.splitlines()
    first = next(v for v in map(json.loads, listed) if v["version"] == 1)
    artifact = Path(first["path"]) / "model.onnx"
    artifact.write_bytes(artifact.read_bytes()[:-10])

    restarted = _start(config, tmp_path / "restarted.log")
    try:
        with httpx.Client(base_url=restarted.base_url, trust_env=False) as client:
            served_now = client.post("/v1/models/late/predict", json={"rows": [ROW]})
            alerts = client.get("/v1/alerts").json()
    finally:
        stop_daemon(restarted)

    assert served_now.status_code == 200
    assert served_now.json()["version"] == 2
    load = [a for a in alerts["alerts"] if a["kind"] == "load"]
    assert len(load) == 1
    assert load[0]["severity"] == "critical"
    assert "champion version 1 of model 'late' failed to load" in load[0]["message"]
    assert "serving version 2 instead" in load[0]["message"]
    history = _cli(config, "models", "history", "late", "--json").stdout
    assert json.loads(history.splitlines()[-1])["version"] == 1
