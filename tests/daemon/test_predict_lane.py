"""The predict lane in front of Litestar: errors, parameters and batching."""

from __future__ import annotations

import asyncio
import json
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_support import HOST, MODEL, row, write_config
from prometheus_client.parser import text_string_to_metric_families

from appliance.config import load_config
from appliance.daemon import build_app
from appliance.serving import DaemonState, ServingMetrics

PREDICT = f"/v1/models/{MODEL}/predict"


def batch_rows_count(base: str) -> float:
    text = httpx.get(base + "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "appliance_session_batch_rows_count":
                return sample.value
    return 0.0


def test_lane_errors_keep_their_bodies(start_daemon: Any) -> None:
    daemon = start_daemon()
    base = daemon.base

    wrong_method = httpx.get(base + PREDICT)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == (
        f"Method Not Allowed: {PREDICT} takes no GET request; GET /schema lists "
        "the methods of each route"
    )

    bad_version = httpx.post(base + PREDICT + "?version=abc", json={"rows": [row(0)]})
    assert bad_version.status_code == 400
    assert bad_version.json()["parameters"] == ["version"]
    assert "version" in bad_version.json()["error"]

    unknown = httpx.post(base + "/v1/models/nope/predict", json={"rows": [row(0)]})
    assert unknown.status_code == 404
    assert "nope" in unknown.json()["error"]
    assert unknown.json()["type"] == "NotFoundError"

    missing = httpx.post(base + PREDICT + "?version=7", json={"rows": [row(0)]})
    assert missing.status_code == 404


def test_lane_version_and_trailing_slash(start_daemon: Any) -> None:
    daemon = start_daemon()
    body = {"rows": [row(0)]}

    served = httpx.post(daemon.base + PREDICT, json=body)
    pinned = httpx.post(daemon.base + PREDICT + "/?version=1", json=body)

    assert served.status_code == 200
    assert pinned.status_code == 200
    assert pinned.json()["version"] == 1
    assert pinned.json()["predictions"] == served.json()["predictions"]
    assert served.headers["content-type"] == "application/json"
    assert int(served.headers["content-length"]) == len(served.content)


def test_lane_other_routes_reach_litestar(start_daemon: Any) -> None:
    daemon = start_daemon()

    models = httpx.get(daemon.base + "/v1/models")
    feedback = httpx.get(daemon.base + f"/v1/models/{MODEL}/feedback")

    assert models.status_code == 200
    assert models.json()["models"][0]["name"] == MODEL
    # Litestar handles the paths the lane does not serve.
    assert feedback.status_code == 405


def test_lone_and_concurrent_requests_predict(start_daemon: Any) -> None:
    daemon = start_daemon()
    url = daemon.base + PREDICT
    lone = [httpx.post(url, json={"rows": [row(i)]}).json() for i in range(3)]
    runs_after_lone = batch_rows_count(daemon.base)
    with ThreadPoolExecutor(8) as pool:
        burst = list(
            pool.map(
                lambda i: httpx.post(url, json={"rows": [row(i)]}).json(), range(24)
            )
        )

    assert runs_after_lone == 3
    assert batch_rows_count(daemon.base) <= 3 + 24
    for index, result in enumerate(lone):
        assert result["predictions"] == burst[index]["predictions"]


def test_client_gone_mid_body_keeps_serving(start_daemon: Any) -> None:
    daemon = start_daemon()
    with socket.create_connection((HOST, daemon.port), timeout=10) as sock:
        sock.sendall(
            f"POST {PREDICT} HTTP/1.1\r\nHost: {HOST}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            '{"rows": ['.encode()
        )

    after = httpx.post(daemon.base + PREDICT, json={"rows": [row(0)]})
    assert after.status_code == 200


async def call_app(app: Any, path: str, query: bytes, body: bytes) -> tuple:
    """Send one POST to `app` as ASGI messages; return its status and body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"content-type", b"application/json")],
        "client": (HOST, 50000),
        "server": (HOST, 80),
        "state": {},
    }
    chunks = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return chunks.pop() if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


async def predict_in_process(state: DaemonState, requests: list[tuple]) -> list:
    """Start the daemon's app in this process and send `requests` to it."""
    app = build_app(state)
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put)
    )
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        return [await call_app(app, PREDICT, *request) for request in requests]
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await lifespan


def test_litestar_route_matches_lane(
    start_daemon: Any, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Litestar route of the same path, used by apps without the lane."""
    body = {"rows": [row(0), row(1)]}
    daemon = start_daemon()
    via_lane = httpx.post(daemon.base + PREDICT, json=body).json()
    assert daemon.stop() == 0

    monkeypatch.delenv("APPLIANCE_HOME", raising=False)
    config = load_config(write_config(tmp_path / "in_process.toml", home))
    state = DaemonState(config=config, metrics=ServingMetrics(), host=HOST, port=0)
    data = json.dumps(body).encode()
    served, bad_version, no_rows = asyncio.run(
        predict_in_process(
            state,
            [(b"", data), (b"version=abc", data), (b"", b'{"rows": []}')],
        )
    )

    assert served[0] == 200
    assert served[1]["predictions"] == via_lane["predictions"]
    assert bad_version[0] == 400
    assert bad_version[1]["parameters"] == ["version"]
    assert no_rows[0] == 422
