"""Labels for predictions made over Arrow, and the feedback and 404 metrics."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pyarrow as pa
import pytest
from daemon_support import MODEL, logged_rows, row
from prometheus_client.parser import text_string_to_metric_families
from test_feedback import DRIFT, FEEDBACK, PREDICT, predict, stored_labels

ARROW = "application/vnd.apache.arrow.stream"


def predict_arrow(daemon: Any, first: int, count: int) -> tuple[str, pa.Table]:
    """Predict rows over Arrow; return the request id and the output table."""
    table = pa.Table.from_pylist([row(first + i) for i in range(count)])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    response = httpx.post(
        daemon.base + PREDICT,
        content=sink.getvalue().to_pybytes(),
        headers={"content-type": ARROW},
    )
    assert response.status_code == 200, response.text
    output = pa.ipc.open_stream(response.content).read_all()
    return response.headers["x-request-id"], output


def predict_rows(daemon: Any, indexes: list[int]) -> list[dict[str, Any]]:
    """Predict the rows `row(i)` of `indexes` as JSON; return the predictions."""
    rows = [row(i) for i in indexes]
    response = httpx.post(daemon.base + PREDICT, json={"rows": rows})
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def observed_rows(daemon: Any, rows: int) -> int:
    """Wait until the monitors have seen `rows` rows; return the rows seen.

    The monitors pause every few rows to let requests run, so on a busy
    machine 100,000 rows took them 15 s.
    """
    deadline = time.monotonic() + 120
    while True:
        seen = httpx.get(daemon.base + DRIFT).json()["stream"]["rows"]
        if seen >= rows or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def samples(daemon: Any) -> dict[tuple[str, tuple], float]:
    text = httpx.get(daemon.base + "/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def wait_written(daemon: Any, rows: int) -> None:
    """Wait until the log writer has inserted `rows` rows into DuckDB."""
    name = ("appliance_prediction_log_written_rows_total", ())
    deadline = time.monotonic() + 20
    while samples(daemon)[name] < rows:
        assert time.monotonic() < deadline, "prediction log not written in 20 s"
        time.sleep(0.05)


def test_arrow_labels_sent_at_once(start_daemon: Any) -> None:
    daemon = start_daemon()
    statuses = []
    for attempt in range(10):
        request_id, _ = predict_arrow(daemon, attempt * 2, 2)
        label = {"request_id": request_id, "row": 1, "label": 1}
        response = httpx.post(daemon.base + FEEDBACK, json={"labels": [label]})
        statuses.append((response.status_code, response.json().get("stored")))

    assert statuses == [(200, 1)] * 10


def test_arrow_and_json_labels_after_restart(start_daemon: Any) -> None:
    daemon = start_daemon()
    arrow_id, output = predict_arrow(daemon, 0, 3)
    json_body = predict(daemon, 3, 2)
    assert daemon.stop() == 0

    daemon = start_daemon()
    labels = [
        {"request_id": arrow_id, "row": 2, "label": 0},
        {"request_id": json_body["request_id"], "row": 0, "label": 1},
        {"request_id": arrow_id, "row": 0, "label": 1},
    ]
    response = httpx.post(daemon.base + FEEDBACK, json={"labels": labels})
    live = httpx.get(daemon.base + f"/v1/models/{MODEL}/drift").json()["stream"]
    assert daemon.stop() == 0
    stored = stored_labels(daemon.home)

    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 3
    assert live["labels"] == 3
    assert sorted((r["request_id"], r["row_index"], r["label"]) for r in stored) == (
        sorted((item["request_id"], item["row"], item["label"]) for item in labels)
    )
    assert output.column("probability_1").null_count == 0


def test_arrow_labels_past_recent_rows(start_daemon: Any) -> None:
    # One row is kept in memory, and the newest request whole, so the 3-row
    # request is joined from DuckDB once the next one has evicted it.
    daemon = start_daemon(monitoring={"recent_rows": 1})
    request_id, _ = predict_arrow(daemon, 0, 3)
    predict_arrow(daemon, 3, 1)
    wait_written(daemon, 4)

    labels = [{"request_id": request_id, "row": i, "label": i % 2} for i in range(3)]
    response = httpx.post(daemon.base + FEEDBACK, json={"labels": labels})
    assert daemon.stop() == 0

    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 3
    assert len(stored_labels(daemon.home)) == 3


def test_metrics_count_feedback_and_404(start_daemon: Any) -> None:
    daemon = start_daemon()
    body = predict(daemon, 0, 2)
    rid = body["request_id"]
    first = [{"request_id": rid, "row": 0, "label": 1}]
    again = [*first, {"request_id": rid, "row": 1, "label": 0}]
    unknown = [
        {"request_id": rid, "row": 1, "label": 0},
        {"request_id": "feedcafe", "row": 0, "label": 0},
    ]
    codes = [
        httpx.post(daemon.base + FEEDBACK, json={"labels": labels}).status_code
        for labels in (first, again, unknown)
    ]
    malformed = httpx.post(daemon.base + FEEDBACK, content=b"{")
    missing_version = httpx.post(
        daemon.base + PREDICT, params={"version": 99}, json={"rows": [row(0)]}
    )
    for name in ("nope", "other"):
        httpx.post(daemon.base + f"/v1/models/{name}/predict", json={"rows": []})
    found = samples(daemon)

    def labels(outcome: str) -> float:
        key = (("model", MODEL), ("outcome", outcome))
        return found[("appliance_feedback_labels_total", key)]

    def requests(status: str) -> float:
        key = (("model", MODEL), ("status", status))
        return found[("appliance_feedback_requests_total", key)]

    def predicts(model: str, version: str) -> float:
        key = (("model", model), ("status", "404"), ("version", version))
        return found.get(("appliance_requests_total", key), 0.0)

    assert codes == [200, 200, 422]
    assert malformed.status_code == 400
    assert labels("stored") == 2
    assert labels("repeated") == 1
    assert labels("rejected") == 2
    assert requests("200") == 2
    assert requests("422") == 1
    assert requests("400") == 1
    assert missing_version.status_code == 404
    assert predicts(MODEL, "") == 1
    assert predicts(MODEL, "99") == 0
    assert predicts("", "") == 2
    assert not [k for k in found if ("model", "nope") in k[1]]


def test_arrow_large_batch_logged_labelled_monitored(start_daemon: Any) -> None:
    # More rows than [monitoring] recent_rows (10000) and than one
    # onnxruntime run takes (RUN_CHUNK_ROWS).
    count = 100_000
    daemon = start_daemon(server={"max_rows": count})
    request_id, output = predict_arrow(daemon, 0, count)
    labels = [
        {"request_id": request_id, "row": 70_000, "label": 1},
        {"request_id": request_id, "row": count - 1, "label": 0},
    ]
    labelled = httpx.post(daemon.base + FEEDBACK, json={"labels": labels})
    checked = [0, 65_535, 65_536, count - 1]
    as_json = predict_rows(daemon, checked)
    observed = observed_rows(daemon, count + len(checked))
    assert daemon.stop() == 0
    logged = [i for rid, i in logged_rows(daemon.home) if rid == request_id]

    assert output.num_rows == count
    assert labelled.status_code == 200, labelled.text
    assert labelled.json()["stored"] == 2
    assert observed == count + len(checked)
    assert sorted(logged) == list(range(count))
    for index, predicted in zip(checked, as_json, strict=True):
        probability = output.column("probability_1")[index].as_py()
        assert probability == pytest.approx(predicted["probabilities"]["1"])
