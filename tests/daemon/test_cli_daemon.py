"""CLI commands while a daemon runs: they go through its HTTP API."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_support import MODEL, row, run_cli, write_dataset
from prometheus_client.parser import text_string_to_metric_families

PREDICT = f"/v1/models/{MODEL}/predict"


def test_ingest_and_train_through_daemon(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon()
    data = tmp_path / "more_points.csv"
    write_dataset(data, 300, seed=7)

    ingested = run_cli(daemon.config, "ingest", "points", str(data))
    assert ingested.returncode == 0, ingested.stderr
    assert "rows=300 mode=replace accepted=300 quarantined=0 (created)" in (
        ingested.stdout
    )

    trained = run_cli(daemon.config, "train", MODEL)
    assert trained.returncode == 0, trained.stderr
    assert f"model {MODEL} version 2" in trained.stdout
    assert "serving version 2 in the running daemon" in trained.stdout

    served = httpx.get(daemon.base + "/v1/models").json()["models"]
    assert [(m["name"], m["version"]) for m in served] == [(MODEL, 2)]
    predicted = httpx.post(daemon.base + PREDICT, json={"rows": [row(0)]}).json()
    assert predicted["version"] == 2

    listed = run_cli(daemon.config, "models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    versions = [json.loads(line)["version"] for line in listed.stdout.splitlines()]
    assert versions == [2, 1]
    datasets = run_cli(daemon.config, "datasets", "list", "--json")
    assert len(datasets.stdout.splitlines()) == 2
    runs = run_cli(daemon.config, "runs", "list", "--json")
    assert [json.loads(line)["status"] for line in runs.stdout.splitlines()] == [
        "finished",
        "finished",
    ]
    assert "daemon call" not in ingested.stderr
    assert daemon.stop() == 0


def test_bad_ingest_through_daemon_names_file(
    start_daemon: Any, tmp_path: Path
) -> None:
    daemon = start_daemon()
    missing = tmp_path / "absent.csv"
    result = run_cli(daemon.config, "ingest", "points", str(missing))
    assert result.returncode == 1
    assert str(missing) in result.stderr
    assert "file not found" in result.stderr


def test_gzip_ingest_through_daemon(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon()
    plain = tmp_path / "more_points.csv"
    write_dataset(plain, 300, seed=7)
    # Line 5 of the file: a label that is not a number.
    lines = plain.read_bytes().split(b"\n")
    lines[4] = lines[4].rsplit(b",", 1)[0] + b",oops"
    data = tmp_path / "more_points.csv.gz"
    data.write_bytes(gzip.compress(b"\n".join(lines)))
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(data.read_bytes()[:200])

    ingested = run_cli(daemon.config, "ingest", "points", str(data))
    again = run_cli(daemon.config, "ingest", "points", str(data))
    rejected = run_cli(daemon.config, "ingest", "points", str(cut))
    quarantine = run_cli(daemon.config, "datasets", "quarantine", "points", "--json")

    assert ingested.returncode == 0, ingested.stderr
    assert "accepted=299 quarantined=1 (created)" in ingested.stdout
    assert "(unchanged, already ingested)" in again.stdout
    assert rejected.returncode == 1
    assert f"{cut}: the file ends before the end of its compressed data" in (
        rejected.stderr
    )
    [row] = [json.loads(line) for line in quarantine.stdout.splitlines()]
    assert (row["source"], row["line"]) == (str(data), 5)
    assert list((daemon.home / "decompressed").glob("*")) == []
    assert daemon.stop() == 0


def test_predictions_tail_and_query(start_daemon: Any) -> None:
    daemon = start_daemon(predictions={"flush_seconds": 0.1})
    body = httpx.post(daemon.base + PREDICT, json={"rows": [row(i) for i in range(4)]})
    request_id = body.json()["request_id"]
    assert body.status_code == 200
    assert wait_written(daemon, 4)
    tail = run_cli(daemon.config, "predictions", "tail", MODEL, "-n", "3", "--json")
    assert tail.returncode == 0, tail.stderr
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [line["row_index"] for line in lines] == [1, 2, 3]
    assert lines[0]["request_id"] == request_id
    assert lines[0]["input"] == row(1)

    assert daemon.stop() == 0
    offline = run_cli(
        daemon.config,
        "predictions",
        "query",
        "--model",
        MODEL,
        "--version",
        "1",
        "--since",
        "2000-01-01",
        "--json",
    )
    assert offline.returncode == 0, offline.stderr
    assert len(offline.stdout.splitlines()) == 4
    none = run_cli(
        daemon.config,
        "predictions",
        "query",
        "--model",
        MODEL,
        "--version",
        "9",
        "--json",
    )
    assert none.stdout == ""


def test_query_since_after_until_rejected(start_daemon: Any) -> None:
    daemon = start_daemon()
    window = ["--since", "2026-12-06", "--until", "2026-12-05"]
    expected = (
        "since 2026-12-06T00:00:00+00:00 is not before until "
        "2026-12-05T00:00:00+00:00, so no prediction can match; swap them or "
        "widen the range"
    )

    online = run_cli(daemon.config, "predictions", "query", *window)
    response = httpx.get(
        daemon.base + "/v1/predictions",
        params={"since": "2026-12-06T00:00:00Z", "until": "2026-12-05T00:00:00Z"},
    )
    assert daemon.stop() == 0
    offline = run_cli(daemon.config, "predictions", "query", *window)

    assert online.returncode != 0
    assert expected in online.stderr
    assert response.status_code == 422
    assert offline.returncode != 0
    assert expected in offline.stderr


def test_query_unknown_model_404(start_daemon: Any) -> None:
    daemon = start_daemon()

    unknown = httpx.get(daemon.base + "/v1/predictions", params={"model": "nope"})
    known = httpx.get(daemon.base + "/v1/predictions", params={"model": MODEL})
    assert daemon.stop() == 0

    assert unknown.status_code == 404
    assert unknown.json()["error"] == (
        "model 'nope' is not declared in [models] and has no registered version; "
        f"known models: {MODEL}"
    )
    assert known.status_code == 200, known.text
    assert known.json() == {"predictions": []}


def test_query_limit_above_maximum_422(start_daemon: Any) -> None:
    daemon = start_daemon(predictions={"flush_seconds": 0.1})
    answer = httpx.post(
        daemon.base + f"/v1/models/{MODEL}/predict", json={"rows": [row(0)]}
    )
    deadline = time.monotonic() + 20
    found: list = []
    while not found and time.monotonic() < deadline:
        found = httpx.get(
            daemon.base + "/v1/predictions", params={"limit": 10_000}
        ).json()["predictions"]
        time.sleep(0.1)
    above = httpx.get(daemon.base + "/v1/predictions", params={"limit": 10_001})
    assert daemon.stop() == 0

    assert answer.status_code == 200
    assert [r["request_id"] for r in found] == [answer.json()["request_id"]]
    assert isinstance(found[0]["input"], dict)
    assert above.status_code == 422
    assert above.json()["error"] == (
        "limit 10001 is above the maximum of 10000 rows per query; ask for at "
        "most 10000 rows and read the log in parts with since and until"
    )


def test_unknown_names_and_bad_values_rejected(start_daemon: Any) -> None:
    daemon = start_daemon()
    base = daemon.base

    alerts = httpx.get(base + "/v1/alerts", params={"model": "nope"})
    known = httpx.get(base + "/v1/alerts", params={"model": MODEL})
    version = httpx.get(base + "/v1/predictions", params={"version": -1})
    body = {"dataset": "d", "paths": ["x.csv"], "mode": "sideways"}
    mode = httpx.post(base + "/v1/admin/ingest", json=body)
    assert daemon.stop() == 0

    assert alerts.status_code == 404
    assert alerts.json()["error"].startswith("model 'nope' is not declared")
    assert known.status_code == 200
    assert known.json() == {"alerts": []}
    assert version.status_code == 400
    assert "version" in version.json()["error"]
    assert version.json()["type"] == "ValidationException"
    logged = f"request_id={version.json()['request_id']} method=GET"
    assert logged in daemon.log()
    assert mode.status_code == 400
    assert mode.json()["error"].endswith(
        "Invalid enum value 'sideways' - at `$.mode`; use one of replace, append"
    )


def test_predicted_at_one_format(
    start_daemon: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Outside UTC, DuckDB returns times in the local zone, so both readers
    # must convert them to print the same text.
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    daemon = start_daemon(predictions={"flush_seconds": 0.1})
    body = httpx.post(daemon.base + PREDICT, json={"rows": [row(i) for i in range(2)]})
    assert body.status_code == 200
    assert wait_written(daemon, 2)
    online = run_cli(daemon.config, "predictions", "tail", MODEL, "--json")
    queried = run_cli(daemon.config, "predictions", "query", "--model", MODEL)
    served = httpx.get(daemon.base + "/v1/predictions").json()["predictions"]
    assert daemon.stop() == 0
    offline = run_cli(daemon.config, "predictions", "tail", MODEL, "--json")
    offline_query = run_cli(daemon.config, "predictions", "query", "--model", MODEL)

    assert online.returncode == 0, online.stderr
    assert offline.returncode == 0, offline.stderr
    times = [json.loads(line)["predicted_at"] for line in online.stdout.splitlines()]
    assert len(times) == 2
    assert all(text.endswith("Z") for text in times), times
    assert [row["predicted_at"] for row in served] == times
    offline_times = [
        json.loads(line)["predicted_at"] for line in offline.stdout.splitlines()
    ]
    assert offline_times == times
    assert queried.stdout == offline_query.stdout
    assert times[0] in queried.stdout


def test_negative_limit_rejected(start_daemon: Any) -> None:
    daemon = start_daemon()
    routes = [
        "/v1/predictions",
        "/v1/admin/quarantine?dataset=points",
        "/v1/admin/registry/runs",
        f"/v1/ui/drift/{MODEL}",
    ]
    for route in routes:
        separator = "&" if "?" in route else "?"
        response = httpx.get(f"{daemon.base}{route}{separator}limit=-1")
        assert response.status_code == 400, route
        assert "limit" in response.json()["error"], route

    commands = [
        ("predictions", "query", "--limit", "-1"),
        ("predictions", "tail", MODEL, "-n", "-1"),
        ("datasets", "quarantine", "points", "--limit", "-1"),
        ("runs", "list", "--limit", "-1"),
    ]
    for command in commands:
        result = run_cli(daemon.config, *command)
        assert result.returncode == 2, command
        assert "invalid row count -1; use 0 or more" in result.stderr, command
        assert "Traceback" not in result.stderr, command
    assert daemon.stop() == 0


def wait_written(daemon: Any, rows: int, seconds: float = 20.0) -> bool:
    """Wait until the daemon's log writer has inserted `rows` rows."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = httpx.get(daemon.base + "/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name = sample.name
                if name == "appliance_prediction_log_written_rows_total" and (
                    sample.value >= rows
                ):
                    return True
        time.sleep(0.1)
    return False


def test_replace_dropping_view_key_through_daemon(
    start_daemon: Any, tmp_path: Path
) -> None:
    view = {
        "sql": "SELECT color, avg(x1) AS mean_x1 FROM points GROUP BY color",
        "entities": ["color"],
    }
    daemon = start_daemon(**{"feature_views.colors": view})
    no_color = tmp_path / "no_color.csv"
    no_color.write_text("x1,x2,label\n0.5,1.0,1\n-0.5,0.2,0\n", encoding="utf-8")

    rejected = run_cli(daemon.config, "ingest", "points", str(no_color))
    forced = run_cli(daemon.config, "ingest", "points", str(no_color), "--force")

    assert rejected.returncode == 1
    assert "drops column 'color', which feature view 'colors'" in rejected.stderr
    assert "--force" in rejected.stderr
    assert forced.returncode == 0, forced.stderr
    assert "rows=2 mode=replace" in forced.stdout
    assert "warning: column 'color' is missing" in forced.stdout
    assert daemon.stop() == 0


def test_unknown_names_through_daemon(start_daemon: Any) -> None:
    daemon = start_daemon()
    commands = [
        (
            ("datasets", "quarantine", "nope"),
            "error: dataset 'nope' is not declared in [datasets] and has no "
            "version; known datasets: points",
        ),
        (
            ("models", "history", "nope"),
            "error: model 'nope' is not declared in [models] and has no "
            f"registered version; known models: {MODEL}",
        ),
        (
            ("predictions", "tail", "nope"),
            "error: model 'nope' is not declared in [models] and has no "
            f"registered version; known models: {MODEL}",
        ),
        (
            ("predictions", "query", "--model", "nope"),
            "error: model 'nope' is not declared in [models] and has no "
            f"registered version; known models: {MODEL}",
        ),
    ]
    for command, expected in commands:
        result = run_cli(daemon.config, *command)
        assert result.returncode == 1, command
        assert result.stderr.strip().splitlines()[-1] == expected, command
    assert daemon.stop() == 0


def test_case_only_append_rejected_without_status(
    start_daemon: Any, tmp_path: Path
) -> None:
    daemon = start_daemon()
    lower = tmp_path / "lower.csv"
    lower.write_text("a,b\n1,x\n")
    upper = tmp_path / "upper.csv"
    upper.write_text("A,B\n3,z\n")

    first = run_cli(daemon.config, "ingest", "cased", str(lower))
    appended = run_cli(daemon.config, "ingest", "cased", str(upper), "--mode", "append")
    log = daemon.log()
    assert daemon.stop() == 0

    assert first.returncode == 0, first.stderr
    assert appended.returncode == 1
    # A 422 prints the message that the command prints without a daemon.
    message = (
        f"{upper}: column 'A' differs only in case from column 'a' of dataset "
        "'cased', and DuckDB does not tell them apart; rename it to 'a' in the "
        "file"
    )
    assert appended.stderr.strip().splitlines()[-1] == f"error: {message}"
    assert "request_id" not in appended.stderr
    assert "request rejected request_id=" in log
