"""``gate_rejections`` filled from the audit log of a catalog made before it.

The catalog is made the old way: a daemon on 127.0.0.1 runs a retraining
whose challenger the gate rejects, then the ``gate_rejections`` table is
dropped, which leaves the catalog as code without the table wrote it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import numpy as np
import pandas as pd
from pipeline_support import train_on
from support import start_daemon, stop_daemon

from appliance.config import Config, DatasetConfig
from appliance.retraining._job import run_offline
from appliance.storage import Catalog, gate_rejections, ingest, list_versions

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
RETRAIN = "/v1/models/m/retrain"


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


def _reject_through_daemon(config: Config) -> dict[str, Any]:
    """Run one forced retraining in a daemon; return its finished record."""
    home = config.storage.home
    daemon = start_daemon(config.path, home, home.parent / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            body = {"as_of": AS_OF.isoformat(), "force": True}
            started = client.post(RETRAIN, json=body, timeout=30)
            assert started.status_code == 202, started.text
            deadline = time.monotonic() + 120
            while (state := client.get(RETRAIN, timeout=30).json())["running"]:
                assert time.monotonic() < deadline, "retraining still running"
                time.sleep(0.2)
    finally:
        assert stop_daemon(daemon) == 0
    return state["history"][0]


def _drop_rejections(home: Path) -> dict:
    """Drop ``gate_rejections`` and the schema record, as a catalog made before
    both lacks them; return the rows it had."""
    with Catalog(home) as catalog:
        recorded = gate_rejections(catalog)
    with duckdb.connect(str(home / "catalog.duckdb")) as db:
        db.execute("DROP TABLE gate_rejections; DROP TABLE catalog_schema")
    return recorded


def test_old_catalog_rejections_filled_once(tmp_path: Path) -> None:
    config, champion = train_on(tmp_path, _rows(0), MODEL)
    second = _ingest(tmp_path, config, 1, keep=None)
    record = _reject_through_daemon(config)
    home = config.storage.home
    recorded = _drop_rejections(home)

    with Catalog(home) as catalog:
        filled = gate_rejections(catalog)
    third = _ingest(tmp_path, config, 2, keep=1)
    with Catalog(home) as catalog:
        remaining = [v.version for v in list_versions(catalog, "d")]
        catalog.db.execute("DELETE FROM gate_rejections")
    with Catalog(home) as catalog:
        reopened = gate_rejections(catalog)

    assert record["outcome"] == "rejected", record["reason"]
    assert record["challenger_version"] == 2
    assert list(recorded) == [("m", 2)]
    assert list(filled) == [("m", 2)]
    assert filled["m", 2]["retrain_id"] == recorded["m", 2]["retrain_id"]
    assert filled["m", 2]["retrain_id"] == record["id"]
    assert filled["m", 2]["reason"] == recorded["m", 2]["reason"]
    assert filled["m", 2]["rejected_at"] >= recorded["m", 2]["rejected_at"]
    # Retention keeps no version for the rejected challenger any more.
    assert remaining == [third, champion.dataset_version]
    assert second not in remaining
    # The fill ran once, when the catalog got the table.
    assert reopened == {}


def test_offline_rejection_not_filled(tmp_path: Path) -> None:
    config, _ = train_on(tmp_path, _rows(0), MODEL)
    _ingest(tmp_path, config, 1, keep=None)
    record = run_offline(config, "m", as_of=AS_OF, force=True)
    recorded = _drop_rejections(config.storage.home)

    with Catalog(config.storage.home) as catalog:
        filled = gate_rejections(catalog)

    assert record["outcome"] == "rejected", record["reason"]
    assert list(recorded) == [("m", 2)]
    # Without a daemon the retraining records no audit entry to fill from.
    assert filled == {}
