"""Fill ``gate_rejections`` of a catalog made before the table existed.

Retention keeps no dataset version for a challenger in ``gate_rejections``
that never held an alias (`unaliased_rejections`). A catalog written before
the table existed has no such rows, so its rejected challengers would keep
their training data for good. Its audit log records each retraining that
the daemon ran: a ``retrain.finish`` entry with outcome ``rejected`` names
the model, the retraining id and the gate's reason. The challenger's run
carries the same id in its ``retrain`` tag, and ``model_versions`` names the
version registered from that run. Only the gate rejects a retraining after
its challenger is registered: a failed export or parity check rejects it
before. So each such (model, version) is a challenger that the gate rejected.

NOTE: ``appliance retrain`` without a daemon records no audit entry, and the
daemon recorded none before the audit log existed. Their rejected challengers
are in the monitoring store's ``retrain_runs`` only, so they stay unmarked and
keep their training data.
"""

from __future__ import annotations

import logging

import duckdb

from appliance.dbrows import first_row

logger = logging.getLogger(__name__)

_SOURCES = ("audit_log", "runs", "model_versions")
"""Tables the backfill reads. A catalog without one of them has nothing to fill."""
_BACKFILL = """
INSERT OR IGNORE INTO gate_rejections (model, version, retrain_id, reason,
    rejected_at)
SELECT v.model, v.version, arg_min(a.details->>'$.id', a.recorded_at),
    arg_min(a.details->>'$.reason', a.recorded_at), min(a.recorded_at)
FROM audit_log a
JOIN runs r ON r.tags_json->>'$.retrain' = a.details->>'$.id'
JOIN model_versions v ON v.run_id = r.run_id AND v.model = a.target
WHERE a.action = 'retrain.finish' AND a.outcome = 'rejected'
GROUP BY v.model, v.version
"""


def has_table(db: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Return whether the main schema of `db` has `table`."""
    found = first_row(
        db.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND "
            "table_name = ?",
            [table],
        )
    )
    return bool(found and found[0])


def backfill_gate_rejections(db: duckdb.DuckDBPyConnection) -> int:
    """Record the gate rejections that the audit log shows; return their count.

    Call it in the transaction that creates ``gate_rejections``, so a crash
    leaves either no table or the filled one, and the fill runs once.
    """
    if not all(has_table(db, table) for table in _SOURCES):
        return 0
    before = _count(db)
    db.execute(_BACKFILL)
    added = _count(db) - before
    if added:
        logger.info(
            "gate rejections filled from the audit log rejections=%d; retention "
            "keeps no dataset version for them unless they held an alias",
            added,
        )
    return added


def _count(db: duckdb.DuckDBPyConnection) -> int:
    found = first_row(db.execute("SELECT count(*) FROM gate_rejections"))
    return int(found[0]) if found else 0
