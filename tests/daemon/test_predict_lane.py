"""The predict lane in front of Litestar: errors, parameters and batching."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from daemon_support import HOST, MODEL, row
from prometheus_client.parser import text_string_to_metric_families

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
    assert wrong_method.json()["error"] == "Method Not Allowed"

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
    # Litestar answers a path the lane does not serve.
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
