"""Configuration of datasets, contracts, feature views and the ingest buffer."""

from __future__ import annotations

from pathlib import Path

import pytest

import appliance.features
import appliance.storage
from appliance.config import load_config
from appliance.errors import ConfigError

BASE = """
[storage]
home = "home"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(BASE + text)
    return path


def test_dataset_contract_parsed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[datasets.flights]
partition_by = "month"
keep_versions = 3
date_formats = ["%d-%b-%Y"]

[datasets.flights.contract]
unique_key = ["id"]

[datasets.flights.contract.columns.carrier]
allowed = ["UA", "AA"]
nullable = false
""",
    )

    config = load_config(path)

    flights = config.dataset("flights")
    assert flights.partition_by == "month"
    assert flights.keep_versions == 3
    assert flights.date_formats == ("%d-%b-%Y",)
    assert flights.contract is not None
    assert flights.contract.unique_key == ("id",)
    assert flights.contract.columns["carrier"].allowed == ("UA", "AA")
    assert flights.contract.columns["carrier"].nullable is False
    assert config.dataset("other").partition_by is None


def test_unknown_contract_key_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, '[datasets.d.contract.columns.x]\nkind = "BIGINT"\n')

    with pytest.raises(
        ConfigError, match=r"unknown key 'datasets.d.contract.columns.x.kind'"
    ):
        load_config(path)


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        (
            'regex = "["',
            "regex '[' is not a valid RE2 regular expression: Invalid Input "
            "Error: missing ]: [",
        ),
        (
            "min = 10\nmax = 1",
            "min 10 is above max 1, so every value would be quarantined; swap them",
        ),
        (
            "allowed = []",
            "allowed is empty, so every value would be quarantined; list the "
            "allowed values or remove the key",
        ),
    ],
    ids=["regex", "range", "allowed"],
)
def test_contract_rule_rejected(tmp_path: Path, rule: str, reason: str) -> None:
    path = write(tmp_path, f"[datasets.d.contract.columns.x]\n{rule}\n")

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert str(raised.value) == (
        f"invalid 'datasets.d.contract.columns.x' in {path}: {reason}"
    )


def test_keep_versions_below_one_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "[datasets.d]\nkeep_versions = 0\n")

    with pytest.raises(ConfigError, match="keep_versions must be at least 1, got 0"):
        load_config(path)


def test_empty_null_values_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "[datasets.d]\nnull_values = []\n")

    with pytest.raises(ConfigError, match="null_values must list at least one"):
        load_config(path)


def test_undeclared_feature_view_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[models.m]
dataset = "d"
target = "y"
task = "classification"
feature_views = ["weather"]
""",
    )

    with pytest.raises(
        ConfigError, match="feature view 'weather' of 'models.m'.*not declared"
    ):
        load_config(path)


def test_timestamped_view_needs_event_time(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[feature_views.weather]
sql = "SELECT * FROM weather"
entities = ["origin"]
timestamp = "time_hour"

[models.m]
dataset = "d"
target = "y"
task = "classification"
feature_views = ["weather"]
""",
    )

    with pytest.raises(ConfigError, match="needs 'event_timestamp'"):
        load_config(path)


def test_invalid_ttl_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[feature_views.weather]
sql = "SELECT * FROM weather"
entities = ["origin"]
timestamp = "time_hour"
ttl = "3 hours"
""",
    )

    with pytest.raises(ConfigError, match="invalid duration '3 hours'"):
        load_config(path)


def test_default_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APPLIANCE_CONFIG", raising=False)
    config = load_config()

    model = config.model("flights_late")
    assert model.feature_views == ("weather", "planes")
    assert config.feature_views["weather"].ttl_seconds == 3 * 3600
    assert config.dataset("flights").partition_by == "month"
    assert config.dataset("flights").sensitive == ("tailnum",)
    assert config.dataset("planes").sensitive == ("tailnum",)


@pytest.mark.parametrize("package", [appliance.storage, appliance.features])
def test_public_names_exported(package: object) -> None:
    for name in package.__all__:  # type: ignore[attr-defined]
        assert hasattr(package, name), name
