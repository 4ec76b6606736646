"""Model versions that the retraining gate rejected, and how retention treats them.

A retraining registers its challenger before scoring it, so a rejected
challenger stays a model version with its run and metrics for the audit.
`record_gate_rejection` marks it in ``gate_rejections``. Retention keeps a
dataset version only for model versions that can serve: a rejected
challenger that never held an alias does not keep its training data.
Pointing an alias at it later, such as with ``appliance models promote``,
makes it keep the data again from then on.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import duckdb

from appliance.storage._catalog import Catalog

logger = logging.getLogger(__name__)


def record_gate_rejection(
    catalog: Catalog, model: str, version: int, retrain_id: str, reason: str
) -> None:
    """Record that retraining `retrain_id` rejected `version` of `model`."""
    catalog.db.execute(
        "INSERT OR REPLACE INTO gate_rejections (model, version, retrain_id, "
        "reason, rejected_at) VALUES (?, ?, ?, ?, ?)",
        [model, version, retrain_id, reason, datetime.now(timezone.utc)],
    )
    logger.info(
        "challenger rejected by the gate model=%s version=%d retrain=%s",
        model,
        version,
        retrain_id,
    )


def unaliased_rejections(catalog: Catalog) -> set[tuple[str, int]]:
    """Return the rejected challengers that never held an alias.

    An alias event names a version as the new or the previous target, so
    either counts as holding the alias.
    """
    try:
        rows = catalog.db.execute(
            "SELECT g.model, g.version FROM gate_rejections g WHERE NOT EXISTS ("
            "SELECT 1 FROM alias_events e WHERE e.model = g.model AND "
            "g.version IN (e.version, e.previous_version)) AND NOT EXISTS ("
            "SELECT 1 FROM model_aliases a WHERE a.model = g.model AND "
            "a.version = g.version)"
        ).fetchall()
    except duckdb.CatalogException:
        # A catalog written before the table existed, opened read-only.
        return set()
    return {(model, int(version)) for model, version in rows}


def gate_rejections(
    catalog: Catalog, model: str | None = None
) -> dict[tuple[str, int], dict[str, Any]]:
    """Return the gate's rejections by ``(model, version)``: retrain id and reason."""
    sql = "SELECT model, version, retrain_id, reason, rejected_at FROM gate_rejections"
    params: list[str] = []
    if model is not None:
        sql += " WHERE model = ?"
        params.append(model)
    try:
        rows = catalog.db.execute(sql, params).fetchall()
    except duckdb.CatalogException:
        return {}
    return {
        (name, int(version)): {
            "retrain_id": retrain_id,
            "reason": reason,
            "rejected_at": rejected_at,
        }
        for name, version, retrain_id, reason, rejected_at in rows
    }


def training_data(catalog: Catalog) -> dict[str, tuple[str, bool]]:
    """Return ``DATASET@VERSION`` of each run, and whether retention removed it."""
    rows = catalog.db.execute(
        "SELECT r.run_id, r.dataset, r.dataset_version, EXISTS (SELECT 1 FROM "
        "removed_versions v WHERE v.dataset = r.dataset AND "
        "v.version = r.dataset_version) FROM runs r "
        "WHERE r.dataset_version IS NOT NULL"
    ).fetchall()
    return {run: (f"{name}@{version}", bool(gone)) for run, name, version, gone in rows}
