"""Predictions over HTTP: JSON and Arrow, limits, micro-batching, schema, metrics."""

from __future__ import annotations

import json
import math
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pyarrow as pa
from daemon_support import HOST, MODEL, logged_rows, row
from prometheus_client.parser import text_string_to_metric_families

ARROW = "application/vnd.apache.arrow.stream"
PREDICT = f"/v1/models/{MODEL}/predict"


def arrow_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def close(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(a, b, abs_tol=1e-6)


def test_json_round_trip_logs_every_row(start_daemon: Any) -> None:
    daemon = start_daemon()
    rows = [row(i) for i in range(5)]
    response = httpx.post(daemon.base + PREDICT, json={"rows": rows})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == MODEL
    assert body["version"] == 1
    assert len(body["predictions"]) == 5
    for prediction in body["predictions"]:
        assert prediction["label"] in (0, 1)
        assert math.isclose(
            sum(prediction["probabilities"].values()), 1.0, abs_tol=1e-5
        )
    assert daemon.stop() == 0
    logged = logged_rows(daemon.home)
    assert sorted(logged) == [(body["request_id"], i) for i in range(5)]


def test_arrow_round_trip_matches_json(start_daemon: Any) -> None:
    daemon = start_daemon()
    rows = [row(i) for i in range(50)]
    rows[3]["x1"] = None
    table = pa.Table.from_pylist(rows)
    response = httpx.post(
        daemon.base + PREDICT,
        content=arrow_bytes(table),
        headers={"content-type": ARROW},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == ARROW
    assert response.headers["x-model-version"] == "1"
    scored = pa.ipc.open_stream(response.content).read_all()
    assert scored.num_rows == 50
    expected = httpx.post(daemon.base + PREDICT, json={"rows": rows}).json()
    for index, prediction in enumerate(expected["predictions"]):
        assert scored.column("prediction")[index].as_py() == prediction["label"]
        probability = scored.column("probability_1")[index].as_py()
        assert close(probability, prediction["probabilities"]["1"])
    assert daemon.stop() == 0
    assert len(logged_rows(daemon.home)) == 100


def test_rows_above_limit_get_413(start_daemon: Any) -> None:
    daemon = start_daemon(server={"max_rows": 10})
    response = httpx.post(
        daemon.base + PREDICT, json={"rows": [row(i) for i in range(11)]}
    )
    assert response.status_code == 413
    assert response.json()["limit"] == 10
    assert "above the limit of 10 ([server] max_rows)" in response.json()["error"]
    table = pa.Table.from_pylist([row(i) for i in range(11)])
    response = httpx.post(
        daemon.base + PREDICT,
        content=arrow_bytes(table),
        headers={"content-type": ARROW},
    )
    assert response.status_code == 413
    ok = httpx.post(daemon.base + PREDICT, json={"rows": [row(i) for i in range(10)]})
    assert ok.status_code == 200


def _body_of_size(size: int) -> bytes:
    """Return a valid one-row JSON body padded with spaces to `size` bytes."""
    body = json.dumps({"rows": [row(0)]}).encode()
    return body[:-1] + b" " * (size - len(body)) + body[-1:]


def test_body_limit_content_length_and_chunked(start_daemon: Any) -> None:
    limit = 4096
    daemon = start_daemon(server={"max_body_bytes": limit})
    under = httpx.post(daemon.base + PREDICT, content=_body_of_size(limit))
    assert under.status_code == 200
    over = httpx.post(daemon.base + PREDICT, content=_body_of_size(limit + 1))
    assert over.status_code == 413
    assert over.json()["limit"] == limit
    assert f"{limit + 1} bytes" in over.json()["error"]

    def chunks(total: int):
        body = _body_of_size(total)
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    chunked_under = httpx.post(daemon.base + PREDICT, content=chunks(limit))
    assert chunked_under.status_code == 200
    chunked_over = httpx.post(daemon.base + PREDICT, content=chunks(limit * 50))
    assert chunked_over.status_code == 413
    assert chunked_over.json()["limit"] == limit

    # The ingest route reads its body through Litestar's request, with the
    # same limit.
    rows = daemon.base + "/v1/datasets/points/rows"
    rows_over = httpx.post(rows, content=_body_of_size(limit + 1))
    assert rows_over.status_code == 413
    assert rows_over.json()["dataset"] == "points"
    rows_chunked = httpx.post(rows, content=chunks(limit * 50))
    assert rows_chunked.status_code == 413


def test_chunked_body_rejected_before_the_end(start_daemon: Any) -> None:
    """The daemon rejects a chunked body above the limit before the body ends."""
    limit = 4096
    daemon = start_daemon(server={"max_body_bytes": limit})
    with socket.create_connection((HOST, daemon.port), timeout=10) as sock:
        sock.sendall(
            f"POST {PREDICT} HTTP/1.1\r\nHost: {HOST}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"x" * 2000
        for _ in range(4):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        # The body never ends; the response must still come.
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413")


def test_concurrent_requests_match_their_rows(start_daemon: Any) -> None:
    daemon = start_daemon(
        server={
            "micro_batch": True,
            "micro_batch_max_wait_ms": 5.0,
            "session_threads": 1,
        }
    )
    rows = [row(i) for i in range(96)]
    expected = httpx.post(daemon.base + PREDICT, json={"rows": rows}).json()[
        "predictions"
    ]

    local = threading.local()
    clients: list[httpx.Client] = []

    def one(index: int) -> tuple[int, dict[str, Any]]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=daemon.base)
            clients.append(local.client)
        response = local.client.post(PREDICT, json={"rows": [rows[index]]})
        assert response.status_code == 200
        return index, response.json()["predictions"][0]

    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(one, range(len(rows))))
    finally:
        for client in clients:
            client.close()
    for index, prediction in results:
        assert prediction["label"] == expected[index]["label"], index
        assert close(
            prediction["probabilities"]["1"], expected[index]["probabilities"]["1"]
        ), index


def test_micro_batching_off_still_predicts(start_daemon: Any) -> None:
    daemon = start_daemon(server={"micro_batch": False})
    response = httpx.post(daemon.base + PREDICT, json={"rows": [row(1), row(2)]})
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 2


def test_bad_requests_keep_their_errors(start_daemon: Any) -> None:
    daemon = start_daemon()
    unknown = httpx.post(
        daemon.base + "/v1/models/nope/predict", json={"rows": [row(0)]}
    )
    assert unknown.status_code == 404
    assert "nope" in unknown.json()["error"]
    empty = httpx.post(daemon.base + PREDICT, content=b"")
    assert empty.status_code == 400
    missing = httpx.post(daemon.base + PREDICT, json={"rows": [row(0), {"x1": 1.0}]})
    assert missing.status_code == 422
    assert missing.json()["row"] == 1
    assert missing.json()["column"] == "x2"
    bad_arrow = httpx.post(
        daemon.base + PREDICT, content=b"not arrow", headers={"content-type": ARROW}
    )
    assert bad_arrow.status_code == 400
    no_rows = pa.Table.from_pylist([row(0)]).slice(0, 0)
    empty_arrow = httpx.post(
        daemon.base + PREDICT,
        content=arrow_bytes(no_rows),
        headers={"content-type": ARROW},
    )
    assert empty_arrow.status_code == 422
    assert "has no rows" in empty_arrow.json()["error"]


def test_openapi_lists_model_input_schema(start_daemon: Any) -> None:
    daemon = start_daemon()
    document = httpx.get(daemon.base + "/schema/openapi.json").json()
    assert PREDICT.replace(MODEL, "{name}") in document["paths"]
    schema = document["components"]["schemas"][f"{MODEL}Row"]
    assert schema["properties"]["x1"]["type"] == ["number", "null"]
    assert schema["properties"]["color"]["type"] == ["string", "null"]
    assert schema["required"] == ["color", "x1", "x2"]
    operation = document["paths"][PREDICT.replace(MODEL, "{name}")]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["rows"]["items"] == {
        "$ref": f"#/components/schemas/{MODEL}Row"
    }
    assert "application/vnd.apache.arrow.stream" in operation["requestBody"]["content"]
    assert {"200", "400", "404", "413", "422"} <= set(operation["responses"])


def test_metrics_parse_and_count_requests(start_daemon: Any) -> None:
    daemon = start_daemon()
    for index in range(3):
        httpx.post(daemon.base + PREDICT, json={"rows": [row(index), row(index + 1)]})
    httpx.post(daemon.base + PREDICT, json={"rows": [{"x1": 1}]})
    response = httpx.get(daemon.base + "/metrics")
    assert response.headers["content-type"] == (
        "text/plain; version=0.0.4; charset=utf-8"
    )
    text = response.text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name in (
        "appliance_requests",
        "appliance_request_duration_seconds",
        "appliance_rows_predicted",
        "appliance_prediction_log_queue_rows",
        "appliance_prediction_log_spilled_rows",
        "appliance_prediction_journal_failed_writes",
        "appliance_model_load_seconds",
        "process_resident_memory_bytes",
    ):
        assert name in families, name
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families.values()
        for s in family.samples
    }
    labels = (("model", MODEL), ("status", "200"), ("version", "1"))
    assert samples[("appliance_requests_total", labels)] == 3
    assert samples[("appliance_prediction_journal_failed_writes_total", ())] == 0
    rejected = (("model", MODEL), ("status", "422"), ("version", "1"))
    assert samples[("appliance_requests_total", rejected)] == 1
    rows = (("model", MODEL), ("version", "1"))
    assert samples[("appliance_rows_predicted_total", rows)] == 6
    assert samples[("appliance_request_duration_seconds_count", rows)] == 3
    assert samples[("process_resident_memory_bytes", ())] > 0


def test_metrics_count_arrow_session_batch(start_daemon: Any) -> None:
    daemon = start_daemon()
    table = pa.Table.from_pylist([row(i) for i in range(7)])
    response = httpx.post(
        daemon.base + PREDICT,
        content=arrow_bytes(table),
        headers={"content-type": ARROW},
    )
    text = httpx.get(daemon.base + "/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    assert response.status_code == 200
    model = (("model", MODEL),)
    assert samples[("appliance_session_batch_rows_count", model)] == 1
    assert samples[("appliance_session_batch_rows_sum", model)] == 7
