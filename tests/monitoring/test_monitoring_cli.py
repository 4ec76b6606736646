"""The ``appliance drift`` and ``appliance alerts`` commands on a real store."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from appliance.cli import main
from appliance.monitoring import (
    AlertCandidate,
    DriftEvent,
    MonitoringStore,
    batch_drift,
)

T0 = datetime(2013, 4, 1, tzinfo=timezone.utc)


@pytest.fixture()
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[storage]\nhome = "{tmp_path / "home"}"\n\n'
        '[models.m]\ndataset = "d"\ntarget = "y"\ntask = "classification"\n',
        encoding="utf-8",
    )
    return path


def _fill(home: Path) -> int:
    rng = np.random.default_rng(0)
    reference = {"x": rng.normal(0, 1, 500), "c": ["a"] * 500}
    with MonitoringStore(home) as store:
        for hours, shift in [(0, 0.0), (1, 2.0)]:
            current = {"x": rng.normal(shift, 1, 500), "c": ["a"] * 500}
            report = batch_drift(reference, current, ["x"], ["c"])
            store.record_drift("m", report, T0 + timedelta(hours=hours))
        alert, _ = store.record_alert(
            AlertCandidate("m", "drift", "batch", "warning", "batch drift on x"), T0
        )
    return alert.id


def test_drift_command_latest_and_history(config_file, tmp_path, capsys) -> None:
    _fill(tmp_path / "home")

    status = main(["--config", str(config_file), "drift", "m", "--json"])
    output = json.loads(capsys.readouterr().out)

    assert status == 0
    assert [(r["feature"], r["status"]) for r in output["latest"]] == [
        ("c", "ok"),
        ("x", "drift"),
    ]
    assert len(output["history"]) == 1
    assert output["history"][0]["features"] == 2
    assert output["history"][0]["drifted"] == []


def test_drift_command_says_events_cut(config_file, tmp_path, capsys) -> None:
    events = [DriftEvent("feature", "x", "distribution", i * 1000) for i in range(3)]
    with MonitoringStore(tmp_path / "home") as store:
        store.record_events("m", events, T0)

    status = main(["--config", str(config_file), "drift", "m", "--events", "2"])
    text = capsys.readouterr().out
    main(["--config", str(config_file), "drift", "m", "--events", "2", "--json"])
    output = json.loads(capsys.readouterr().out)

    assert status == 0
    heading = "streaming detections, newest 2 of 3 (--events N shows more):\n"
    assert heading in text
    rows = text.split(heading)[1].splitlines()
    assert rows[0].split() == ["detected_at", "kind", "subject", "cause", "position"]
    assert [row.split()[-1] for row in rows[1:]] == ["2000", "1000"]
    assert [event["position"] for event in output["events"]] == [2000, 1000]
    assert output["events_total"] == 3


def test_drift_command_unknown_model(config_file, tmp_path, capsys) -> None:
    (tmp_path / "home").mkdir()
    status = main(["--config", str(config_file), "drift", "nope"])

    assert status == 1
    assert "model 'nope' is not declared" in capsys.readouterr().err


def test_alerts_list_and_ack(config_file, tmp_path, capsys) -> None:
    alert_id = _fill(tmp_path / "home")

    main(["--config", str(config_file), "alerts", "list", "--open", "--json"])
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ack_status = main(["--config", str(config_file), "alerts", "ack", str(alert_id)])
    acked = capsys.readouterr().out
    main(["--config", str(config_file), "alerts", "list", "--open", "--json"])
    after = capsys.readouterr().out
    missing_status = main(["--config", str(config_file), "alerts", "ack", "999"])

    assert [a["id"] for a in listed] == [alert_id]
    assert ack_status == 0
    assert acked.startswith(f"alert {alert_id} acknowledged at ")
    assert after == ""
    assert missing_status == 1
    assert "alert 999 does not exist" in capsys.readouterr().err


def _record_runs(home: Path, outcomes: list[str]) -> None:
    with MonitoringStore(home) as store:
        for hours, outcome in enumerate(outcomes):
            started = T0 + timedelta(hours=hours)
            store.start_job_run("drift:m", started, 0)
            detail = {"error": "NotFoundError: gone"} if outcome == "failed" else {}
            store.finish_job_run("drift:m", started, started, outcome, detail)


def test_drift_command_shows_failing_check(config_file, tmp_path, capsys) -> None:
    _fill(tmp_path / "home")
    _record_runs(tmp_path / "home", ["finished", "failed", "failed"])

    status = main(["--config", str(config_file), "drift", "m"])
    text = capsys.readouterr().out
    main(["--config", str(config_file), "drift", "m", "--json"])
    output = json.loads(capsys.readouterr().out)

    assert status == 0
    assert "scheduled check: FAILED at 2013-04-01T02:00:00+00:00" in text
    assert "2 failed runs in a row since 2013-04-01T01:00:00+00:00" in text
    assert "error: NotFoundError: gone" in text
    assert "run 'appliance drift m --check'" in text
    assert output["scheduled_check"]["failed_runs"] == 2


def test_drift_command_shows_good_check(config_file, tmp_path, capsys) -> None:
    _fill(tmp_path / "home")
    _record_runs(tmp_path / "home", ["failed", "finished"])

    main(["--config", str(config_file), "drift", "m"])
    text = capsys.readouterr().out

    assert "scheduled check: finished at 2013-04-01T01:00:00+00:00" in text
    assert "FAILED" not in text
