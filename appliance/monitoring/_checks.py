"""The batch drift check: recent predictions against the training reference.

Run by the scheduler in the daemon process (`schedule_drift_checks`), so it
opens the catalog on a second connection of the same process, which DuckDB
allows beside the daemon's own. An operator runs it at once with ``appliance
drift NAME --check``: through the daemon's ``POST
/v1/models/NAME/drift/check`` while one runs, else in the command's process.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from appliance.config import Config, ModelConfig, MonitoringConfig, load_config
from appliance.dbrows import first_row
from appliance.errors import JobRunningError, NotFoundError
from appliance.monitoring._alerts import Alert, batch_drift_alert
from appliance.monitoring._batch import DriftReport, DriftThresholds, batch_drift
from appliance.monitoring._health import notify
from appliance.monitoring._jobs import schedule_per_model
from appliance.monitoring._store import MonitoringStore
from appliance.predictions import newest_inputs
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


@dataclass(frozen=True)
class DriftCheck:
    """Outcome of one batch drift check of a model."""

    model: str
    checked_at: datetime
    """Time of the check, stored with each of its scores in ``drift_scores``."""
    rows: int = 0
    """Logged predictions scored against the training reference."""
    report: DriftReport | None = None
    """Scores of each feature; None when the check was skipped."""
    skipped: str | None = None
    """Reason nothing was scored, or None when the check ran."""
    alert: Alert | None = None
    """Drift alert that the check opened, or the open one whose count it
    raised; None when no feature drifted."""
    alert_opened: bool = False
    """Whether `alert` is new, and so was sent to the webhook."""

    def detail(self) -> dict[str, Any]:
        """Return the run detail that the scheduled job records in ``job_runs``."""
        if self.report is None:
            return {"skipped": self.skipped}
        return {
            "rows": self.rows,
            "tested": self.report.tested,
            "drifted": self.report.drifted,
        }

    def audit_details(self) -> dict[str, Any]:
        """Return the run detail and the alert id, kept in the audit log."""
        if self.report is None:
            return self.detail()
        alert_id = self.alert.id if self.alert is not None else None
        return {**self.detail(), "alert_id": alert_id}

    def to_dict(self) -> dict[str, Any]:
        """Return the check as JSON-ready values: the run detail, the alert and
        the scores of each feature."""
        result = {
            "model": self.model,
            "checked_at": self.checked_at.isoformat(),
            **self.audit_details(),
        }
        if self.report is not None:
            result["alert_opened"] = self.alert_opened
            result["features"] = [f.to_dict() for f in self.report.features]
        return result


_RUNNING: set[tuple[Path, str]] = set()
"""Home and model of each drift check running in this process."""
_RUNNING_LOCK = threading.Lock()


def check_drift(config_path: str, model: str) -> dict[str, Any]:
    """Run the scheduled batch drift check of `model` with the config file.

    A check of the model that runs already, such as one an operator started,
    makes this run skip.

    Returns:
        The run's detail: tested and drifted features, or why nothing ran.
    """
    try:
        return run_drift_check(load_config(config_path), model).detail()
    except JobRunningError as exc:
        return {"skipped": str(exc)}


def run_drift_check(config: Config, model: str) -> DriftCheck:
    """Score the latest predicted rows of `model` against its training data.

    Stores the scores and opens or updates the drift alert, as the scheduled
    check does. Blocks while the catalog is read and the scores are computed.

    Raises:
        ConfigError: `model` is not declared in `config`.
        JobRunningError: A drift check of `model` runs in this process.
        SignatureError: The model's latest version fails verification.
        NotFoundError: The dataset version the model trained on is not in
            the catalog.
    """
    config.model(model)
    key = (config.storage.home.resolve(), model)
    with _RUNNING_LOCK:
        if key in _RUNNING:
            raise JobRunningError(
                f"a batch drift check of model {model!r} is running; retry when "
                "it has finished",
                job_id=f"drift:{model}",
            )
        _RUNNING.add(key)
    try:
        return _check(config, model)
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(key)


def _check(config: Config, model: str) -> DriftCheck:
    cfg = config.model(model)
    home = config.storage.home
    now = datetime.now(UTC)
    with Catalog(home) as catalog:
        served = [v for v in latest_models(catalog) if v.model == model]
        if not served:
            skipped = f"model {model!r} has no registered version"
            return DriftCheck(model, now, skipped=skipped)
        files = verify_version(served[0], trusted_keys(config))
        schema = parse_schema(files[SCHEMA_FILE], served[0].path / SCHEMA_FILE)
        numeric = [i["name"] for i in schema["inputs"] if i["type"] == "number"]
        categorical = [i["name"] for i in schema["inputs"] if i["type"] != "number"]
        reference = _reference(catalog, cfg, schema, numeric, categorical)
        current = _current(catalog, model, config.monitoring.drift_window_rows)
    if not current:
        return DriftCheck(model, now, skipped="no logged prediction yet")
    columns = _columns(current, numeric, categorical)
    report = batch_drift(
        reference, columns, numeric, categorical, thresholds(config.monitoring)
    )
    alert, opened = _record(home, model, report, config.monitoring, now)
    logger.info(
        "drift checked model=%s rows=%d tested=%d drifted=%s",
        model,
        len(current),
        report.tested,
        ",".join(report.drifted) or "-",
    )
    return DriftCheck(
        model, now, len(current), report, alert=alert, alert_opened=opened
    )


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
        raise NotFoundError(
            f"dataset {schema['dataset']}@{schema['dataset_version']} of model "
            f"{cfg.name!r} is not in the catalog, so the drift check has no "
            "reference rows; train the model again on a dataset version that "
            "'appliance datasets list' shows"
        )
    path = str(row[0]).replace("'", "''")
    derived = "".join(f", ({expr}) AS {_ident(n)}" for n, expr in cfg.derive.items())
    source = f"SELECT *{derived} FROM read_parquet('{path}')"
    condition = _trained_rows(cfg, schema)
    if condition:
        source = f"SELECT * FROM ({source}) WHERE ({condition})"
    select = [f"CAST({_ident(n)} AS DOUBLE) AS {_ident(n)}" for n in numeric]
    select += [f"CAST({_ident(n)} AS VARCHAR) AS {_ident(n)}" for n in categorical]
    frame = catalog.db.execute(
        f"SELECT {', '.join(select)} FROM ({source}) "
        f"USING SAMPLE reservoir({REFERENCE_ROWS} ROWS) REPEATABLE (0)"
    ).df()
    return {name: frame[name].to_numpy() for name in numeric + categorical}


def _trained_rows(cfg: ModelConfig, schema: dict[str, Any]) -> str | None:
    """Return the SQL condition of the dataset rows that the version read.

    A version that the retraining job trained on a time window (its schema's
    ``window``) read the rows with event times in that window, as
    `load_frame` does, in place of the model's ``where``. The condition keeps
    the holdout rows and every row before a ``window_rows`` cut, because the
    training frame read those too.
    """
    window = schema.get("window")
    if not window or not cfg.event_timestamp:
        return cfg.where or None
    time = f"CAST({_ident(cfg.event_timestamp)} AS TIMESTAMPTZ)"
    condition = f"{time} <= {_time_literal(window['end'])}"
    if window.get("start"):
        condition += f" AND {time} >= {_time_literal(window['start'])}"
    return condition


def _time_literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'::TIMESTAMPTZ"


def _current(catalog: Catalog, model: str, limit: int) -> list[dict[str, Any]]:
    """Return the newest `limit` logged input rows of `model`, from the
    predictions table and the rolled Parquet files the window reaches."""
    return [json.loads(text) for text in newest_inputs(catalog, model, limit)]


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
    home: Path,
    model: str,
    report: DriftReport,
    config: MonitoringConfig,
    now: datetime,
) -> tuple[Alert | None, bool]:
    """Store the scores and the drift alert; send a newly opened alert.

    Returns:
        The drift alert, or None when no feature drifted, and whether it is new.
    """
    candidate = batch_drift_alert(model, report)
    with MonitoringStore(home) as store:
        store.record_drift(model, report, now)
        if candidate is None:
            return None, False
        alert, new = store.record_alert(candidate, now)
    if new:
        logger.warning("alert opened id=%d model=%s kind=drift", alert.id, model)
        notify(config, alert.to_dict())
    return alert, new


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
