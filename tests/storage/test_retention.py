"""Retention: old dataset versions go, unless a registered model was trained on them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from appliance.config import DatasetConfig
from appliance.errors import NotFoundError
from appliance.storage import Catalog, get_dataset_version, ingest, list_versions
from pipeline_support import train_on

MODEL = """
[models.m]
dataset = "d"
target = "y"
task = "regression"
algorithm = "linear_regression"
features = ["a"]
"""


def _data(seed: int, rows: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=rows)
    return pd.DataFrame({"a": a, "y": 2 * a + rng.normal(scale=0.1, size=rows)})


def _ingest_more(tmp_path: Path, catalog: Catalog, seed: int, keep: int) -> str:
    source = tmp_path / f"more{seed}.parquet"
    _data(seed).to_parquet(source, index=False)
    settings = DatasetConfig(name="d", keep_versions=keep)
    return ingest(catalog, "d", [source], settings=settings).version.version


def test_retention_keeps_trained_on_version(tmp_path: Path) -> None:
    config, trained = train_on(tmp_path, _data(0), MODEL)

    with Catalog(config.storage.home) as catalog:
        second = _ingest_more(tmp_path, catalog, 1, keep=1)
        third = _ingest_more(tmp_path, catalog, 2, keep=1)
        kept = [v.version for v in list_versions(catalog, "d")]
        used = get_dataset_version(catalog, f"d@{trained.dataset_version}")

    assert kept == [third, trained.dataset_version]
    assert second not in kept
    assert used.used_by == ["m v1"]
    assert used.path.exists()
    assert not (used.path.parent / f"version={second}").exists()


def test_datasets_list_names_model_versions(tmp_path: Path) -> None:
    config, trained = train_on(tmp_path, _data(0), MODEL)
    with Catalog(config.storage.home) as catalog:
        newest = _ingest_more(tmp_path, catalog, 1, keep=1)

    command = [
        sys.executable,
        "-m",
        "appliance",
        "--config",
        str(tmp_path / "config.toml"),
    ]
    listed = subprocess.run(
        [*command, "datasets", "list", "--json"], capture_output=True, text=True
    )
    shown = subprocess.run(
        [*command, "datasets", "show", f"d@{trained.dataset_version}"],
        capture_output=True,
        text=True,
    )

    assert listed.returncode == 0, listed.stderr
    rows = {row["version"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert rows[trained.dataset_version]["used_by"] == ["m v1"]
    assert rows[newest]["used_by"] == []
    assert shown.returncode == 0, shown.stderr
    assert "used by     m v1 (retention keeps this version)" in shown.stdout


def test_removed_version_named_as_removed(tmp_path: Path) -> None:
    with Catalog(tmp_path / "home") as catalog:
        first = _ingest_more(tmp_path, catalog, 1, keep=1)
        latest = _ingest_more(tmp_path, catalog, 2, keep=1)

        with pytest.raises(NotFoundError) as raised:
            get_dataset_version(catalog, f"d@{first[:8]}")

    message = str(raised.value)
    assert message.startswith(
        f"version {first} of dataset 'd' was removed by the retention rule "
        "([datasets.d] keep_versions) at "
    )
    assert message.endswith(f"; versions: {latest}")


def test_appends_of_quarantined_rows_not_counted(tmp_path: Path) -> None:
    from appliance.config import ColumnRule, ContractConfig

    contract = ContractConfig(columns={"a": ColumnRule(type="DOUBLE", min=0)})
    settings = DatasetConfig(name="d", keep_versions=2, contract=contract)
    with Catalog(tmp_path / "home") as catalog:
        with_rows = []
        for seed in (1, 2):
            source = tmp_path / f"good{seed}.csv"
            source.write_text(f"a,y\n{seed}.5,1.0\n")
            ingest(catalog, "d", [source], settings=settings, mode="append")
            with_rows.append(list_versions(catalog, "d")[0].version)
        for seed in range(3):
            source = tmp_path / f"bad{seed}.csv"
            source.write_text(f"a,y\n-{seed + 1},1.0\n")
            ingest(catalog, "d", [source], settings=settings, mode="append")
        kept = list_versions(catalog, "d")

    # The newest 2 of the 3 appends without rows stay, beside both with rows.
    assert len(kept) == 4
    assert [v.version for v in kept[2:]] == with_rows[::-1]
    assert [v.report["accepted"] for v in kept] == [0, 0, 1, 1]
