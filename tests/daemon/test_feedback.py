"""Label feedback, drift and alert routes of a real daemon on 127.0.0.1."""

from __future__ import annotations

import time
from typing import Any

import httpx
from daemon_support import MODEL, row

PREDICT = f"/v1/models/{MODEL}/predict"
FEEDBACK = f"/v1/models/{MODEL}/feedback"
DRIFT = f"/v1/models/{MODEL}/drift"


def predict(daemon: Any, first: int, count: int) -> dict:
    rows = [row(first + i) for i in range(count)]
    response = httpx.post(daemon.base + PREDICT, json={"rows": rows})
    assert response.status_code == 200
    return response.json()


def stream(daemon: Any, rows: int) -> dict:
    deadline = time.monotonic() + 20
    while True:
        body = httpx.get(daemon.base + DRIFT).json()["stream"]
        if body["rows"] >= rows or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_feedback_out_of_order_and_unknown(start_daemon: Any) -> None:
    daemon = start_daemon()
    first, second = predict(daemon, 0, 3), predict(daemon, 3, 2)
    labels = [
        {"request_id": second["request_id"], "row": 1, "label": p["label"]}
        for p in second["predictions"][1:]
    ]
    labels += [
        {"request_id": first["request_id"], "row": i, "label": p["label"]}
        for i, p in reversed(list(enumerate(first["predictions"])))
    ]
    unknown = [
        {"request_id": first["request_id"], "row": 0, "label": 0},
        {"request_id": "feedcafe", "row": 0, "label": 0},
    ]

    accepted = httpx.post(daemon.base + FEEDBACK, json={"labels": labels})
    rejected = httpx.post(daemon.base + FEEDBACK, json={"labels": unknown})
    bad_row = httpx.post(
        daemon.base + FEEDBACK,
        json={"labels": [{"request_id": first["request_id"], "row": 7, "label": 0}]},
    )
    after = stream(daemon, 5)
    alerts = httpx.get(daemon.base + "/v1/alerts", params={"status": "open"})

    assert accepted.status_code == 200
    assert accepted.json() == {
        "model": MODEL,
        "labels": 4,
        "stored": 4,
        "repeated": [],
        "events": 0,
    }
    assert rejected.status_code == 422
    assert "feedcafe row 0" in rejected.json()["error"]
    assert rejected.json()["unknown"] == [{"request_id": "feedcafe", "row": 0}]
    assert bad_row.status_code == 422
    assert after["rows"] == 5
    assert after["labels"] == 4
    assert after["live"]["labels"] == 4
    assert alerts.status_code == 200
    assert alerts.json() == {"alerts": []}


def test_feedback_after_restart_continues(start_daemon: Any) -> None:
    daemon = start_daemon()
    earlier = predict(daemon, 10, 4)
    stream(daemon, 4)
    assert daemon.stop() == 0

    daemon = start_daemon()
    restored = httpx.get(daemon.base + DRIFT).json()["stream"]
    late = httpx.post(
        daemon.base + FEEDBACK,
        json={
            "labels": [
                {"request_id": earlier["request_id"], "row": 2, "label": p["label"]}
                for p in earlier["predictions"][2:3]
            ]
        },
    )
    not_a_class = httpx.post(
        daemon.base + FEEDBACK,
        json={
            "labels": [{"request_id": earlier["request_id"], "row": 0, "label": "x"}]
        },
    )

    assert restored["version"] == 1
    assert restored["rows"] == 4
    assert late.status_code == 200
    assert late.json()["labels"] == 1
    assert not_a_class.status_code == 422
    assert "is not a class of model" in not_a_class.json()["error"]
    assert httpx.get(daemon.base + DRIFT).json()["stream"]["labels"] == 1


def test_drift_check_job_records_scores(start_daemon: Any) -> None:
    daemon = start_daemon(monitoring={"drift_interval_seconds": 1, "min_samples": 50})
    predict(daemon, 0, 150)

    deadline = time.monotonic() + 30
    latest: list = []
    while not latest and time.monotonic() < deadline:
        time.sleep(0.2)
        latest = httpx.get(daemon.base + DRIFT).json()["latest"]
    opened = httpx.get(daemon.base + "/v1/alerts", params={"status": "open"})
    first_id = opened.json()["alerts"][0]["id"]
    acked = httpx.post(daemon.base + f"/v1/alerts/{first_id}/acknowledge")
    unknown = httpx.post(daemon.base + "/v1/alerts/999/acknowledge")
    assert daemon.stop() == 0

    assert sorted(r["feature"] for r in latest) == ["color", "x1", "x2"]
    assert all(r["status"] in ("ok", "drift") for r in latest)
    assert all(r["current_rows"] == 150 for r in latest)
    assert (daemon.home / "jobs.duckdb").exists()
    assert "scheduler started jobs=drift:demo" in daemon.log()
    assert opened.status_code == 200
    assert acked.status_code == 200
    assert acked.json()["status"] == "acknowledged"
    assert unknown.status_code == 404
    assert "alert 999 does not exist" in unknown.json()["error"]


def test_feedback_labels_stored_once(start_daemon: Any) -> None:
    daemon = start_daemon()
    first = predict(daemon, 20, 3)
    rid = first["request_id"]
    labels = [{"request_id": rid, "row": i, "label": 1} for i in range(2)]
    sent = httpx.post(daemon.base + FEEDBACK, json={"labels": labels})
    again = httpx.post(
        daemon.base + FEEDBACK,
        json={
            "labels": [
                {"request_id": rid, "row": 0, "label": 0},
                {"request_id": rid, "row": 2, "label": 0},
                {"request_id": rid, "row": 2, "label": 1},
            ]
        },
    )
    live = httpx.get(daemon.base + DRIFT).json()["stream"]
    assert daemon.stop() == 0
    stored = stored_labels(daemon.home)

    assert sent.json()["stored"] == 2
    assert again.status_code == 200
    assert again.json()["stored"] == 1
    assert again.json()["repeated"] == [
        {"request_id": rid, "row": 0, "label": 1},
        {"request_id": rid, "row": 2, "label": 0},
    ]
    assert live["labels"] == 3
    assert [(r["row_index"], r["label"]) for r in stored] == [(0, 1), (1, 1), (2, 0)]
    assert all(r["version"] == 1 for r in stored)
    assert all(r["event_time"] is None for r in stored)


def stored_labels(home: Any) -> list[dict]:
    from appliance.storage import Catalog, list_labels

    with Catalog(home, read_only=True) as catalog:
        rows = list_labels(catalog, MODEL)
    return sorted(rows, key=lambda r: r["row_index"])


def test_feedback_finds_rows_not_yet_logged(start_daemon: Any) -> None:
    # No recent rows in memory and a writer that waits 30 s, so the labels
    # can join only the entries the prediction log has not inserted yet.
    daemon = start_daemon(
        monitoring={"recent_rows": 0}, predictions={"flush_seconds": 30.0}
    )
    answer = predict(daemon, 20, 3)
    # The monitor keeps only the newest request, so this one evicts the first.
    predict(daemon, 23, 1)
    labels = [
        {"request_id": answer["request_id"], "row": i, "label": p["label"]}
        for i, p in enumerate(answer["predictions"])
    ]

    response = httpx.post(daemon.base + FEEDBACK, json={"labels": labels})
    again = httpx.post(daemon.base + FEEDBACK, json={"labels": labels[:1]})
    assert daemon.stop() == 0

    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 3
    assert again.status_code == 200
    assert again.json()["stored"] == 0


def test_feedback_for_spilled_rows_says_retry(start_daemon: Any) -> None:
    # A queue of 2 rows spills the rest, and the writer waits 30 s before it
    # takes a batch, so the spilled rows stay out of the table meanwhile.
    daemon = start_daemon(
        monitoring={"recent_rows": 0},
        predictions={"queue_max_rows": 2, "batch_rows": 1000, "flush_seconds": 30.0},
    )
    answers = [predict(daemon, index, 1) for index in range(6)]
    # The monitor keeps only the newest request, so the one before it is in
    # the spill file only.
    spilled = answers[-2]
    labels = [{"request_id": spilled["request_id"], "row": 0, "label": 1}]

    response = httpx.post(daemon.base + FEEDBACK, json={"labels": labels})
    assert daemon.stop() == 0

    assert response.status_code == 422
    message = response.json()["error"]
    assert "1 of 1 labels for model 'demo' match no logged prediction" in message
    assert "The prediction log has rows in a spill file" in message
    assert "send the labels again in a minute" in message
