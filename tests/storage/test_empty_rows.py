"""Rows of empty objects (``{}``) sent over HTTP to a dataset without columns.

A dataset without a contract and without a version gets its columns from
its first flushed rows, so a request of ``{}`` rows only is rejected with
422 before it is buffered. Every row acknowledged with 202 reaches a version.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import Daemon, start_daemon, stop_daemon

CONFIG = """
[storage]
home = "home"

[ingest]
flush_rows = 1000
flush_seconds = 0.2

[datasets.events]
keep_versions = 10

[datasets.sensors.contract.columns.value]
type = "DOUBLE"
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    running = start_daemon(config, tmp_path / "home", tmp_path / "daemon.log")
    try:
        yield running
    finally:
        stop_daemon(running)


def _send(client: httpx.Client, dataset: str, rows: list) -> httpx.Response:
    return client.post(f"/v1/datasets/{dataset}/rows", json={"rows": rows})


def _flushed(client: httpx.Client, dataset: str, flushes: int) -> dict:
    """Wait until `dataset` had `flushes` flushes; return its buffer status."""
    deadline = time.monotonic() + 30
    while True:
        status = client.get(f"/v1/datasets/{dataset}/rows").json()
        if status["flushes"] >= flushes or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def _row_count(client: httpx.Client, dataset: str) -> int:
    versions = client.get("/v1/admin/datasets").json()["datasets"]
    return next(v["row_count"] for v in versions if v["dataset"] == dataset)


def test_empty_rows_without_columns_rejected(daemon: Daemon) -> None:
    with httpx.Client(base_url=daemon.base_url, trust_env=False, timeout=30) as client:
        rejected = _send(client, "events", [{}, {}])
        time.sleep(0.5)
        before = client.get("/v1/datasets/events/rows").json()
        mixed = _send(client, "events", [{}, {"id": 1}])
        after_first = _flushed(client, "events", 1)
        empty_later = _send(client, "events", [{}])
        status = _flushed(client, "events", 2)
        rows = _row_count(client, "events")

    assert rejected.status_code == 422
    body = rejected.json()
    assert body["dataset"] == "events"
    assert body["error"].startswith(
        "dataset 'events' has no columns yet, because it has no contract in "
        "[datasets.events] and no version, and every row sent is an empty "
        "object ({}). Send rows with their values as keys"
    )
    assert 'such as {"rows": [{"id": 1}]}' in body["error"]
    assert "[datasets.events.contract.columns]" in body["error"]
    assert before["buffered"] == 0
    assert before["flushes"] == 0
    assert mixed.status_code == 202, mixed.text
    assert after_first["flushed_rows"] == 2
    assert empty_later.status_code == 202, empty_later.text
    assert status["flushes"] == 2
    assert status["flushed_rows"] == 3
    assert status["rejected_segments"] == 0
    assert status["rejected"] == []
    assert rows == 3


def test_empty_rows_with_contract_stored(daemon: Daemon) -> None:
    with httpx.Client(base_url=daemon.base_url, trust_env=False, timeout=30) as client:
        accepted = _send(client, "sensors", [{}, {}])
        status = _flushed(client, "sensors", 1)
        rows = _row_count(client, "sensors")

    assert accepted.status_code == 202, accepted.text
    assert status["flushed_rows"] == 2
    assert status["rejected_segments"] == 0
    assert rows == 2
