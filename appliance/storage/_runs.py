"""Training runs: a row per run, written as running and closed as finished or failed.

A run is inserted when it starts, with its parameters and environment. Its
results (metrics, per-fold metrics, evaluation, metric series and artifacts)
are committed in one transaction when it finishes. A run that fails is closed
as ``failed``, and one stopped on request or ended with its process as
``interrupted``; either keeps its error and no partial results.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import duckdb

from appliance.dbrows import first_row
from appliance.errors import NotFoundError, StorageError, one_line
from appliance.storage._blobs import read_blob, write_blob
from appliance.storage._catalog import Catalog

logger = logging.getLogger(__name__)

RUNNING = "running"
"""The run started and has not closed yet."""
FINISHED = "finished"
"""The run closed with its results."""
FAILED = "failed"
"""The run closed with an error and no results."""
INTERRUPTED = "interrupted"
"""A stop request or the end of its process closed the run, with no results."""

_COLUMNS = (
    "run_id, model, status, started_at, finished_at, dataset, dataset_version, "
    "params_json, metrics_json, code_version, model_version, error, parent_run_id, "
    "kind, tags_json, feature_views_json, packages_json, host, pid, "
    "duration_seconds, folds_json, evaluation_json"
)
_SUMMARY_COLUMNS = _COLUMNS.replace("folds_json, evaluation_json", "NULL, NULL")


@dataclass(frozen=True)
class Run:
    """One training run as recorded in the catalog."""

    run_id: str
    model: str
    status: str
    """``running``, ``finished``, ``failed`` or ``interrupted``. A run left
    running by a process of this host that has ended reads as interrupted."""
    started_at: datetime
    finished_at: datetime | None
    dataset: str
    dataset_version: str | None
    params: dict[str, Any]
    """Estimator parameters with every default, plus ``algorithm``."""
    metrics: dict[str, Any] | None
    code_version: str
    model_version: int | None
    error: str | None
    parent_run_id: str | None = None
    """Run of the search that this trial belongs to."""
    kind: str = "train"
    """``train`` (one fit), ``search`` (a search and its refit) or ``trial``."""
    tags: dict[str, str] = field(default_factory=dict)
    feature_views: dict[str, str] = field(default_factory=dict)
    """Feature view name to the version the run read."""
    packages: dict[str, str] = field(default_factory=dict)
    """Versions of Python and the key libraries."""
    host: str = ""
    pid: int | None = None
    duration_seconds: float | None = None
    folds: list[dict[str, float]] | None = None
    """Cross-validation metrics, one dictionary per fold."""
    evaluation: dict[str, Any] | None = None
    """Structured results: confusion matrix, per-class and per-segment metrics."""


@dataclass
class RunResult:
    """Results of a finished run, committed at once by `finish_run`."""

    dataset_version: str | None
    metrics: dict[str, Any]
    model_version: int | None = None
    params: dict[str, Any] | None = None
    """Final parameters, when they differ from those given at start."""
    folds: list[dict[str, float]] | None = None
    evaluation: dict[str, Any] | None = None
    feature_views: dict[str, str] | None = None


class RunLog:
    """Buffer of metric series and artifacts of one run.

    Metrics stay in memory until `finish_run` inserts them in one batch.
    Artifacts are written to the content-addressed blob store at once, and
    their catalog rows are committed with the run, so a failed run leaves at
    most unreferenced blobs behind.
    """

    def __init__(self, catalog: Catalog, run_id: str) -> None:
        self.catalog = catalog
        self.run_id = run_id
        self._keys: list[str] = []
        self._steps: list[int] = []
        self._values: list[float] = []
        self._times: list[int] = []
        """Epoch microseconds of each value."""
        self.artifacts: dict[str, tuple[str, int, str]] = {}

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        """Add one value of metric `key` at `step`."""
        self._keys.append(key)
        self._steps.append(step)
        self._values.append(float(value))
        self._times.append(time.time_ns() // 1000)

    def log_artifact(
        self, name: str, data: bytes, media_type: str = "application/octet-stream"
    ) -> str:
        """Store `data` as artifact `name` of the run and return its sha256."""
        digest = write_blob(self.catalog.blobs_dir, data)
        self.artifacts[name] = (digest, len(data), media_type)
        return digest

    @property
    def metric_count(self) -> int:
        """Return how many metric values are buffered."""
        return len(self._keys)


def start_run(
    catalog: Catalog,
    model: str,
    dataset: str,
    params: dict[str, Any],
    code_version: str,
    *,
    parent_run_id: str | None = None,
    kind: str = "train",
    tags: dict[str, str] | None = None,
    packages: dict[str, str] | None = None,
    started_at: datetime | None = None,
) -> str:
    """Record a new run as running and return its id.

    `started_at` is the time the work began, now by default. A caller sets
    it when the work began before this call, as for a search candidate that
    is recorded after it ran.
    """
    _close_interrupted(catalog)
    run_id = uuid.uuid4().hex[:12]
    catalog.db.execute(
        "INSERT INTO runs (run_id, model, status, started_at, dataset, params_json, "
        "code_version, parent_run_id, kind, tags_json, packages_json, host, pid) "
        "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run_id,
            model,
            started_at or _now(),
            dataset,
            _dumps(params),
            code_version,
            parent_run_id,
            kind,
            _dumps(tags or {}),
            _dumps(packages or {}),
            socket.gethostname(),
            os.getpid(),
        ],
    )
    logger.info(
        "run started run=%s model=%s kind=%s parent=%s",
        run_id,
        model,
        kind,
        parent_run_id,
    )
    return run_id


def finish_run(
    catalog: Catalog,
    run_id: str,
    result: RunResult,
    log: RunLog | None = None,
    finished_at: datetime | None = None,
) -> None:
    """Close a run as finished and store its results in one transaction.

    `finished_at` is the time the work ended; now by default.

    Raises:
        StorageError: The catalog rejected the write; the run stays running
            and the caller records it as failed.
    """
    db = catalog.db
    finished = finished_at or _now()
    try:
        with catalog.transaction():
            _mark_finished(db, run_id, result, finished)
            if log is not None:
                _insert_log(catalog, log)
    except duckdb.Error as exc:
        raise StorageError(f"cannot record the results of run {run_id}: {exc}") from exc
    logger.info("run finished run=%s", run_id)


def _mark_finished(
    db: duckdb.DuckDBPyConnection, run_id: str, result: RunResult, finished: datetime
) -> None:
    """Set the run's status to finished and store `result` in its row."""
    db.execute(
        "UPDATE runs SET status = 'finished', finished_at = ?, "
        "dataset_version = ?, metrics_json = ?, model_version = ?, "
        "params_json = coalesce(?, params_json), folds_json = ?, "
        "evaluation_json = ?, feature_views_json = coalesce(?, "
        "feature_views_json), duration_seconds = "
        "epoch(CAST(? AS TIMESTAMPTZ) - started_at) WHERE run_id = ?",
        [
            finished,
            result.dataset_version,
            _dumps(result.metrics),
            result.model_version,
            None if result.params is None else _dumps(result.params),
            None if result.folds is None else _dumps(result.folds),
            None if result.evaluation is None else _dumps(result.evaluation),
            None if result.feature_views is None else _dumps(result.feature_views),
            finished,
            run_id,
        ],
    )


def fail_run(
    catalog: Catalog,
    run_id: str,
    error: str,
    status: str = FAILED,
    finished_at: datetime | None = None,
    raised: bool = False,
) -> None:
    """Close a run as `status` with `error`, keeping only what was known at start.

    `status` is ``failed`` or ``interrupted``. `finished_at` is the time the
    work ended; now by default. With `raised`, the caller raises the error on
    to a handler that shows it, so the log line gives only the run and its
    status, and the message is not printed twice.
    """
    finished = finished_at or _now()
    catalog.db.execute(
        "UPDATE runs SET status = ?, finished_at = ?, error = ?, "
        "duration_seconds = epoch(CAST(? AS TIMESTAMPTZ) - started_at) "
        "WHERE run_id = ?",
        [status, finished, error, finished, run_id],
    )
    if raised:
        logger.info("run closed run=%s status=%s", run_id, status)
    else:
        logger.info(
            "run closed run=%s status=%s error=%s", run_id, status, one_line(error)
        )


def list_runs(
    catalog: Catalog,
    model: str | None = None,
    parent_run_id: str | None = None,
    limit: int | None = None,
    details: bool = True,
) -> list[Run]:
    """Return runs, newest first, optionally of one model or one search.

    With `details` false, `folds` and `evaluation` are left out (None), which
    keeps listing many runs fast.
    """
    columns = _COLUMNS if details else _SUMMARY_COLUMNS
    sql = f"SELECT {columns} FROM runs WHERE true"
    params: list[Any] = []
    if model is not None:
        sql += " AND model = ?"
        params.append(model)
    if parent_run_id is not None:
        sql += " AND parent_run_id = ?"
        params.append(parent_run_id)
    sql += " ORDER BY started_at DESC, run_id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    rows = catalog.db.execute(sql, params).fetchall()
    return [_from_row(row) for row in rows]


def get_run(catalog: Catalog, run_id: str) -> Run:
    """Return one run.

    Raises:
        NotFoundError: No run has this id.
    """
    row = first_row(
        catalog.db.execute(f"SELECT {_COLUMNS} FROM runs WHERE run_id = ?", [run_id])
    )
    if row is None:
        raise NotFoundError(
            f"run {run_id!r} not found; 'appliance runs list' shows ids"
        )
    return _from_row(row)


def get_runs(catalog: Catalog, run_ids: list[str], details: bool = True) -> list[Run]:
    """Return the runs `run_ids` in the order given, with one query.

    With `details` false, `folds` and `evaluation` are left out (None).

    Raises:
        NotFoundError: A run id does not exist; the error names the first one.
    """
    rows = catalog.db.execute(
        f"SELECT {_COLUMNS if details else _SUMMARY_COLUMNS} FROM runs "
        "WHERE run_id IN (SELECT unnest(?::VARCHAR[]))",
        [run_ids],
    ).fetchall()
    found = {row[0]: _from_row(row) for row in rows}
    for run_id in run_ids:
        if run_id not in found:
            raise NotFoundError(
                f"run {run_id!r} not found; 'appliance runs list' shows ids"
            )
    return [found[run_id] for run_id in run_ids]


def artifacts_of(
    catalog: Catalog, run_ids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Return the artifacts of each of `run_ids`, as `list_artifacts` does."""
    rows = catalog.db.execute(
        "SELECT run_id, name, sha256, size_bytes, media_type FROM run_artifacts "
        "WHERE run_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY run_id, name",
        [run_ids],
    ).fetchall()
    result: dict[str, list[dict[str, Any]]] = {run_id: [] for run_id in run_ids}
    for run_id, name, digest, size, kind in rows:
        result[run_id].append(
            {"name": name, "sha256": digest, "size_bytes": size, "media_type": kind}
        )
    return result


def children_of(catalog: Catalog, run_ids: list[str]) -> dict[str, list[str]]:
    """Return the child run ids of each of `run_ids`, newest first."""
    rows = catalog.db.execute(
        "SELECT parent_run_id, run_id FROM runs WHERE parent_run_id IN "
        "(SELECT unnest(?::VARCHAR[])) ORDER BY started_at DESC, run_id",
        [run_ids],
    ).fetchall()
    result: dict[str, list[str]] = {run_id: [] for run_id in run_ids}
    for parent, run_id in rows:
        result[parent].append(run_id)
    return result


def metric_series(catalog: Catalog, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Return the logged metric values of a run as ``key -> [(step, value)]``."""
    rows = catalog.db.execute(
        "SELECT key, step, value FROM run_metrics WHERE run_id = ? "
        "ORDER BY key, step, logged_at",
        [run_id],
    ).fetchall()
    series: dict[str, list[tuple[int, float]]] = {}
    for key, step, value in rows:
        series.setdefault(key, []).append((step, value))
    return series


def list_artifacts(catalog: Catalog, run_id: str) -> list[dict[str, Any]]:
    """Return the artifacts of a run: name, sha256, size and media type."""
    rows = catalog.db.execute(
        "SELECT name, sha256, size_bytes, media_type FROM run_artifacts "
        "WHERE run_id = ? ORDER BY name",
        [run_id],
    ).fetchall()
    return [
        {"name": name, "sha256": digest, "size_bytes": size, "media_type": kind}
        for name, digest, size, kind in rows
    ]


def read_artifact(catalog: Catalog, run_id: str, name: str) -> bytes:
    """Return the bytes of artifact `name` of a run, checked against its sha256.

    Raises:
        NotFoundError: The run has no artifact of that name.
        IntegrityError: The stored bytes do not match the recorded sha256.
    """
    row = first_row(
        catalog.db.execute(
            "SELECT sha256 FROM run_artifacts WHERE run_id = ? AND name = ?",
            [run_id, name],
        )
    )
    if row is None:
        raise NotFoundError(
            f"run {run_id!r} has no artifact {name!r}; 'appliance runs show "
            f"{run_id}' lists its artifacts"
        )
    return read_blob(catalog.blobs_dir, row[0])


def _insert_log(catalog: Catalog, log: RunLog) -> None:
    """Insert the buffered metrics and artifact rows, one statement each.

    DuckDB unnests the parameter lists in step, so each list element becomes
    one row without a Python loop per row.
    """
    if log.metric_count:
        catalog.db.execute(
            "INSERT INTO run_metrics SELECT ?, unnest(?::VARCHAR[]), "
            "unnest(?::BIGINT[]), unnest(?::DOUBLE[]), "
            "make_timestamptz(unnest(?::BIGINT[]))",
            [log.run_id, log._keys, log._steps, log._values, log._times],
        )
    if log.artifacts:
        names = list(log.artifacts)
        rows = [log.artifacts[name] for name in names]
        # A name logged twice in one run keeps the last bytes.
        catalog.db.execute(
            "INSERT OR REPLACE INTO run_artifacts SELECT ?, unnest(?::VARCHAR[]), "
            "unnest(?::VARCHAR[]), unnest(?::BIGINT[]), unnest(?::VARCHAR[])",
            [
                log.run_id,
                names,
                [row[0] for row in rows],
                [row[1] for row in rows],
                [row[2] for row in rows],
            ],
        )


def _close_interrupted(catalog: Catalog) -> None:
    """Mark this host's running runs whose process has ended as interrupted."""
    rows = catalog.db.execute(
        "SELECT run_id, pid FROM runs WHERE status = 'running' AND host = ?",
        [socket.gethostname()],
    ).fetchall()
    for run_id, pid in rows:
        if _orphaned(RUNNING, socket.gethostname(), pid):
            fail_run(catalog, run_id, _orphan_error(pid), INTERRUPTED)


def _orphaned(status: str, host: str, pid: int | None) -> bool:
    """Return whether a run is recorded as running on this host by a process
    that has ended.

    NOTE: a new process that reuses the pid keeps the run running.
    """
    if status != RUNNING or pid is None or host != socket.gethostname():
        return False
    return not _alive(pid)


def _orphan_error(pid: int) -> str:
    return f"interrupted: process {pid} ended before the run was closed"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _from_row(row: tuple[Any, ...]) -> Run:
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
        parent_run_id,
        kind,
        tags,
        feature_views,
        packages,
        host,
        pid,
        duration,
        folds,
        evaluation,
    ) = row
    if _orphaned(status, host, pid):
        # A read-only reader cannot close the run, so it reports what the
        # next write records: `start_run` closes such runs.
        status, error = INTERRUPTED, _orphan_error(pid)
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
        parent_run_id,
        kind,
        json.loads(tags),
        json.loads(feature_views),
        json.loads(packages),
        host,
        pid,
        duration,
        json.loads(folds) if folds else None,
        json.loads(evaluation) if evaluation else None,
    )


def _dumps(value: Any) -> str:
    """Serialize to JSON with NaN and infinities as null, so any reader parses it."""
    return json.dumps(_finite(value), default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _now() -> datetime:
    return datetime.now(timezone.utc)
