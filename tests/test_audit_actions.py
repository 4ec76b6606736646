"""The audit actions: the list the CLI names, and filters by unknown actions."""

from __future__ import annotations

import re
from pathlib import Path

import appliance
from appliance.access import ACTIONS

RECORD_CALL = re.compile(r'\brecord(?:_in_daemon)?\(\s*[\w.]+,\s*"([a-z_]+\.[a-z_]+)"')


def test_actions_list_every_recorded_action() -> None:
    package = Path(appliance.__file__).parent
    recorded = {
        action
        for path in package.rglob("*.py")
        for action in RECORD_CALL.findall(path.read_text(encoding="utf-8"))
    }

    assert recorded == set(ACTIONS)
    assert list(ACTIONS) == sorted(ACTIONS)


def test_audit_list_unknown_action(cli, write_config, tmp_path: Path) -> None:
    config, home = write_config(), tmp_path / "home"
    home.mkdir()

    unknown = cli(config, home, "audit", "list", "--action", "nosuch")
    prefix = cli(config, home, "audit", "list", "--action", "model")

    assert unknown.returncode == 1
    assert "no audit entry has action 'nosuch'" in unknown.stderr
    assert "known actions: alert.acknowledge, alert.resolve, config.reload," in (
        unknown.stderr
    )
    assert unknown.stdout == ""
    assert prefix.returncode == 0, prefix.stderr
    assert prefix.stdout == "(none)\n"
