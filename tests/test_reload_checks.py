"""The reload check: which changed settings need a restart, and how they read."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from support import load_config_text

from appliance import _reload_checks
from appliance._reload_checks import (
    changed_settings,
    check_reloadable,
    restart_changes,
    warn_missing_datasets,
)
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


def test_changed_settings_named_without_values(tmp_path: Path) -> None:
    old = load_config_text(
        tmp_path,
        'log_level = "INFO"\n[server]\nmax_rows = 5\n'
        '[models.gone]\ndataset = "d"\ntarget = "y"\ntask = "regression"\n',
    )
    new = load_config_text(
        tmp_path,
        'log_level = "DEBUG"\n[server]\nmax_rows = 2\n'
        '[monitoring]\nwebhook_url = "https://hooks.example.invalid/t0ken"\n'
        '[models.extra]\ndataset = "d"\ntarget = "y"\ntask = "regression"\n',
    )

    changes = changed_settings(old, new)

    assert changes == {
        "changed": ["server.max_rows", "log_level", "monitoring.webhook_url"],
        "added": ["models.extra"],
        "removed": ["models.gone"],
    }
    assert "t0ken" not in repr(changes)
    assert changed_settings(old, old) == {}


def test_missing_dataset_warned_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from appliance.storage import Catalog, ingest

    config = load_config_text(
        tmp_path,
        f'[storage]\nhome = "{tmp_path / "home"}"\n'
        '[models.kept]\ndataset = "points"\ntarget = "y"\ntask = "regression"\n'
        '[models.typo]\ndataset = "pionts"\ntarget = "y"\ntask = "regression"\n',
    )
    source = tmp_path / "points.csv"
    source.write_text("x,y\n1,2\n", encoding="utf-8")

    with Catalog(config.storage.home) as catalog:
        assert warn_missing_datasets(catalog, config) == []
        ingest(catalog, "points", [source])
        with caplog.at_level(logging.WARNING, logger="appliance._reload_checks"):
            assert warn_missing_datasets(catalog, config) == ["typo"]

    # Threads of earlier tests may log at the same time, so only this
    # module's records count.
    (record,) = [r for r in caplog.records if r.name == "appliance._reload_checks"]
    assert "model=typo dataset=pionts" in record.getMessage()
