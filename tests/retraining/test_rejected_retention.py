"""Retention and challengers the retraining gate rejected."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from pipeline_support import train_on

from appliance.config import Config, DatasetConfig
from appliance.registry import collect_card, model_versions, promote, render_card
from appliance.retraining._job import run_offline
from appliance.signing import trusted_keys, version_check
from appliance.storage import Catalog, ingest, list_models, list_runs, list_versions

MODEL = """
[models.m]
dataset = "d"
target = "y"
task = "classification"
algorithm = "logistic_regression"
features = ["a"]
event_timestamp = "t"
[models.m.retrain]
trigger = "drift"
holdout_days = 2
"""

AS_OF = datetime(2024, 3, 11, tzinfo=UTC)


def _rows(seed: int) -> pd.DataFrame:
    """Return hourly rows from 2024-03-01 whose class any model separates."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "a": rng.normal(size=240),
            "t": pd.date_range("2024-03-01", periods=240, freq="1h", tz="UTC"),
        }
    )
    data["y"] = np.where(data["a"] > 0, "yes", "no")
    return data


def _ingest(folder: Path, config: Config, seed: int, keep: int | None) -> str:
    source = folder / f"more{seed}.parquet"
    _rows(seed).to_parquet(source, index=False)
    settings = DatasetConfig(name="d", keep_versions=keep)
    with Catalog(config.storage.home) as catalog:
        return ingest(catalog, "d", [source], settings=settings).version.version


def _reject_twice(tmp_path: Path) -> tuple[Config, str, str]:
    """Train v1 on one version, then two rejected challengers on the next."""
    config, champion = train_on(tmp_path, _rows(0), MODEL)
    second = _ingest(tmp_path, config, 1, keep=None)
    for _ in range(2):
        record = run_offline(config, "m", as_of=AS_OF, force=True)
        assert record["outcome"] == "rejected", record["reason"]
    return config, champion.dataset_version, second


def test_rejected_challengers_keep_no_version(tmp_path: Path) -> None:
    config, first, second = _reject_twice(tmp_path)
    third = _ingest(tmp_path, config, 2, keep=1)

    with Catalog(config.storage.home, read_only=True) as catalog:
        remaining = [v.version for v in list_versions(catalog, "d")]
        versions = sorted(v.version for v in list_models(catalog, "m"))
        runs = {r.model_version: r for r in list_runs(catalog, "m")}
        records = {r["version"]: r for r in model_versions(catalog, "m")}
        card = render_card(collect_card(catalog, "m", 2, trusted_keys(config)))
    assert remaining == [third, first]
    assert second not in remaining
    assert not (config.storage.home / "lake" / "d" / f"version={second}").exists()
    # The audit keeps the challengers, their runs and their metrics.
    assert versions == [1, 2, 3]
    assert runs[2].dataset_version == second
    assert runs[3].metrics
    assert records[2]["training_data"] == f"d@{second}"
    assert records[2]["training_data_removed"] is True
    assert records[1]["training_data_removed"] is False
    assert f"d@{second} (removed by retention)" in card
    assert "<td>retraining gate</td><td>rejected by retraining " in card


def test_promoted_rejection_keeps_version(tmp_path: Path) -> None:
    config, first, second = _reject_twice(tmp_path)
    with Catalog(config.storage.home) as catalog:
        load = version_check(trusted_keys(config))
        promote(catalog, "m", 2, "champion", "operator", "chosen by hand", load)
    third = _ingest(tmp_path, config, 2, keep=1)

    with Catalog(config.storage.home, read_only=True) as catalog:
        remaining = [v.version for v in list_versions(catalog, "d")]
    assert remaining == [third, second, first]


def test_datasets_show_names_rejections(tmp_path: Path) -> None:
    config, _, second = _reject_twice(tmp_path)
    command = [sys.executable, "-m", "appliance", "--config", str(config.path)]
    show = subprocess.run(
        [*command, "datasets", "show", f"d@{second}"], capture_output=True, text=True
    )
    listed = subprocess.run(
        [*command, "datasets", "list", "--json"], capture_output=True, text=True
    )
    models = subprocess.run(
        [*command, "models", "list", "--json"], capture_output=True, text=True
    )

    assert show.returncode == 0, show.stderr
    assert (
        "used by     m v2, m v3 (challengers the retraining gate rejected, so "
        "retention does not keep this version)"
    ) in show.stdout
    assert listed.returncode == 0, listed.stderr
    rows = {r["version"]: r for r in map(json.loads, listed.stdout.splitlines())}
    assert rows[second]["used_by"] == ["m v2", "m v3"]
    assert rows[second]["rejected_users"] == ["m v2", "m v3"]
    assert models.returncode == 0, models.stderr
    records = {r["version"]: r for r in map(json.loads, models.stdout.splitlines())}
    assert records[1]["gate"] is None
    assert records[2]["gate"].startswith("rejected by retraining ")
    assert records[2]["training_data"] == f"d@{second}"
