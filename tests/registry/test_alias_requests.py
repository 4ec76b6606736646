"""Promotions that change nothing, and invalid alias names, by CLI and HTTP."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import httpx
from support import run_appliance, start_daemon, stop_daemon
from trips_data import make_trips_config

from appliance.config import Config
from appliance.training import train_model

ALLOWED_FORM = "use letters, digits, '_' and '-', and not only digits"


def _trained_twice(folder: Path) -> Config:
    config = make_trips_config(folder)
    train_model(config, "late")
    changed = dataclasses.replace(
        config.models["late"], params={"n_estimators": 5, "num_leaves": 3, "n_jobs": 1}
    )
    train_model(dataclasses.replace(config, models={"late": changed}), "late")
    return config


def _history(config: Config) -> list[dict]:
    listed = run_appliance(
        config.path, config.storage.home, "models", "history", "late", "--json"
    )
    assert listed.returncode == 0, listed.stderr
    return [json.loads(line) for line in listed.stdout.splitlines()]


def test_promote_current_champion_records_nothing(tmp_path: Path) -> None:
    config = _trained_twice(tmp_path)

    def promote(*args: str) -> tuple[int, str, str]:
        done = run_appliance(
            config.path, config.storage.home, "models", "promote", "late", *args
        )
        return done.returncode, done.stdout, done.stderr

    first = promote("2", "--by", "ann", "--reason", "pin")
    again = promote("2", "--by", "bob")
    history = _history(config)

    assert first[0] == 0, first[2]
    assert "version 2 (was the latest version, served while no champion" in first[1]
    assert again[0] == 0, again[2]
    assert (
        "late champion: version 2 already is the champion (set by ann at " in (again[1])
    )
    assert "nothing recorded" in again[1]
    assert len(history) == 1
    assert (history[0]["action"], history[0]["actor"]) == ("set", "ann")

    daemon = start_daemon(config.path, config.storage.home, tmp_path / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            response = client.post(
                "/v1/admin/registry/models/late/promote",
                json={"version": 2, "actor": "carol"},
            )
        through_daemon = promote("2", "--by", "dave")
        history = _history(config)
    finally:
        stop_daemon(daemon)

    assert response.status_code == 200
    assert response.json()["action"] == "unchanged"
    assert response.json()["version"] == 2
    assert response.json()["actor"] == "ann"
    assert "serving" not in response.json()
    assert through_daemon[0] == 0, through_daemon[2]
    assert "already is the champion" in through_daemon[1]
    assert "the daemon now serves" not in through_daemon[1]
    assert len(history) == 1


def test_invalid_alias_rejected_422(tmp_path: Path) -> None:
    config = _trained_twice(tmp_path)

    def promote(alias: str) -> tuple[int, str]:
        done = run_appliance(
            config.path,
            config.storage.home,
            *("models", "promote", "late", "1", "--alias", alias),
        )
        return done.returncode, done.stderr

    offline = {alias: promote(alias) for alias in ("bad alias!", "3")}
    daemon = start_daemon(config.path, config.storage.home, tmp_path / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            promoted = {
                alias: client.post(
                    "/v1/admin/registry/models/late/promote",
                    json={"version": 1, "alias": alias},
                )
                for alias in ("bad alias!", "3")
            }
            rolled = client.post(
                "/v1/admin/registry/models/late/rollback", json={"alias": "a/b"}
            )
        online = promote("bad alias!")
        history = _history(config)
    finally:
        stop_daemon(daemon)

    for alias, (code, stderr) in offline.items():
        assert code == 1, alias
        assert f"invalid alias {alias!r}; {ALLOWED_FORM}" in stderr
    for alias, response in promoted.items():
        assert response.status_code == 422, alias
        assert response.json()["alias"] == alias
        assert response.json()["error"].startswith(
            f"invalid alias {alias!r}; {ALLOWED_FORM}"
        )
    assert rolled.status_code == 422
    assert rolled.json()["alias"] == "a/b"
    assert online[0] == 1
    assert f"invalid alias 'bad alias!'; {ALLOWED_FORM}" in online[1]
    # The daemon's 422 prints the local path's error line, without the status.
    assert online[1].splitlines()[-1] == offline["bad alias!"][1].splitlines()[-1]
    assert history == []
