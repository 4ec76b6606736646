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
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from appliance.config import Config, MonitoringConfig, load_config
from appliance.errors import JobRunningError, shown
from appliance.monitoring._alerts import (
    Alert,
    AlertCandidate,
    AlertStatus,
    batch_drift_alert,
)
from appliance.monitoring._batch import DriftReport, DriftThresholds, batch_drift
from appliance.monitoring._health import notify, raise_alerts, resolve_alerts
from appliance.monitoring._jobs import job_state, schedule_per_model
from appliance.monitoring._logged_rows import (
    Columns,
    Unfit,
    UnfitRows,
    derived_columns,
    numeric_columns,
    unfit_rows,
)
from appliance.monitoring._store import MonitoringStore
from appliance.predictions import newest_logged_inputs
from appliance.signing import trusted_keys, verify_version
from appliance.storage import (
    CHAMPION,
    SCHEMA_FILE,
    Catalog,
    ModelVersion,
    aliases,
    list_models,
    parse_schema,
)

logger = logging.getLogger(__name__)

REFERENCE_ROWS = 50_000
"""Training rows sampled as the reference of each check."""
JOB_ALERT = "job"
"""Alert kind of a failed scheduled drift check."""


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
    version: int | None = None
    """Version whose training rows are the reference; None when the model
    has no registered version."""
    version_source: str | None = None
    """``champion`` when `version` is the one the champion alias names, or
    ``latest`` when no champion alias is set and the newest version is used."""
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
    unfit: UnfitRows | None = None
    """Logged rows left out of the features computed from them, because they
    do not fit the reference version's request types; None when every row
    fits."""

    def detail(self) -> dict[str, Any]:
        """Return the run detail that the scheduled job records in ``job_runs``."""
        versions = {"version": self.version, "version_source": self.version_source}
        if self.report is None:
            return {**versions, "skipped": self.skipped}
        unfit = self.unfit
        return {
            **versions,
            "rows": self.rows,
            "tested": self.report.tested,
            "drifted": self.report.drifted,
            "unfit_rows": unfit.rows if unfit is not None else 0,
            "first_unfit_row": unfit.first.to_dict() if unfit is not None else None,
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
    makes this run skip. A failed check opens a ``job`` alert, or counts up
    the open one, before its error reaches the job runner, and the next run
    that finishes resolves it.

    Returns:
        The run's detail: tested and drifted features, or why nothing ran.
    """
    config = load_config(config_path)
    try:
        detail = run_drift_check(config, model).detail()
    except JobRunningError as exc:
        return {"skipped": str(exc)}
    except Exception as exc:
        _alert_failed_check(config, model, exc)
        raise
    _resolve_failed_check(config, model)
    return detail


def _alert_failed_check(config: Config, model: str, exc: Exception) -> None:
    """Open or count up the ``job`` alert of a failed scheduled drift check.

    The job runner records the run as failed and logs the traceback. The
    alert shows the failure where operators look for problems, and sends it
    to the webhook once while it stays open.
    """
    job_id = f"drift:{model}"
    message = (
        f"scheduled job {job_id} failed: {type(exc).__name__}: {exc}. The "
        f"batch drift check of model {model!r} scores no drift until this is "
        f"fixed; run 'appliance drift {model} --check' to see the error again"
    )
    candidate = AlertCandidate(model, JOB_ALERT, job_id, "warning", message)
    try:
        raise_alerts(config.storage.home, [candidate], config.monitoring)
    except Exception:
        logger.exception("job failure alert not stored job=%s", job_id)


def _resolve_failed_check(config: Config, model: str) -> None:
    """Resolve the ``job`` alert of the drift check once a run finishes."""
    job_id = f"drift:{model}"
    try:
        resolve_alerts(
            config.storage.home,
            model,
            (JOB_ALERT,),
            f"scheduled job {job_id} finished",
            config.monitoring,
            subject=job_id,
        )
    except Exception:
        logger.exception("job failure alert not resolved job=%s", job_id)


def run_drift_check(config: Config, model: str) -> DriftCheck:
    """Score the latest predicted rows of `model` against its training data.

    The training data is that of the version the champion alias names, or
    of the newest version while no champion alias is set. Stores the scores
    and opens or updates the drift alert, as the scheduled check does.
    Blocks while the catalog is read and the scores are computed.

    Raises:
        ConfigError: `model` is not declared in `config`, or a feature view
            that it joins is not.
        JobRunningError: A drift check of `model` runs in this process.
        SignatureError: The reference version fails verification.
        IntegrityError: The reference version's schema contains SQL that is
            not one expression or one type per entry.
        NotFoundError: The dataset version the model trained on, or one that
            its feature views read, is not in the catalog.
        TrainingError: The training rows cannot be read or joined.
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
    home = config.storage.home
    now = datetime.now(UTC)
    with Catalog(home) as catalog:
        found = _reference_version(catalog, model)
        if found is None:
            skipped = f"model {model!r} has no registered version"
            return DriftCheck(model, now, skipped=skipped)
        version, source = found
        checked = DriftCheck(model, now, version.version, source)
        files = verify_version(version, trusted_keys(config))
        schema = parse_schema(files[SCHEMA_FILE], version.path / SCHEMA_FILE)
        ids, current = _current(catalog, model, config.monitoring.drift_window_rows)
        if not current:
            return replace(checked, skipped="no logged prediction yet")
        reference = _reference(catalog, config, model, schema)
    numeric, categorical = _inputs(schema)
    columns, unfit = _columns(model, version.version, schema, current, ids)
    report = batch_drift(
        reference, columns, numeric, categorical, thresholds(config.monitoring)
    )
    alert, opened = _record(home, model, report, config.monitoring, now)
    logger.info(
        "drift checked model=%s version=%d reference=%s rows=%d tested=%d drifted=%s",
        model,
        version.version,
        source,
        len(current),
        report.tested,
        ",".join(report.drifted) or "-",
    )
    return replace(
        checked,
        rows=len(current),
        report=report,
        alert=alert,
        alert_opened=opened,
        unfit=unfit,
    )


def _reference(
    catalog: Catalog, config: Config, model: str, schema: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Return a sample of the version's training rows, by input column."""
    # Imported here: the training package imports the serving package, which
    # imports this one.
    from appliance.training import sample_trained_rows

    numeric, categorical = _inputs(schema)
    frame = sample_trained_rows(
        catalog,
        config.model(model),
        config.feature_views,
        schema,
        (numeric, categorical),
        REFERENCE_ROWS,
    )
    return {name: frame[name].to_numpy() for name in numeric + categorical}


def _inputs(schema: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Return the numeric and the categorical inputs of a version's schema."""
    numeric = [i["name"] for i in schema["inputs"] if i["type"] == "number"]
    categorical = [i["name"] for i in schema["inputs"] if i["type"] != "number"]
    return numeric, categorical


def _reference_version(catalog: Catalog, model: str) -> tuple[ModelVersion, str] | None:
    """Return the version whose training rows are the reference, and why.

    That is the version the champion alias names, which the daemon serves,
    and not a newer challenger that the gate may have rejected. While no
    champion alias is set, the newest version is used, marked ``latest``.
    Returns None when the model has no registered version.
    """
    versions = list_models(catalog, model)
    if not versions:
        return None
    champion = aliases(catalog, model).get(model, {}).get(CHAMPION)
    for version in versions:
        if version.version == champion:
            return version, "champion"
    return versions[0], "latest"


def _current(
    catalog: Catalog, model: str, limit: int
) -> tuple[list[tuple[str, int]], list[dict[str, Any]]]:
    """Return the request id and row index, and the input row, of the newest
    `limit` logged predictions of `model`, from the predictions table and the
    rolled Parquet files the window reaches."""
    logged = newest_logged_inputs(catalog, model, limit)
    ids = [(request_id, row) for request_id, row, _ in logged]
    return ids, [json.loads(text) for _, _, text in logged]


def _columns(
    model: str,
    version: int,
    schema: dict[str, Any],
    rows: list[dict[str, Any]],
    ids: list[tuple[str, int]],
) -> tuple[Columns, UnfitRows | None]:
    """Return the features of the logged rows and the rows left out of them.

    Raises:
        IntegrityError: The schema contains SQL that is not one expression or
            one type per entry.
    """
    found: dict[int, Unfit] = {}
    columns = derived_columns(model, version, schema, rows, found)
    numeric, categorical = _inputs(schema)
    raw = [name for name in numeric if name not in columns]
    columns.update(numeric_columns(rows, raw, found))
    for name in categorical:
        columns.setdefault(name, [row.get(name) for row in rows])
    unfit = unfit_rows(ids, found)
    if unfit is not None:
        _warn_unfit(model, version, len(rows), unfit)
    return columns, unfit


def _warn_unfit(model: str, version: int, rows: int, unfit: UnfitRows) -> None:
    """Log the logged rows left out of the check, and the first of them."""
    if unfit.rows == rows:
        outcome = (
            "no logged row fits the request types, so the features computed "
            "from them score as insufficient data"
        )
    else:
        outcome = (
            "logged rows that do not fit the request types left out of the "
            "features computed from them"
        )
    first = unfit.first
    logger.warning(
        "%s model=%s version=%d rows=%d unfit_rows=%d request_id=%s row=%d "
        "column=%s value=%s error=%s",
        outcome,
        model,
        version,
        rows,
        unfit.rows,
        first.request_id,
        first.row,
        first.column or "-",
        shown(first.value),
        first.error,
    )


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


def scheduled_drift_check(store: MonitoringStore, model: str) -> dict[str, Any]:
    """Return the state of the scheduled drift check of `model` and its alert.

    The fields are those of `job_state` for the job ``drift:MODEL``, and
    ``alert``: the id, status, count, opened_at and last_seen_at of the open
    or acknowledged `JOB_ALERT` of that job, or None.
    """
    check = job_state(store, f"drift:{model}")
    alerts = [
        alert
        for alert in store.list_alerts(model=model)
        if alert.kind == JOB_ALERT
        and alert.subject == check["job_id"]
        and alert.status is not AlertStatus.RESOLVED
    ]
    check["alert"] = None
    if alerts:
        fields = ("id", "status", "count", "opened_at", "last_seen_at")
        values = alerts[0].to_dict()
        check["alert"] = {key: values[key] for key in fields}
    return check
