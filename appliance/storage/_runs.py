"""Training runs: a row per run, written as running and closed as finished or failed."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from appliance.errors import NotFoundError
from appliance.storage._catalog import Catalog

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """One training run as recorded in the catalog."""

    run_id: str
    model: str
    status: str
    """``running``, ``finished`` or ``failed``."""
    started_at: datetime
    finished_at: datetime | None
    dataset: str
    dataset_version: str | None
    params: dict[str, Any]
    metrics: dict[str, Any] | None
    code_version: str
    model_version: int | None
    error: str | None


def start_run(
    catalog: Catalog,
    model: str,
    dataset: str,
    params: dict[str, Any],
    code_version: str,
) -> str:
    """Record a new run as running and return its id."""
    run_id = uuid.uuid4().hex[:12]
    catalog.db.execute(
        "INSERT INTO runs (run_id, model, status, started_at, dataset, params_json, "
        "code_version) VALUES (?, ?, 'running', ?, ?, ?, ?)",
        [run_id, model, _now(), dataset, json.dumps(params, default=str), code_version],
    )
    logger.info("run started run=%s model=%s", run_id, model)
    return run_id


def finish_run(
    catalog: Catalog,
    run_id: str,
    dataset_version: str,
    metrics: dict[str, Any],
    model_version: int | None,
    error: str | None = None,
) -> None:
    """Close a run as finished, or as failed when `error` is given."""
    status = "failed" if error else "finished"
    catalog.db.execute(
        "UPDATE runs SET status = ?, finished_at = ?, dataset_version = ?, "
        "metrics_json = ?, model_version = ?, error = ? WHERE run_id = ?",
        [
            status,
            _now(),
            dataset_version,
            json.dumps(metrics),
            model_version,
            error,
            run_id,
        ],
    )
    logger.info("run %s run=%s", status, run_id)


def fail_run(catalog: Catalog, run_id: str, error: str) -> None:
    """Close a run as failed with the error message."""
    catalog.db.execute(
        "UPDATE runs SET status = 'failed', finished_at = ?, error = ? "
        "WHERE run_id = ?",
        [_now(), error, run_id],
    )
    logger.info("run failed run=%s error=%s", run_id, error)


def list_runs(catalog: Catalog, model: str | None = None) -> list[Run]:
    """Return runs, newest first, optionally of one model."""
    sql = "SELECT * FROM runs"
    params: list[Any] = []
    if model is not None:
        sql += " WHERE model = ?"
        params.append(model)
    rows = catalog.db.execute(sql + " ORDER BY started_at DESC", params).fetchall()
    return [_from_row(row) for row in rows]


def get_run(catalog: Catalog, run_id: str) -> Run:
    """Return one run.

    Raises:
        NotFoundError: No run has this id.
    """
    row = catalog.db.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if row is None:
        raise NotFoundError(
            f"run {run_id!r} not found; 'appliance runs list' shows ids"
        )
    return _from_row(row)


def _from_row(row: tuple) -> Run:
    (
        run_id,
        model,
        status,
        started,
        finished,
        dataset,
        dataset_version,
        params,
        metrics,
        code_version,
        model_version,
        error,
    ) = row
    return Run(
        run_id,
        model,
        status,
        started,
        finished,
        dataset,
        dataset_version,
        json.loads(params),
        json.loads(metrics) if metrics else None,
        code_version,
        model_version,
        error,
    )


def _now() -> datetime:
    return datetime.now(timezone.utc)
