"""The batch drift check: recent predictions against the training reference.

Run by the scheduler in the daemon process (`schedule_drift_checks`), so it
opens the catalog on a second connection of the same process, which DuckDB
allows beside the daemon's own.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from appliance.config import Config, ModelConfig, MonitoringConfig, load_config
from appliance.dbrows import first_row
from appliance.monitoring._alerts import batch_drift_alert
from appliance.monitoring._batch import DriftReport, DriftThresholds, batch_drift
from appliance.monitoring._jobs import schedule_per_model
from appliance.monitoring._store import MonitoringStore
from appliance.monitoring._webhook import send_webhook
from appliance.signing import trusted_keys, verify_version
from appliance.storage import SCHEMA_FILE, Catalog, latest_models, parse_schema

logger = logging.getLogger(__name__)

REFERENCE_ROWS = 50_000
"""Training rows sampled as the reference of each check."""


def thresholds(config: MonitoringConfig) -> DriftThresholds:
    """Return the batch drift rules of the ``[monitoring]`` table."""
    return DriftThresholds(
        min_samples=config.min_samples,
        psi=config.psi_threshold,
        p_value=config.p_value,
        ks_floor=config.ks_floor,
        cramers_v_floor=config.cramers_v_floor,
    )


def schedule_drift_checks(scheduler: Any, config: Config) -> list[str]:
    """Add one periodic drift check per declared model to `scheduler`."""
    return schedule_per_model(
        scheduler,
        config,
        "drift",
        float(config.monitoring.drift_interval_seconds),
        "appliance.monitoring._checks:check_drift",
        str(config.path),
    )


def check_drift(config_path: str, model: str) -> dict[str, Any]:
    """Score the latest predicted rows of `model` against its training data.

    Returns:
        The run's detail: tested and drifted features, or why nothing ran.
    """
    config = load_config(config_path)
    cfg = config.model(model)
    home = config.storage.home
    with Catalog(home) as catalog:
        served = [v for v in latest_models(catalog) if v.model == model]
        if not served:
            return {"skipped": f"model {model!r} has no registered version"}
        files = verify_version(served[0], trusted_keys(config))
        schema = parse_schema(files[SCHEMA_FILE], served[0].path / SCHEMA_FILE)
        numeric = [i["name"] for i in schema["inputs"] if i["type"] == "number"]
        categorical = [i["name"] for i in schema["inputs"] if i["type"] != "number"]
        reference = _reference(catalog, cfg, schema, numeric, categorical)
        current = _current(catalog, model, config.monitoring.drift_window_rows)
    if not current:
        return {"skipped": "no logged prediction yet"}
    columns = _columns(current, numeric, categorical)
    report = batch_drift(
        reference, columns, numeric, categorical, thresholds(config.monitoring)
    )
    _record(home, model, report, config.monitoring)
    logger.info(
        "drift checked model=%s rows=%d tested=%d drifted=%s",
        model,
        len(current),
        report.tested,
        ",".join(report.drifted) or "-",
    )
    return {"rows": len(current), "tested": report.tested, "drifted": report.drifted}


def _reference(
    catalog: Catalog,
    cfg: ModelConfig,
    schema: dict[str, Any],
    numeric: list[str],
    categorical: list[str],
) -> dict[str, np.ndarray]:
    row = first_row(
        catalog.db.execute(
            "SELECT path FROM dataset_versions WHERE dataset = ? AND version = ?",
            [schema["dataset"], schema["dataset_version"]],
        )
    )
    if row is None:
        raise FileNotFoundError(
            f"dataset {schema['dataset']}@{schema['dataset_version']} of model "
            f"{cfg.name!r} is not in the catalog"
        )
    # NOTE: a version trained by the retraining job on a time window (its
    # schema's "window") is still compared with the rows of the model's 'where'.
    path = str(row[0]).replace("'", "''")
    derived = "".join(f", ({expr}) AS {_ident(n)}" for n, expr in cfg.derive.items())
    source = f"SELECT *{derived} FROM read_parquet('{path}')"
    if cfg.where:
        source = f"SELECT * FROM ({source}) WHERE ({cfg.where})"
    select = [f"CAST({_ident(n)} AS DOUBLE) AS {_ident(n)}" for n in numeric]
    select += [f"CAST({_ident(n)} AS VARCHAR) AS {_ident(n)}" for n in categorical]
    frame = catalog.db.execute(
        f"SELECT {', '.join(select)} FROM ({source}) "
        f"USING SAMPLE reservoir({REFERENCE_ROWS} ROWS) REPEATABLE (0)"
    ).df()
    return {name: frame[name].to_numpy() for name in numeric + categorical}


def _current(catalog: Catalog, model: str, limit: int) -> list[dict[str, Any]]:
    tables = {t for (t,) in catalog.db.execute("SHOW TABLES").fetchall()}
    if "predictions" not in tables:
        return []
    rows = catalog.db.execute(
        "SELECT input FROM predictions WHERE model = ? ORDER BY log_id DESC LIMIT ?",
        [model, limit],
    ).fetchall()
    # NOTE: rows already rolled over to Parquet are not read, so a window
    # larger than the table's roll-over size sees only the table's rows.
    return [json.loads(text) for (text,) in rows]


def _columns(
    rows: list[dict[str, Any]], numeric: list[str], categorical: list[str]
) -> dict[str, np.ndarray | list[Any]]:
    columns: dict[str, np.ndarray | list[Any]] = {}
    for name in numeric:
        values = [row.get(name) for row in rows]
        columns[name] = np.array(
            [np.nan if v is None else float(v) for v in values], dtype=np.float64
        )
    for name in categorical:
        columns[name] = [row.get(name) for row in rows]
    return columns


def _record(
    home: Path, model: str, report: DriftReport, config: MonitoringConfig
) -> None:
    candidate = batch_drift_alert(model, report)
    with MonitoringStore(home) as store:
        store.record_drift(model, report)
        if candidate is None:
            return
        alert, new = store.record_alert(candidate)
    if new:
        logger.warning("alert opened id=%d model=%s kind=drift", alert.id, model)
        if config.webhook_url:
            send_webhook(
                config.webhook_url,
                alert.to_dict(),
                config.webhook_retries,
                config.webhook_backoff_seconds,
                config.webhook_timeout_seconds,
            )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
