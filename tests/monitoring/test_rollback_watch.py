"""The rollback watch when the champion changes before its rollback is made."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from appliance.config import Config, RetrainConfig
from appliance.errors import AliasMovedError
from appliance.monitoring import MonitoringStore
from appliance.monitoring._rollback import _roll_back
from appliance.storage import AliasEvent


class MovedChampion:
    """The daemon side of the watch, where a newer promotion came first.

    Its registry rejects every conditional rollback as the daemon's does when
    the champion no longer points at the judged version.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.config = Config(path=home / "config.toml")
        self.requested: list[int] = []

    def rollback(
        self, model: str, expected_version: int, actor: str, reason: str
    ) -> dict:
        self.requested.append(expected_version)
        raise AliasMovedError(
            f"champion of model {model!r} is version 3, no longer "
            f"{expected_version}; the rollback was not made"
        )


def test_superseded_rollback_raises_no_alert(tmp_path: Path) -> None:
    daemon = MovedChampion(tmp_path)
    changed_at = datetime(2026, 1, 1, tzinfo=UTC)
    promotion = AliasEvent("demo", "champion", 2, 1, "set", "test", "", changed_at)

    verdict = _roll_back(daemon, promotion, RetrainConfig(), "worse", 0.5)

    with MonitoringStore(tmp_path) as store:
        alerts = store.list_alerts()
        stored = store.rollback_check("demo", changed_at)
    assert daemon.requested == [2]
    assert verdict.outcome == "superseded"
    assert "no longer 2" in verdict.reason
    assert alerts == []
    assert stored is None
