"""The streaming monitors' metrics and their on/off switch in a real daemon."""

from __future__ import annotations

import time
from typing import Any

import httpx
from daemon_support import MODEL, row
from prometheus_client.parser import text_string_to_metric_families

PREDICT = f"/v1/models/{MODEL}/predict"
DRIFT = f"/v1/models/{MODEL}/drift"


def monitoring_samples(daemon: Any) -> dict[str, float]:
    text = httpx.get(daemon.base + "/metrics").text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("appliance_monitoring_")
        for sample in family.samples
    }


def predict_rows(daemon: Any, count: int) -> dict:
    rows = [row(i) for i in range(count)]
    response = httpx.post(daemon.base + PREDICT, json={"rows": rows})
    assert response.status_code == 200
    return response.json()


def test_streaming_on_metrics_count_rows(start_daemon: Any) -> None:
    daemon = start_daemon()
    predict_rows(daemon, 7)
    deadline = time.monotonic() + 20
    samples = monitoring_samples(daemon)
    while samples["appliance_monitoring_observed_rows_total"] < 7:
        assert time.monotonic() < deadline, samples
        time.sleep(0.05)
        samples = monitoring_samples(daemon)

    assert samples["appliance_monitoring_observed_rows_total"] == 7
    assert samples["appliance_monitoring_queue_requests"] == 0
    assert samples["appliance_monitoring_dropped_requests_total"] == 0
    assert samples["appliance_monitoring_cpu_seconds_total"] > 0
    assert httpx.get(daemon.base + DRIFT).json()["stream"]["rows"] == 7


def test_streaming_off_keeps_labels(start_daemon: Any) -> None:
    daemon = start_daemon(monitoring={"streaming": False})
    body = predict_rows(daemon, 4)
    labels = [
        {"request_id": body["request_id"], "row": i, "label": p["label"]}
        for i, p in enumerate(body["predictions"])
    ]

    accepted = httpx.post(
        daemon.base + f"/v1/models/{MODEL}/feedback", json={"labels": labels}
    )
    time.sleep(0.2)
    samples = monitoring_samples(daemon)
    stream = httpx.get(daemon.base + DRIFT).json()["stream"]

    assert accepted.status_code == 200
    assert accepted.json()["stored"] == 4
    assert samples["appliance_monitoring_observed_rows_total"] == 0
    assert samples["appliance_monitoring_queue_requests"] == 0
    assert stream["rows"] == 0
    assert stream["labels"] == 4
