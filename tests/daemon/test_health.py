"""Scheduled health check and rollback watch of a real daemon on 127.0.0.1.

Alerts go to a webhook receiver started by the test on 127.0.0.1. Labels are
the model's own predicted classes (a model that is always right) or their
opposites (always wrong), so live metrics are known without a dataset.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_support import MODEL, row, write_config, write_dataset
from support import WebhookReceiver

from appliance.access import list_entries
from appliance.cli import main
from appliance.storage import Catalog

PREDICT = f"/v1/models/{MODEL}/predict"
FEEDBACK = f"/v1/models/{MODEL}/feedback"
REGISTRY = f"/v1/admin/registry/models/{MODEL}"
WAIT_SECONDS = 30.0
HEALTH_KINDS = ("performance", "error_rate", "latency", "rollback")

FAST_CHECKS = {
    "health_interval_seconds": 1,
    "health_window_seconds": 60,
    "min_window_requests": 10,
    "min_live_labels": 40,
    "webhook_retries": 0,
}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver()
    yield started
    started.close()


@pytest.fixture(scope="session")
def two_version_home(trained_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """Return a home whose model ``demo`` has versions 1 and 2."""
    from appliance.config import load_config
    from appliance.training import train_model

    root = tmp_path_factory.mktemp("two_versions")
    home = root / "home"
    shutil.copytree(trained_home, home)
    train_model(load_config(write_config(root / "config.toml", home)), MODEL)
    return home


@pytest.fixture(scope="session")
def worse_version_home(trained_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """Return a home whose model ``demo`` has a good version 1 and a version 2
    trained on labels drawn at random, so it ranks rows no better than chance."""
    from appliance.config import load_config
    from appliance.storage import ingest
    from appliance.training import train_model

    root = tmp_path_factory.mktemp("worse_version")
    home = root / "home"
    shutil.copytree(trained_home, home)
    data = root / "noise.csv"
    write_dataset(data, 400, seed=2)
    chooser = random.Random(2)
    lines = data.read_text(encoding="utf-8").splitlines()
    noisy = [lines[0]] + [f"{x[:-1]}{chooser.randint(0, 1)}" for x in lines[1:]]
    data.write_text("\n".join(noisy) + "\n", encoding="utf-8")
    config = load_config(write_config(root / "config.toml", home))
    with Catalog(home) as catalog:
        ingest(catalog, "points", [data])
    train_model(config, MODEL)
    return home


@pytest.fixture
def worse_home(worse_version_home: Path, home: Path) -> Path:
    """Replace the copied home of `start_daemon` with the worse-version home."""
    shutil.rmtree(home)
    shutil.copytree(worse_version_home, home)
    return home


@pytest.fixture
def versions_home(two_version_home: Path, home: Path) -> Path:
    """Replace the copied home of `start_daemon` with the two-version home."""
    shutil.rmtree(home)
    shutil.copytree(two_version_home, home)
    return home


def predict(daemon: Any, indices: range) -> dict[str, Any]:
    rows = [row(i) for i in indices]
    response = httpx.post(daemon.base + PREDICT, json={"rows": rows})
    assert response.status_code == 200, response.text
    return response.json()


def send_labels(
    daemon: Any,
    answer: dict[str, Any],
    wrong: float,
    chooser: random.Random | None = None,
) -> None:
    """Label every row of `answer`, the opposite class for a share `wrong`."""
    chooser = chooser or random.Random(0)
    labels = []
    for index, prediction in enumerate(answer["predictions"]):
        label = prediction["label"]
        if chooser.random() < wrong:
            label = 1 - label
        labels.append(
            {"request_id": answer["request_id"], "row": index, "label": label}
        )
    response = httpx.post(daemon.base + FEEDBACK, json={"labels": labels})
    assert response.status_code == 200, response.text


def traffic(daemon: Any, first: int, requests: int = 12) -> list[dict[str, Any]]:
    """Send `requests` requests of 5 rows and return the responses.

    The rows are every other one from `first`, so two streams started at 0
    and 1 cover the same span of inputs, where both classes are predicted.
    """
    starts = range(first, first + 10 * requests, 10)
    return [predict(daemon, range(start, start + 10, 2)) for start in starts]


def truth(index: int) -> int:
    """Return the class that generated `row(index)`, as `write_dataset` draws it."""
    values = row(index)
    red = values["color"] == "red"
    return int(values["x1"] + 0.5 * values["x2"] + red > 0.3)


def truly_labelled_traffic(daemon: Any, first: int, requests: int = 12) -> int:
    """Send `traffic` and label each row with its true class; return the version."""
    version = 0
    for answer, start in zip(
        traffic(daemon, first, requests), range(first, first + 10 * requests, 10)
    ):
        labels = [
            {"request_id": answer["request_id"], "row": i, "label": truth(index)}
            for i, index in enumerate(range(start, start + 10, 2))
        ]
        response = httpx.post(daemon.base + FEEDBACK, json={"labels": labels})
        assert response.status_code == 200, response.text
        version = answer["version"]
    return version


def labelled_traffic(daemon: Any, first: int, wrong: float, requests: int = 12) -> int:
    """Send `traffic` and label each response; return the version served."""
    version = 0
    chooser = random.Random(first)
    for answer in traffic(daemon, first, requests):
        send_labels(daemon, answer, wrong, chooser)
        version = answer["version"]
    return version


def health_alerts(daemon: Any) -> list[dict[str, Any]]:
    found = httpx.get(daemon.base + "/v1/alerts").json()["alerts"]
    return [a for a in found if a["kind"] in HEALTH_KINDS]


def wait_for(condition: Any, what: str, daemon: Any) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{daemon.log()[-4000:]}")


def health_runs(daemon: Any, labels: int) -> int:
    """Count the health check log lines that saw at least `labels` labels."""
    lines = [x for x in daemon.log().splitlines() if "health checked" in x]
    return sum(
        int(x.split("labels=")[1].split()[0]) >= labels
        for x in lines
        if "labels=" in x and x.split("labels=")[1].split()[0].isdigit()
    )


def promote(daemon: Any, version: int) -> None:
    response = httpx.post(
        daemon.base + f"{REGISTRY}/promote",
        json={"version": version, "actor": "test", "reason": "test"},
    )
    assert response.status_code == 200, response.text


def champion_events(daemon: Any) -> list[dict[str, Any]]:
    response = httpx.get(
        daemon.base + f"{REGISTRY}/history", params={"alias": "champion"}
    )
    return response.json()["events"]


def test_health_alerts_fire_and_reach_webhook(
    start_daemon: Any, receiver: WebhookReceiver
) -> None:
    daemon = start_daemon(
        monitoring={
            **FAST_CHECKS,
            "error_rate": 0.1,
            "latency_p99_ms": 0.001,
            "webhook_url": receiver.url,
        }
    )
    labelled_traffic(daemon, 0, wrong=1.0)
    for _ in range(6):
        bad = httpx.post(daemon.base + PREDICT, json={"rows": [{"x1": "high"}]})
        assert bad.status_code == 422

    kinds = {"performance", "error_rate", "latency"}

    def settled() -> list[dict[str, Any]]:
        # Checks that ran during the traffic saw part of it; wait for one
        # that saw all of it.
        found = health_alerts(daemon)
        text = " ".join(a["message"] for a in found)
        if kinds <= {a["kind"] for a in found} and "6 of 18" in text:
            return found if "the last 60 labels" in text else []
        return []

    alerts = wait_for(settled, "performance, error rate and latency alerts", daemon)
    wait_for(
        lambda: kinds <= {b["kind"] for b in receiver.bodies},
        "the webhook deliveries",
        daemon,
    )
    by_kind = {a["kind"]: a for a in alerts}
    assert daemon.stop() == 0

    assert by_kind["error_rate"]["subject"] == "client version 1"
    assert "6 of 18 prediction requests" in by_kind["error_rate"]["message"]
    assert "version 1" in by_kind["error_rate"]["message"]
    assert by_kind["error_rate"]["threshold"] == pytest.approx(0.1)
    assert by_kind["latency"]["subject"] == "p99 version 1"
    assert by_kind["latency"]["value"] > 0.001
    assert by_kind["performance"]["subject"] == "roc_auc version 1"
    assert by_kind["performance"]["value"] < 0.5
    assert "over the last 60 labels" in by_kind["performance"]["message"]
    assert {a["status"] for a in alerts} == {"open"}
    delivered = [b for b in receiver.bodies if b["kind"] in kinds]
    assert sorted(b["kind"] for b in delivered) == sorted(kinds)
    assert all(b["model"] == MODEL for b in delivered)


def test_health_quiet_on_normal_stream(
    start_daemon: Any, receiver: WebhookReceiver
) -> None:
    daemon = start_daemon(
        monitoring={
            **FAST_CHECKS,
            "latency_p99_ms": 2000.0,
            "webhook_url": receiver.url,
        }
    )
    labelled_traffic(daemon, 0, wrong=0.0)
    wait_for(lambda: health_runs(daemon, 60) >= 2, "two health checks", daemon)
    alerts = health_alerts(daemon)
    assert daemon.stop() == 0

    assert alerts == []
    assert receiver.bodies == []


def test_rollback_on_worse_champion(
    worse_home: Path,
    start_daemon: Any,
    receiver: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    daemon = start_daemon(monitoring={**FAST_CHECKS, "webhook_url": receiver.url})
    promote(daemon, 1)
    assert truly_labelled_traffic(daemon, 0) == 1
    promote(daemon, 2)
    pending = champion_events(daemon)[-1]["watch"]
    assert truly_labelled_traffic(daemon, 1) == 2

    rollback = wait_for(
        lambda: [a for a in health_alerts(daemon) if a["kind"] == "rollback"],
        "the rollback alert",
        daemon,
    )[0]
    served = predict(daemon, range(1))["version"]
    events = champion_events(daemon)
    wait_for(
        lambda: any(b["kind"] == "rollback" for b in receiver.bodies),
        "the rollback webhook",
        daemon,
    )
    assert daemon.stop() == 0
    capsys.readouterr()
    listed = main(["--config", str(daemon.config), "alerts", "list", "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert served == 1
    assert listed == 0
    assert pending["outcome"] == "pending"
    assert events[-2]["watch"]["outcome"] == "rolled_back"
    assert events[-2]["watch"]["reason"] == events[-1]["reason"]
    assert [r["id"] for r in rows if r["kind"] == "rollback"] == [rollback["id"]]
    assert (events[-1]["action"], events[-1]["version"]) == ("rollback", 1)
    assert events[-1]["actor"] == "monitoring"
    assert "live roc_auc" in events[-1]["reason"]
    assert rollback["subject"] == "version:2"
    assert "rolled back from version 2 to 1" in rollback["message"]
    assert "above margin 0.02" in rollback["message"]
    # The watch judges at its first check after 40 labels, so between 40 and 60.
    same = re.search(
        r"on the same (\d+) labelled rows served by version 2", rollback["message"]
    )
    assert same is not None
    assert 40 <= int(same.group(1)) <= 60
    assert "champion switched model=demo version=1 previous=2" in daemon.log()
    with Catalog(daemon.home, read_only=True) as catalog:
        rollbacks = list_entries(catalog, action="model.rollback")
    assert [(e.actor, e.outcome) for e in rollbacks] == [("daemon", "ok")]
    assert json.loads(rollbacks[0].details)["actor"] == "monitoring"


def performance_alerts(daemon: Any) -> list[dict[str, Any]]:
    found = httpx.get(daemon.base + "/v1/alerts").json()["alerts"]
    return [a for a in found if a["kind"] == "performance"]


def test_rollback_resolves_performance_alert(
    versions_home: Path, start_daemon: Any
) -> None:
    daemon = start_daemon(monitoring=FAST_CHECKS)
    promote(daemon, 1)
    promote(daemon, 2)
    assert labelled_traffic(daemon, 0, wrong=1.0) == 2
    (first,) = wait_for(
        lambda: performance_alerts(daemon), "the alert of version 2", daemon
    )
    rolled_back = httpx.post(
        daemon.base + f"{REGISTRY}/rollback", json={"actor": "test", "reason": "test"}
    )
    resolved = wait_for(
        lambda: [a for a in performance_alerts(daemon) if a["status"] == "resolved"],
        "the resolution of the alert of version 2",
        daemon,
    )
    assert labelled_traffic(daemon, 1, wrong=1.0) == 1
    second = wait_for(
        lambda: [a for a in performance_alerts(daemon) if a["id"] != first["id"]],
        "a new alert of version 1",
        daemon,
    )
    assert daemon.stop() == 0

    assert rolled_back.status_code == 200, rolled_back.text
    assert first["subject"] == "roc_auc version 2"
    assert "version 2" in first["message"]
    assert [a["id"] for a in resolved] == [first["id"]]
    assert resolved[0]["resolution"] == (
        "resolved automatically: champion version 1 of model 'demo' is served, so "
        "the health check no longer judges the version this alert names"
    )
    assert len(second) == 1
    assert second[0]["status"] == "open"
    assert second[0]["subject"] == "roc_auc version 1"
    assert "version 1" in second[0]["message"]


def request_health_alerts(daemon: Any) -> list[dict[str, Any]]:
    found = httpx.get(daemon.base + "/v1/alerts").json()["alerts"]
    return [a for a in found if a["kind"] in ("error_rate", "latency")]


def new_request_alerts(daemon: Any, seen: set[int]) -> list[dict[str, Any]]:
    """Return the error rate and latency alerts not in `seen` once both kinds
    are there, else an empty list."""
    found = [a for a in request_health_alerts(daemon) if a["id"] not in seen]
    return found if {a["kind"] for a in found} == {"error_rate", "latency"} else []


def resolved_request_alerts(daemon: Any, ids: set[int]) -> list[dict[str, Any]]:
    """Return the alerts of `ids` once every one is resolved, else an empty list."""
    found = [a for a in request_health_alerts(daemon) if a["id"] in ids]
    return found if all(a["status"] == "resolved" for a in found) else []


def failing_traffic(daemon: Any, first: int) -> int:
    """Send `traffic` and 6 rejected requests, and return the version served."""
    version = traffic(daemon, first)[-1]["version"]
    for _ in range(6):
        bad = httpx.post(daemon.base + PREDICT, json={"rows": [{"x1": "high"}]})
        assert bad.status_code == 422
    return version


def test_rollback_resolves_request_alerts(
    versions_home: Path, start_daemon: Any
) -> None:
    daemon = start_daemon(
        monitoring={**FAST_CHECKS, "error_rate": 0.1, "latency_p99_ms": 0.001}
    )
    promote(daemon, 1)
    promote(daemon, 2)
    assert failing_traffic(daemon, 0) == 2
    first = wait_for(
        lambda: new_request_alerts(daemon, set()),
        "the error rate and latency alerts of version 2",
        daemon,
    )
    first_ids = {a["id"] for a in first}
    rolled_back = httpx.post(
        daemon.base + f"{REGISTRY}/rollback", json={"actor": "test", "reason": "test"}
    )
    resolved = wait_for(
        lambda: resolved_request_alerts(daemon, first_ids),
        "the resolution of the alerts of version 2",
        daemon,
    )
    assert failing_traffic(daemon, 1) == 1
    second = wait_for(
        lambda: new_request_alerts(daemon, first_ids),
        "new error rate and latency alerts of version 1",
        daemon,
    )
    assert daemon.stop() == 0

    assert rolled_back.status_code == 200, rolled_back.text
    by_kind = {a["kind"]: a for a in first}
    assert by_kind["error_rate"]["subject"] == "client version 2"
    assert "version 2" in by_kind["error_rate"]["message"]
    assert by_kind["latency"]["subject"] == "p99 version 2"
    assert "version 2" in by_kind["latency"]["message"]
    assert {a["id"] for a in resolved} == first_ids
    for alert in resolved:
        assert alert["resolution"] == (
            "resolved automatically: champion version 1 of model 'demo' is served, "
            "so the health check no longer judges the version this alert names"
        )
    by_kind = {a["kind"]: a for a in second}
    assert by_kind["error_rate"]["status"] == "open"
    assert by_kind["error_rate"]["subject"] == "client version 1"
    assert "version 1" in by_kind["error_rate"]["message"]
    assert by_kind["latency"]["status"] == "open"
    assert by_kind["latency"]["subject"] == "p99 version 1"
    assert "version 1" in by_kind["latency"]["message"]


def test_rollback_keeps_champion_on_noisier_labels(
    versions_home: Path, start_daemon: Any, receiver: WebhookReceiver
) -> None:
    """Labels that turn noisy after a promotion lower both versions alike.

    Version 1's window contains only right labels and version 2's a third
    wrong ones, so comparing the two windows would roll back a version that is as
    good as the one before it on the same rows.
    """
    daemon = start_daemon(monitoring={**FAST_CHECKS, "webhook_url": receiver.url})
    promote(daemon, 1)
    labelled_traffic(daemon, 0, wrong=0.0)
    promote(daemon, 2)
    labelled_traffic(daemon, 1, wrong=0.35)

    wait_for(
        lambda: "rollback watch kept model=demo version=2" in daemon.log(),
        "the rollback watch's verdict on version 2",
        daemon,
    )
    runs = health_runs(daemon, 60)
    wait_for(lambda: health_runs(daemon, 60) >= runs + 2, "two more checks", daemon)
    served = predict(daemon, range(1))["version"]
    events = champion_events(daemon)
    alerts = health_alerts(daemon)
    assert daemon.stop() == 0

    assert served == 2
    assert daemon.log().count("rollback watch kept model=demo version=2") == 1
    verdict = re.search(
        r"version 2: live roc_auc ([0-9.]+) is not worse than the previous "
        r"champion's "
        r"([0-9.]+) by more than 0.02, on the same (\d+) labelled rows",
        daemon.log(),
    )
    assert verdict is not None
    assert float(verdict.group(1)) < 0.9
    assert abs(float(verdict.group(1)) - float(verdict.group(2))) <= 0.02
    assert [e["action"] for e in events] == ["set", "set"]
    assert events[-1]["watch"]["outcome"] == "kept"
    assert "labelled rows" in events[-1]["watch"]["reason"]
    assert 40 <= int(verdict.group(3)) <= 60
    assert [a for a in alerts if a["kind"] == "rollback"] == []
    assert not any(b["kind"] == "rollback" for b in receiver.bodies)


def test_rollback_falls_back_to_windows(
    versions_home: Path, start_daemon: Any, receiver: WebhookReceiver
) -> None:
    daemon = start_daemon(monitoring={**FAST_CHECKS, "webhook_url": receiver.url})
    promote(daemon, 1)
    labelled_traffic(daemon, 0, wrong=0.3)
    promote(daemon, 2)
    (artifact,) = versions_home.glob(f"models/{MODEL}/1/model.onnx")
    artifact.write_bytes(b"not a model")
    labelled_traffic(daemon, 1, wrong=0.0)

    wait_for(
        lambda: "rollback watch kept model=demo version=2" in daemon.log(),
        "the rollback watch's verdict on version 2",
        daemon,
    )
    served = predict(daemon, range(1))["version"]
    assert daemon.stop() == 0

    verdict = re.search(
        r"version 2: live roc_auc ([0-9.]+) is not worse than the previous "
        r"champion's "
        r"([0-9.]+) by more than 0.02, on (\d+) and 60 labels of each version's own "
        r"predictions \(.*sha256",
        daemon.log(),
    )
    assert served == 2
    assert verdict is not None
    assert float(verdict.group(1)) > float(verdict.group(2)) + 0.02
    assert "rollback watch compares windows model=demo version=2" in daemon.log()
