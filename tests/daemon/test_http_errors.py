"""Rejected requests of a real daemon: the response, the log line and the
query parameters of the prediction log and dataset version routes."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
from daemon_support import MODEL, row, run_cli

HUGE_CHARACTERS = 200_000
LOG_TIMEOUT_SECONDS = 30.0
QUOTED = r'"(?:[^"\\]|\\.)*"'
"""A JSON string, as the log writes a field that may contain spaces."""
REJECTED_LINE = re.compile(
    r"request rejected request_id=(?P<request_id>[0-9a-f]{32}) "
    rf"method=(?P<method>\S+) path=(?P<path>{QUOTED}) status=(?P<status>\d+) "
    rf"error=(?P<error>{QUOTED})$"
)


def rejected_lines(log: str) -> dict[str, dict[str, Any]]:
    """Return the fields of each ``request rejected`` log line, by request id."""
    found = {}
    for line in log.splitlines():
        match = REJECTED_LINE.search(line)
        if match is not None:
            fields = match.groupdict()
            fields["path"] = json.loads(fields["path"])
            fields["error"] = json.loads(fields["error"])
            fields["length"] = len(line)
            found[fields["request_id"]] = fields
    return found


def test_huge_value_cut_in_response_and_log(start_daemon: Any) -> None:
    daemon = start_daemon()
    huge = "SECRET" + "x" * HUGE_CHARACTERS
    response = httpx.post(
        f"{daemon.base}/v1/models/{MODEL}/predict",
        json={"rows": [{**row(0), "x1": huge}]},
    )
    body = response.json()
    lines = rejected_lines(daemon.log())

    assert response.status_code == 422
    assert len(response.content) < 1000
    assert body["column"] == "x1"
    assert f"xxx... ({HUGE_CHARACTERS + 6} characters);" in body["error"]
    assert "'SECRETxxx" in body["error"]
    line = lines[body["request_id"]]
    assert line["length"] < 1000
    assert line["method"] == "POST"
    assert line["path"] == f"/v1/models/{MODEL}/predict"
    assert line["status"] == "422"
    assert line["error"] == body["error"]


def test_rejection_log_quotes_error(start_daemon: Any) -> None:
    daemon = start_daemon()
    # A value with a space, quotes and a line break, which would end an
    # unquoted key=value field early.
    value = 'a "b"\nerror=forged'
    response = httpx.post(
        f"{daemon.base}/v1/models/{MODEL}/predict",
        json={"rows": [{**row(0), "x2": value}]},
    )
    body = response.json()
    line = rejected_lines(daemon.log())[body["request_id"]]

    assert response.status_code == 422
    assert line["error"] == body["error"]
    assert repr(value) in line["error"]


def test_litestar_error_has_request_id(start_daemon: Any) -> None:
    daemon = start_daemon()
    response = httpx.get(f"{daemon.base}/v1/predictions", params={"limit": "x"})

    assert response.status_code == 400
    assert re.fullmatch("[0-9a-f]{32}", response.json()["request_id"])
    assert response.json()["parameters"] == ["limit"]


def test_unknown_route_names_itself(start_daemon: Any) -> None:
    daemon = start_daemon()

    text_id = httpx.post(f"{daemon.base}/v1/alerts/abc/acknowledge")
    method = httpx.delete(f"{daemon.base}/v1/alerts")

    assert text_id.status_code == 404
    assert text_id.json()["error"] == (
        "Not Found: no route POST /v1/alerts/abc/acknowledge; GET /schema lists "
        "the routes and their parameters"
    )
    assert method.status_code == 405
    assert "/v1/alerts takes no DELETE request;" in method.json()["error"]


def test_prediction_log_times_as_cli(start_daemon: Any) -> None:
    daemon = start_daemon(predictions={"flush_seconds": 0.05})
    predicted = httpx.post(
        f"{daemon.base}/v1/models/{MODEL}/predict", json={"rows": [row(3)]}
    )
    request_id = predicted.json()["request_id"]
    rows = wait_for_rows(daemon.base, request_id)
    responses = {
        text: httpx.get(f"{daemon.base}/v1/predictions", params={"since": text})
        for text in ("2000-01-01T08:32", "2000-01-01", "2000-01-01T08:32:00+02:00")
    }
    invalid = httpx.get(f"{daemon.base}/v1/predictions", params={"until": "yesterday"})
    online = run_cli(
        daemon.config, "predictions", "query", "--since", "2000-01-01T08:32", "--json"
    )

    for text, response in responses.items():
        assert response.status_code == 200, (text, response.text)
        assert [r["request_id"] for r in response.json()["predictions"]] == [request_id]
    assert rows[0]["input"] == row(3)
    assert rows[0]["output"] == predicted.json()["predictions"][0]
    assert invalid.status_code == 422
    assert invalid.json()["parameters"] == ["until"]
    assert invalid.json()["error"].startswith(
        "query parameter 'until': invalid time 'yesterday'; use ISO 8601 such as "
        "2026-01-31, 2026-01-31T08:00"
    )
    assert online.returncode == 0, online.stderr
    assert json.loads(online.stdout)["input"] == row(3)


def wait_for_rows(base: str, request_id: str) -> list[dict[str, Any]]:
    """Return the logged rows of `request_id`, once the log has written them."""
    deadline = time.monotonic() + LOG_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        response = httpx.get(f"{base}/v1/predictions")
        found = [
            r for r in response.json()["predictions"] if r["request_id"] == request_id
        ]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"request {request_id} not logged")


def test_dataset_version_parameters(start_daemon: Any) -> None:
    daemon = start_daemon()
    url = f"{daemon.base}/v1/admin/dataset-version"
    latest = httpx.get(url, params={"reference": "points"})
    version = latest.json()["version"]["version"]
    same = {
        "dataset and latest": {"dataset": "points", "reference": "latest"},
        "dataset alone": {"dataset": "points"},
        "dataset and prefix": {"dataset": "points", "reference": version[:6]},
        "dataset and full reference": {
            "dataset": "points",
            "reference": f"points@{version}",
        },
    }
    found = {name: httpx.get(url, params=params) for name, params in same.items()}
    other = httpx.get(url, params={"dataset": "points", "reference": "other@1"})
    unknown = httpx.get(url, params={"dataset": "nope", "reference": "latest"})
    neither = httpx.get(url)

    assert latest.status_code == 200, latest.text
    for name, response in found.items():
        assert response.status_code == 200, (name, response.text)
        assert response.json()["version"]["version"] == version, name
    assert other.status_code == 422
    assert other.json()["error"] == (
        "reference 'other@1' names dataset 'other', but dataset is 'points'; send "
        "the version alone as reference, or leave out dataset"
    )
    assert unknown.status_code == 404
    assert "dataset 'nope' has no version" in unknown.json()["error"]
    assert neither.status_code == 422
    assert neither.json()["parameters"] == ["reference", "dataset"]


def test_admin_body_above_limit_413(start_daemon: Any) -> None:
    daemon = start_daemon()
    padding = " " * 2_000_000
    admin = httpx.post(
        f"{daemon.base}/v1/admin/erase",
        content=b'{"dataset": "points"' + padding.encode() + b"}",
        headers={"Content-Type": "application/json"},
    )
    rows = httpx.post(
        f"{daemon.base}/v1/models/{MODEL}/predict",
        content=json.dumps({"rows": [row(0)]}).encode() + padding.encode(),
        headers={"Content-Type": "application/json"},
    )

    assert admin.status_code == 413
    assert admin.json()["limit"] == 1_000_000
    assert "POST /v1/admin/erase is above the limit" in admin.json()["error"]
    assert rows.status_code == 200


def test_retrain_body_above_limit_413(start_daemon: Any) -> None:
    daemon = start_daemon()
    response = httpx.post(
        f"{daemon.base}/v1/models/{MODEL}/retrain",
        content=b'{"trigger": "manual"' + b" " * 20_000 + b"}",
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert response.json()["limit"] == 10_000
    assert "20021 bytes, above the limit of 10000" in response.json()["error"]
