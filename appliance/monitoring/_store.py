"""Monitoring storage: alerts, drift, detector state, retraining and rollbacks.

Everything lives in ``HOME/monitoring.duckdb``, apart from the catalog, so a
long training that holds the catalog does not block monitoring writes. DuckDB
lets one process open a file for writing, so the daemon and the CLI open the
store for the span of one operation and retry briefly when the other holds it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb

from appliance.dbrows import first_row
from appliance.errors import NotFoundError, StorageError
from appliance.home import create_home
from appliance.monitoring._alerts import (
    ALERT_KINDS,
    Alert,
    AlertCandidate,
    AlertStatus,
)
from appliance.monitoring._batch import DriftReport
from appliance.monitoring._monitor import DriftEvent
from appliance.storage import transaction

logger = logging.getLogger(__name__)

STORE_FILE = "monitoring.duckdb"

_SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS alert_ids START 1;
CREATE TABLE IF NOT EXISTS alerts (
    id              BIGINT PRIMARY KEY DEFAULT nextval('alert_ids'),
    model           VARCHAR NOT NULL,
    kind            VARCHAR NOT NULL,
    subject         VARCHAR NOT NULL,
    severity        VARCHAR NOT NULL,
    status          VARCHAR NOT NULL,
    message         VARCHAR NOT NULL,
    value           DOUBLE,
    threshold       DOUBLE,
    opened_at       TIMESTAMPTZ NOT NULL,
    last_seen_at    TIMESTAMPTZ NOT NULL,
    count           INTEGER NOT NULL,
    acknowledged_at TIMESTAMPTZ
);
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS resolved_at TIMESTAMPTZ;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS resolution VARCHAR;
CREATE TABLE IF NOT EXISTS drift_scores (
    checked_at     TIMESTAMPTZ NOT NULL,
    model          VARCHAR NOT NULL,
    feature        VARCHAR NOT NULL,
    kind           VARCHAR NOT NULL,
    status         VARCHAR NOT NULL,
    psi            DOUBLE,
    statistic      DOUBLE,
    p_value        DOUBLE,
    reference_rows BIGINT NOT NULL,
    current_rows   BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS drift_events (
    detected_at TIMESTAMPTZ NOT NULL,
    model       VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL,
    subject     VARCHAR NOT NULL,
    cause       VARCHAR NOT NULL,
    position    BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS detector_state (
    model     VARCHAR PRIMARY KEY,
    version   INTEGER NOT NULL,
    saved_at  TIMESTAMPTZ NOT NULL,
    state     BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS retrain_runs (
    started_at         TIMESTAMPTZ NOT NULL,
    finished_at        TIMESTAMPTZ,
    model              VARCHAR NOT NULL,
    trigger            VARCHAR NOT NULL,
    outcome            VARCHAR NOT NULL,
    reason             VARCHAR NOT NULL,
    champion_version   INTEGER,
    challenger_version INTEGER,
    champion_score     DOUBLE,
    challenger_score   DOUBLE,
    new_labels         BIGINT
);
ALTER TABLE retrain_runs ADD COLUMN IF NOT EXISTS id VARCHAR;
ALTER TABLE retrain_runs ADD COLUMN IF NOT EXISTS as_of TIMESTAMPTZ;
ALTER TABLE retrain_runs ADD COLUMN IF NOT EXISTS promoted_version INTEGER;
ALTER TABLE retrain_runs ADD COLUMN IF NOT EXISTS detail VARCHAR;
CREATE TABLE IF NOT EXISTS version_metrics (
    name     VARCHAR PRIMARY KEY,
    saved_at TIMESTAMPTZ NOT NULL,
    state    BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS rollback_checks (
    model            VARCHAR NOT NULL,
    promoted_at      TIMESTAMPTZ NOT NULL,
    version          INTEGER NOT NULL,
    previous_version INTEGER NOT NULL,
    decided_at       TIMESTAMPTZ NOT NULL,
    outcome          VARCHAR NOT NULL,
    reason           VARCHAR NOT NULL,
    PRIMARY KEY (model, promoted_at)
);
CREATE TABLE IF NOT EXISTS job_runs (
    job_id       VARCHAR NOT NULL,
    scheduled_at TIMESTAMPTZ,
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ,
    outcome      VARCHAR NOT NULL,
    missed       INTEGER NOT NULL,
    detail       VARCHAR
);
"""

_ALERT_COLUMNS = (
    "id, model, kind, subject, severity, status, message, value, threshold, "
    "opened_at, last_seen_at, count, acknowledged_at, resolved_at, resolution"
)


@dataclass(frozen=True)
class RetrainRecord:
    """Outcome of one retraining decision or run."""

    model: str
    trigger: str
    """``drift``, ``schedule`` or ``manual``."""
    outcome: str
    """``running``, ``skipped``, ``promoted``, ``rejected``, ``failed``,
    ``interrupted`` or ``rolled_back``."""
    reason: str
    started_at: datetime
    finished_at: datetime | None = None
    champion_version: int | None = None
    challenger_version: int | None = None
    champion_score: float | None = None
    challenger_score: float | None = None
    new_labels: int | None = None
    id: str | None = None
    """Identifier of a retraining run, to update it and name it in responses."""
    as_of: datetime | None = None
    """Time the decision took as now: the wall clock, or the latest label's
    event time with ``clock = "event"``."""
    promoted_version: int | None = None
    """Version promoted to champion: the challenger, or its refit."""
    detail: dict[str, Any] | None = None
    """Window, row counts and errors of the run, as JSON."""


class MonitoringStore:
    """An open connection to ``HOME/monitoring.duckdb``; use it as a context manager.

    Args:
        home: The appliance home folder.
        wait_seconds: How long to retry while another process holds the file.
    """

    def __init__(self, home: Path, wait_seconds: float = 5.0) -> None:
        create_home(home)
        self.path = home / STORE_FILE
        self.db = _connect(self.path, wait_seconds)
        self.db.execute(_SCHEMA)

    def close(self) -> None:
        """Close the connection and release the file."""
        self.db.close()

    def __enter__(self) -> MonitoringStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def record_alert(
        self,
        candidate: AlertCandidate,
        now: datetime | None = None,
        occurrences: int = 1,
    ) -> tuple[Alert, bool]:
        """Open an alert, or fold the candidate into the open one with its key.

        `occurrences` is how many crossings the candidate stands for, added to
        the alert's count.

        Returns:
            The stored alert and whether it is new.
        """
        now = now or _now()
        with transaction(self.db):
            row = first_row(
                self.db.execute(
                    "SELECT id FROM alerts WHERE model = ? AND kind = ? "
                    "AND subject = ? AND status = ?",
                    [*candidate.key, AlertStatus.OPEN.value],
                )
            )
            if row is not None:
                self.db.execute(
                    "UPDATE alerts SET count = count + ?, last_seen_at = ?, "
                    "message = ?, value = ? WHERE id = ?",
                    [occurrences, now, candidate.message, candidate.value, row[0]],
                )
                alert_id, new = int(row[0]), False
            else:
                alert_id = first_row(
                    self.db.execute(
                        "INSERT INTO alerts (model, kind, subject, severity, status, "
                        "message, value, threshold, opened_at, last_seen_at, count) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                        [
                            *candidate.key,
                            candidate.severity,
                            AlertStatus.OPEN.value,
                            candidate.message,
                            candidate.value,
                            candidate.threshold,
                            now,
                            now,
                            occurrences,
                        ],
                    )
                )[0]
                new = True
        return self.get_alert(alert_id), new

    def get_alert(self, alert_id: int) -> Alert:
        """Return one alert.

        Raises:
            NotFoundError: No alert has that id.
        """
        row = first_row(
            self.db.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?", [alert_id]
            )
        )
        if row is None:
            raise NotFoundError(
                f"alert {alert_id} does not exist; 'appliance alerts list' shows ids"
            )
        return _alert(row)

    def acknowledge(self, alert_id: int, now: datetime | None = None) -> Alert:
        """Mark an alert acknowledged; acknowledging twice keeps the first time.

        A resolved alert keeps its status and gets the acknowledgement time.

        Raises:
            NotFoundError: No alert has that id.
        """
        self.get_alert(alert_id)
        self.db.execute(
            "UPDATE alerts SET status = CASE WHEN status = ? THEN status ELSE ? END, "
            "acknowledged_at = coalesce(acknowledged_at, ?) WHERE id = ?",
            [
                AlertStatus.RESOLVED.value,
                AlertStatus.ACKNOWLEDGED.value,
                now or _now(),
                alert_id,
            ],
        )
        return self.get_alert(alert_id)

    def resolve(
        self, alert_id: int, resolution: str, now: datetime | None = None
    ) -> tuple[Alert, bool]:
        """Resolve one open or acknowledged alert.

        A resolved alert keeps its resolution and time.

        Returns:
            The alert, and whether this call resolved it.

        Raises:
            NotFoundError: No alert has that id.
        """
        self.get_alert(alert_id)
        changed = self.db.execute(
            "UPDATE alerts SET status = ?, resolved_at = ?, resolution = ? "
            "WHERE id = ? AND status != ? RETURNING id",
            [
                AlertStatus.RESOLVED.value,
                now or _now(),
                resolution,
                alert_id,
                AlertStatus.RESOLVED.value,
            ],
        ).fetchall()
        return self.get_alert(alert_id), bool(changed)

    def resolve_open(
        self,
        model: str,
        kind: str,
        resolution: str,
        subject: str | None = None,
        now: datetime | None = None,
    ) -> list[Alert]:
        """Resolve the open alerts of a model and kind, or of one subject of it.

        Returns:
            The alerts resolved by this call, oldest first.
        """
        sql = (
            "UPDATE alerts SET status = ?, resolved_at = ?, resolution = ? "
            "WHERE model = ? AND kind = ? AND status = ?"
        )
        params: list[Any] = [
            AlertStatus.RESOLVED.value,
            now or _now(),
            resolution,
            model,
            kind,
            AlertStatus.OPEN.value,
        ]
        if subject is not None:
            sql += " AND subject = ?"
            params.append(subject)
        ids = sorted(
            int(row[0])
            for row in self.db.execute(sql + " RETURNING id", params).fetchall()
        )
        return [self.get_alert(alert_id) for alert_id in ids]

    def list_alerts(
        self, status: AlertStatus | None = None, model: str | None = None
    ) -> list[Alert]:
        """Return alerts, newest first, optionally of one status or model."""
        sql = f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE 1 = 1"
        params: list[Any] = []
        if status is not None:
            sql += " AND status = ?"
            params.append(status.value)
        if model is not None:
            sql += " AND model = ?"
            params.append(model)
        rows = self.db.execute(sql + " ORDER BY id DESC", params).fetchall()
        return [_alert(row) for row in rows]

    def open_counts(self) -> dict[str, int]:
        """Return the number of open alerts of each kind, 0 for a kind without."""
        rows = self.db.execute(
            "SELECT kind, count(*) FROM alerts WHERE status = ? GROUP BY kind",
            [AlertStatus.OPEN.value],
        ).fetchall()
        return {**dict.fromkeys(ALERT_KINDS, 0), **{k: int(n) for k, n in rows}}

    def record_drift(
        self, model: str, report: DriftReport, now: datetime | None = None
    ) -> None:
        """Append one batch drift check to the score time series."""
        now = now or _now()
        rows = [
            [
                now,
                model,
                f.feature,
                f.kind,
                f.status,
                f.psi,
                f.statistic,
                f.p_value,
                f.reference_rows,
                f.current_rows,
            ]
            for f in report.features
        ]
        if not rows:
            return
        # One transaction, so a reader never sees part of a check.
        with transaction(self.db):
            self.db.executemany(
                "INSERT INTO drift_scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )

    def drift_history(self, model: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Return batch drift scores of `model`, newest check first."""
        cursor = self.db.execute(
            "SELECT * FROM drift_scores WHERE model = ? "
            "ORDER BY checked_at DESC, feature LIMIT ?",
            [model, limit],
        )
        return _dicts(cursor)

    def record_events(
        self, model: str, events: list[DriftEvent], now: datetime | None = None
    ) -> None:
        """Append streaming detections."""
        now = now or _now()
        if events:
            # One statement over lists: a large Arrow request can yield tens of
            # thousands of detections, which executemany inserts one by one.
            self.db.execute(
                "INSERT INTO drift_events SELECT ?, ?, unnest(?), unnest(?), "
                "unnest(?), unnest(?)",
                [
                    now,
                    model,
                    [e.kind for e in events],
                    [e.subject for e in events],
                    [e.cause for e in events],
                    [e.index for e in events],
                ],
            )

    def record_detections(
        self, model: str, version: int, state: bytes, events: list[DriftEvent]
    ) -> None:
        """Append streaming detections and save the monitor state that made
        them, in one transaction.

        A restart then restores a state that has seen every stored detection,
        so the rows fed after it cannot record the same stream positions again.
        """
        now = _now()
        with transaction(self.db):
            self.save_state(model, version, state, now)
            self.record_events(model, events, now)

    def count_drift_events(self, model: str) -> int:
        """Return the number of streaming detections stored for `model`."""
        row = first_row(
            self.db.execute(
                "SELECT count(*) FROM drift_events WHERE model = ?", [model]
            )
        )
        return 0 if row is None else int(row[0])

    def drift_events(self, model: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Return streaming detections of `model`, newest first."""
        cursor = self.db.execute(
            "SELECT * FROM drift_events WHERE model = ? "
            "ORDER BY detected_at DESC, position DESC LIMIT ?",
            [model, limit],
        )
        return _dicts(cursor)

    def save_state(
        self, model: str, version: int, state: bytes, now: datetime | None = None
    ) -> None:
        """Store the serialized streaming monitor of one model version."""
        self.db.execute(
            "INSERT OR REPLACE INTO detector_state VALUES (?, ?, ?, ?)",
            [model, version, now or _now(), state],
        )

    def load_state(self, model: str) -> tuple[int, bytes] | None:
        """Return the stored model version and monitor state, or None."""
        row = first_row(
            self.db.execute(
                "SELECT version, state FROM detector_state WHERE model = ?", [model]
            )
        )
        return None if row is None else (int(row[0]), bytes(row[1]))

    def load_states(self) -> list[tuple[str, int, bytes]]:
        """Return the model, version and monitor state of every stored monitor."""
        rows = self.db.execute(
            "SELECT model, version, state FROM detector_state ORDER BY model"
        ).fetchall()
        return [(str(m), int(v), bytes(b)) for m, v, b in rows]

    def save_version_metrics(self, state: bytes, now: datetime | None = None) -> None:
        """Store the serialized live metrics windows of every model version."""
        self.db.execute(
            "INSERT OR REPLACE INTO version_metrics VALUES ('live', ?, ?)",
            [now or _now(), state],
        )

    def load_version_metrics(self) -> bytes | None:
        """Return the stored live metrics windows per version, or None."""
        row = first_row(
            self.db.execute("SELECT state FROM version_metrics WHERE name = 'live'")
        )
        return None if row is None else bytes(row[0])

    def record_rollback_check(
        self,
        model: str,
        promoted_at: datetime,
        version: int,
        previous_version: int,
        outcome: str,
        reason: str,
        now: datetime | None = None,
    ) -> None:
        """Store the verdict of the rollback watch on one promotion."""
        self.db.execute(
            "INSERT OR REPLACE INTO rollback_checks VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                model,
                promoted_at,
                version,
                previous_version,
                now or _now(),
                outcome,
                reason,
            ],
        )

    def rollback_check(
        self, model: str, promoted_at: datetime
    ) -> dict[str, Any] | None:
        """Return the verdict on the promotion of `model` at `promoted_at`, or None."""
        rows = _dicts(
            self.db.execute(
                "SELECT * FROM rollback_checks WHERE model = ? AND promoted_at = ?",
                [model, promoted_at],
            )
        )
        return rows[0] if rows else None

    def rollback_checks(self, model: str | None = None) -> list[dict[str, Any]]:
        """Return rollback watch verdicts, newest promotion first."""
        sql, params = "SELECT * FROM rollback_checks", []
        if model is not None:
            sql, params = sql + " WHERE model = ?", [model]
        return _dicts(self.db.execute(sql + " ORDER BY promoted_at DESC", params))

    def record_retrain(self, record: RetrainRecord) -> None:
        """Append the outcome of one retraining decision or run."""
        values = _retrain_values(record)
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        self.db.execute(
            f"INSERT INTO retrain_runs ({names}) VALUES ({marks})",
            list(values.values()),
        )

    def update_retrain(self, record: RetrainRecord) -> None:
        """Replace the stored record with the same `id`, such as a finished run.

        Raises:
            NotFoundError: No record has that id.
        """
        values = _retrain_values(record)
        found = first_row(
            self.db.execute(
                "SELECT count(*) FROM retrain_runs WHERE id = ?", [record.id]
            )
        )
        if not found or not found[0]:
            raise NotFoundError(f"retraining run {record.id!r} is not recorded")
        assignments = ", ".join(f"{name} = ?" for name in values)
        self.db.execute(
            f"UPDATE retrain_runs SET {assignments} WHERE id = ?",
            [*values.values(), record.id],
        )

    def retrain_history(
        self, model: str | None = None, outcome: str | None = None
    ) -> list[dict[str, Any]]:
        """Return retraining records, newest first, of one model or outcome."""
        sql, params = "SELECT * FROM retrain_runs WHERE 1 = 1", []
        if model is not None:
            sql += " AND model = ?"
            params.append(model)
        if outcome is not None:
            sql += " AND outcome = ?"
            params.append(outcome)
        rows = _dicts(self.db.execute(sql + " ORDER BY started_at DESC", params))
        for row in rows:
            if row.get("detail"):
                row["detail"] = json.loads(row["detail"])
        return rows

    def start_job_run(self, job_id: str, started_at: datetime, missed: int) -> None:
        """Record that a job started; a run that never finishes stays ``running``."""
        self.db.execute(
            "INSERT INTO job_runs VALUES (?, NULL, ?, NULL, 'running', ?, NULL)",
            [job_id, started_at, missed],
        )

    def finish_job_run(
        self,
        job_id: str,
        started_at: datetime,
        finished_at: datetime,
        outcome: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record the outcome of a run recorded by `start_job_run`."""
        self.db.execute(
            "UPDATE job_runs SET finished_at = ?, outcome = ?, detail = ? "
            "WHERE job_id = ? AND started_at = ?",
            [
                finished_at,
                outcome,
                json.dumps(detail, default=str) if detail else None,
                job_id,
                started_at,
            ],
        )

    def job_runs(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """Return recorded job runs, oldest first."""
        sql, params = "SELECT * FROM job_runs", []
        if job_id is not None:
            sql, params = sql + " WHERE job_id = ?", [job_id]
        return _dicts(self.db.execute(sql + " ORDER BY started_at", params))

    def last_job_runs(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """Return the newest recorded run of each job, or of `job_id` only."""
        where, params = ("WHERE job_id = ?", [job_id]) if job_id else ("", [])
        return _dicts(
            self.db.execute(
                f"SELECT * FROM job_runs {where} QUALIFY row_number() OVER "
                "(PARTITION BY job_id ORDER BY started_at DESC) = 1",
                params,
            )
        )

    def last_ended_job_run(self, job_id: str) -> dict[str, Any] | None:
        """Return the newest run of `job_id` that finished or failed, or None."""
        rows = _dicts(
            self.db.execute(
                "SELECT * FROM job_runs WHERE job_id = ? AND outcome != 'running' "
                "ORDER BY started_at DESC LIMIT 1",
                [job_id],
            )
        )
        return rows[0] if rows else None

    def failed_streak(self, job_id: str) -> dict[str, Any]:
        """Return the failed runs of `job_id` since its last finished run.

        Returns:
            ``failed_runs``: the runs that failed after the newest finished
            run, or since the oldest recorded run when none finished;
            ``failing_since``: the start of the oldest of them, or None;
            ``last_finished_at``: the start of the newest finished run, or
            None. Runs still ``running`` count in neither.
        """
        row = first_row(
            self.db.execute(
                "WITH finished AS (SELECT max(started_at) AS at FROM job_runs "
                "WHERE job_id = ? AND outcome = 'finished') "
                "SELECT count(runs.started_at), min(runs.started_at), "
                "any_value(finished.at) FROM finished LEFT JOIN job_runs AS runs "
                "ON runs.job_id = ? AND runs.outcome = 'failed' "
                "AND (finished.at IS NULL OR runs.started_at > finished.at)",
                [job_id, job_id],
            )
        )
        failed, since, finished = row if row is not None else (0, None, None)
        return {
            "failed_runs": int(failed),
            "failing_since": since,
            "last_finished_at": finished,
        }

    def prune_job_runs(self, job_id: str, before: datetime) -> int:
        """Delete the runs of `job_id` that started before `before`; return how many."""
        deleted = self.db.execute(
            "DELETE FROM job_runs WHERE job_id = ? AND started_at < ?",
            [job_id, before],
        ).fetchall()
        return int(deleted[0][0]) if deleted else 0


def drift_summary(rows: list[dict[str, Any]], checks: int) -> dict[str, Any]:
    """Group drift score rows (newest first) into the latest check and history.

    Returns:
        ``latest``: the rows of the newest check; ``history``: one entry per
        earlier check with its time and drifted features, newest first.
    """
    by_check: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        by_check.setdefault(row["checked_at"], []).append(row)
    times = list(by_check)
    latest = by_check[times[0]] if times else []
    history = [
        {
            "checked_at": str(when),
            "features": len(by_check[when]),
            "drifted": [r["feature"] for r in by_check[when] if r["status"] == "drift"],
        }
        for when in times[1 : checks + 1]
    ]
    return {"latest": latest, "history": history}


def _retrain_values(record: RetrainRecord) -> dict[str, Any]:
    values = dict(record.__dict__)
    values["detail"] = (
        json.dumps(record.detail, default=str) if record.detail is not None else None
    )
    return values


_LOSES = (
    "the alerts, drift history, detector state, retraining records and "
    "rollbacks it records"
)


def _connect(path: Path, wait_seconds: float) -> duckdb.DuckDBPyConnection:
    """Open the store, retrying for `wait_seconds` while another process has it open."""
    from appliance.storage import open_failure

    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as exc:
            locked = "lock" in str(exc).lower()
            if not locked or time.monotonic() >= deadline:
                message = open_failure("the monitoring store", path, exc, _LOSES)
                raise StorageError(message) from exc
            time.sleep(0.05)


def _alert(row: tuple[Any, ...]) -> Alert:
    values = list(row)
    values[5] = AlertStatus(values[5])
    return Alert(*values)


def _dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _now() -> datetime:
    return datetime.now(UTC)
