"""Rejected requests of a real daemon: the response and the log line."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from daemon_support import MODEL, row

HUGE_CHARACTERS = 200_000
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
    assert body["error"].endswith(f"... ({HUGE_CHARACTERS + 6} characters)")
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
