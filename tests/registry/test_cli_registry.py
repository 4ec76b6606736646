"""The runs and models commands, run as ``python -m appliance``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from support import run_appliance, start_daemon, stop_daemon

from appliance.config import Config
from appliance.training import train_model


def test_runs_and_models_commands(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    config = trips()
    first = train_model(config, "late")
    changed = dataclasses.replace(
        config.models["late"], params={"n_estimators": 5, "num_leaves": 3, "n_jobs": 1}
    )
    second = train_model(dataclasses.replace(config, models={"late": changed}), "late")

    def cli(*args: str) -> str:
        result = run_appliance(config.path, config.storage.home, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    listed = [json.loads(line) for line in cli("runs", "list", "--json").splitlines()]
    assert [run["run_id"] for run in listed] == [second.run_id, first.run_id]
    assert all(run["status"] == "finished" for run in listed)
    assert cli("runs", "list", "--model", "late").count(" late ") == 2

    shown = json.loads(cli("runs", "show", first.run_id))
    assert shown["run_id"] == first.run_id
    assert {a["name"] for a in shown["artifacts"]} >= {"roc.png", "pr.png"}
    assert shown["child_runs"] == []

    table = cli("runs", "compare", first.run_id, second.run_id)
    lines = {line[2:].split()[0]: line for line in table.splitlines()[1:-1]}
    assert lines["params.num_leaves"].startswith("* ")
    assert lines["params.n_estimators"].split()[2:] == ["20", "5"]
    assert lines["model"].startswith("  ")
    summary = table.splitlines()[-1]
    changed = sum(line.startswith("* ") for line in lines.values())
    assert summary == f"{changed} of {len(lines)} fields differ (marked *)"
    only = cli("runs", "compare", first.run_id, second.run_id, "--differences")
    assert only.splitlines()[-1] == f"{summary}; showing the {changed}"
    compared = json.loads(
        cli("runs", "compare", first.run_id, second.run_id, "--json", "--differences")
    )
    fields = {row["field"]: row for row in compared["fields"]}
    assert fields["params.num_leaves"]["values"] == [7, 3]
    assert "model" not in fields

    missing = run_appliance(config.path, config.storage.home, "runs", "show", "nope")
    assert missing.returncode == 1
    assert "run 'nope' not found" in missing.stderr

    promoted = cli("models", "promote", "late", "1", "--reason", "ok", "--by", "ann")
    assert "late champion: version 1 (was 2), set by ann: ok" in promoted

    # From here on the commands go through a daemon, which serves the
    # champion, version 1, rather than the latest version.
    daemon = start_daemon(config.path, config.storage.home, tmp_path / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            served = client.post(
                "/v1/models/late/predict",
                json={"rows": [{"distance": 700.0, "hour": 18, "carrier": "B6"}]},
            )
        assert served.json()["version"] == 1
        _daemon_commands(cli, run_appliance, config, tmp_path)
    finally:
        stop_daemon(daemon)


def _daemon_commands(
    cli: Callable[..., str], run: Callable[..., Any], config: Config, tmp_path: Path
) -> None:
    listed_runs = cli("runs", "list", "--json", "--limit", "1").splitlines()
    runs = [json.loads(line) for line in listed_runs]
    assert len(runs) == 1
    compared = json.loads(
        cli("runs", "compare", runs[0]["run_id"], runs[0]["run_id"], "--json")
    )
    assert not any(row["differs"] for row in compared["fields"])
    cli("models", "promote", "late", "2", "--alias", "challenger")
    listed = [json.loads(line) for line in cli("models", "list", "--json").splitlines()]
    assert [(v["version"], v["aliases"], v["serving"]) for v in listed] == [
        (2, "challenger", False),
        (1, "champion", True),
    ]
    history = cli("models", "history", "late", "--json").splitlines()
    assert [json.loads(line)["actor"] for line in history][0] == "ann"

    card = tmp_path / "card.html"
    assert "late@challenger" in cli("models", "card", "late@challenger", str(card))
    assert "<h1>late version 2</h1>" in card.read_text()
    cli("models", "export", "late@1", str(tmp_path / "mlflow"), "--format", "mlflow")
    assert (tmp_path / "mlflow" / "MLmodel").is_file()

    rolled = cli("models", "rollback", "late", "--reason", "undo")
    assert "late champion: version 2 (was 1), rollback by" in rolled
    again = run(config.path, config.storage.home, "models", "rollback", "late")
    assert again.returncode == 1
    assert "no earlier champion" in again.stderr
