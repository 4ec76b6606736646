"""The reload check: which changed settings need a restart, and how they read."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
from support import load_config_text

from appliance import _reload_checks
from appliance._reload_checks import check_reloadable, restart_changes
from appliance.errors import ConfigError


def test_restart_changes_named_per_key(tmp_path: Path) -> None:
    old = load_config_text(tmp_path, "[server]\nport = 9000\n")
    new = load_config_text(
        tmp_path,
        "[server]\nport = 9001\nmax_rows = 3\n"
        '[security]\nrequire_keys = true\ntrusted_keys = ["a.pub"]\n'
        'column_key = "c.key"\n'
        '[datasets.flights]\nsensitive = ["tailnum"]\n',
    )
    changes = restart_changes(old, new)
    assert changes == [
        "server.port: 9000 -> 9001",
        f'security.column_key: (not set) -> "{tmp_path / "c.key"}"',
        'datasets.*.sensitive: [] -> ["tailnum"]',
    ]
    with pytest.raises(ConfigError, match="restart the daemon to apply them$"):
        check_reloadable(old, new)


def test_reloadable_change_passes(tmp_path: Path) -> None:
    old = load_config_text(tmp_path, "[server]\nmax_rows = 5\n")
    new = load_config_text(tmp_path, "[server]\nmax_rows = 2\n")
    assert restart_changes(old, new) == []
    check_reloadable(old, new)


@dataclasses.dataclass(frozen=True)
class _Tokens:
    name: str
    token: str = dataclasses.field(repr=False)


def test_secret_field_values_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_reload_checks, "RESTART_SETTINGS", {"tokens": None})
    old = SimpleNamespace(tokens=_Tokens("a", "apk_old"), sensitive_columns=set())
    new = SimpleNamespace(tokens=_Tokens("b", "apk_new"), sensitive_columns=set())
    changes = restart_changes(old, new)  # type: ignore[arg-type]
    assert changes == ['tokens.name: "a" -> "b"', "tokens.token (value not shown)"]
