"""Quality reports of HTTP ingest flushes, computed after the flush.

A flush of the ingest buffer makes an ``append`` version that reads its own
file and every ancestor's. A full quality report scans that whole chain, so
its cost grows with each flush. A flush therefore records a pending report
instead: the row count, and per column the count of values, the null rate
and the ``null_sources``. Each of these is the parent's plus the flush's,
so it is exact. Distinct counts, ranges, quartiles, outliers and duplicate
rows cannot be added up exactly, so the pending report leaves them out and
its ``pending`` entry names them.

`complete_report` computes the full report of such a version later, over
all its rows, and stores it in place of the pending one. The daemon does so
for the latest version of each dataset when the buffer is idle, and
``datasets show``, ``datasets diff`` and the TUI do so when they show a
version whose report is still pending.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import duckdb

from appliance.dbrows import first_row
from appliance.storage._catalog import Catalog
from appliance.storage._datasets import (
    DatasetVersion,
    get_dataset_version,
    has_partitioned_files,
    latest_version,
    parquet_sql,
    sample_sql,
    scan_sql,
    value_sample_sql,
)
from appliance.storage._errors import short_error
from appliance.storage._null_sources import add_to_quality, null_counts
from appliance.storage._quality import NON_NULL, quality_report
from appliance.storage._sql import ident

logger = logging.getLogger(__name__)

PENDING = "pending"
"""Key of a quality report that lacks the statistics of all the rows."""
PENDING_TEXT = (
    "distinct counts, ranges, quartiles, outliers and duplicate rows are "
    "computed after the flush; rows, null rates and null_sources are exact"
)


def is_pending(version: DatasetVersion) -> bool:
    """Tell whether the quality report of `version` is still pending."""
    return PENDING in (version.report.get("quality") or {})


def pending_quality(
    db: duckdb.DuckDBPyConnection,
    own: DatasetVersion | None,
    parent: DatasetVersion,
    catalog: Catalog,
    schema: Mapping[str, str],
    rows: int,
) -> dict[str, Any]:
    """Return the pending report of an append of `own` rows to `parent`.

    Args:
        own: The rows this ingest wrote, as a version of its own files; None
            when it wrote none.
        parent: The appended parent.
        schema: The new version's schema.
        rows: The new version's row count.
    """
    own_counts = _non_null_counts(db, own, schema) if own is not None else {}
    parent_counts = parent_non_null(catalog, parent)
    columns = {}
    for name, kind in schema.items():
        count = own_counts.get(name, 0) + parent_counts.get(name, 0)
        columns[name] = {
            "type": kind,
            # The same rounding as the full report's null rate.
            "null_rate": round(1 - count / rows, 6) if rows else None,
            NON_NULL: count,
        }
    return {PENDING: PENDING_TEXT, "rows": rows, "columns": columns, "methods": {}}


def parent_non_null(catalog: Catalog, parent: DatasetVersion) -> dict[str, int]:
    """Return the count of values of each column of `parent`.

    Reports written before the counts were recorded lack them, so they are
    counted over the parent's rows once. The next flush reads them from the
    pending report.
    """
    columns = (parent.report.get("quality") or {}).get("columns") or {}
    if all(NON_NULL in columns.get(name, {}) for name in parent.schema):
        return {name: columns[name][NON_NULL] for name in parent.schema}
    with catalog.db.cursor() as db:
        return _non_null_counts(db, parent, parent.schema)


def _non_null_counts(
    db: duckdb.DuckDBPyConnection, version: DatasetVersion, schema: Mapping[str, str]
) -> dict[str, int]:
    """Count the values of each column of `schema` that `version` has."""
    names = [name for name in schema if name in version.schema]
    if not names:
        return {}
    selects = ", ".join(f"count({ident(name)})" for name in names)
    row = first_row(db.execute(f"SELECT {selects} FROM ({scan_sql(version)})"))
    assert row is not None
    return dict(zip(names, row))


def full_quality(db: duckdb.DuckDBPyConnection, version: DatasetVersion) -> dict:
    """Compute the full quality report of an appended `version` over its rows.

    The report keeps the ``null_sources`` of the pending one. Above 20,000
    rows the quartiles come from a sample by each row's position in its file.
    When some files are Hive-partitioned, the sample goes by the row's values
    instead, because DuckDB writes those files in the order its threads
    finish.
    """
    if has_partitioned_files(version):
        sample: Any = functools.partial(value_sample_sql, version)
        basis = "the row's values"
    else:
        sample = functools.partial(sample_sql, version)
        basis = "the row's position"
    quality = quality_report(
        db,
        f"({scan_sql(version)})",
        version.schema,
        parquet_sql(version),
        sample,
        version.row_count,
        stored_nan=True,
        sample_basis=basis,
    )
    add_to_quality(quality, null_counts(version.report), None)
    return quality


def complete_report(
    catalog: Catalog, version: DatasetVersion, store: bool = True
) -> DatasetVersion:
    """Return `version` with its full quality report, computed if pending.

    With `store`, the report replaces the pending one in the catalog, unless
    an erasure replaced that meanwhile. A version whose rows cannot be read
    keeps its pending report, and the failure is logged.
    """
    if not is_pending(version):
        return version
    try:
        with catalog.db.cursor() as db:
            quality = full_quality(db, version)
    except duckdb.Error as exc:
        logger.warning(
            "pending quality report not computed dataset=%s version=%s error=%s",
            version.dataset,
            version.version,
            short_error(exc),
        )
        return version
    completed = replace(version, report={**version.report, "quality": quality})
    if store:
        _store_report(catalog, version, completed)
    return completed


def _store_report(catalog: Catalog, old: DatasetVersion, new: DatasetVersion) -> None:
    """Store the report of `new` in place of the pending report of `old`.

    A report that is no longer pending, such as one an erasure computed
    meanwhile, stays.
    """
    stored = catalog.db.execute(
        "UPDATE dataset_versions SET report_json = ? WHERE dataset = ? "
        "AND version = ? AND json_extract(report_json, '$.quality.pending') "
        "IS NOT NULL RETURNING version",
        [json.dumps(new.report, default=str), old.dataset, old.version],
    ).fetchall()
    logger.info(
        "pending quality report completed dataset=%s version=%s rows=%d stored=%s",
        old.dataset,
        old.version,
        old.row_count,
        bool(stored),
    )


def complete_latest(catalog: Catalog, dataset: str) -> bool:
    """Complete the pending report of the latest version of `dataset`, if any.

    Returns:
        Whether a report was computed.
    """
    latest = latest_version(catalog, dataset, missing_ok=True)
    if latest is None or not is_pending(latest):
        return False
    complete_report(catalog, latest)
    return True


class PendingReports:
    """Datasets whose latest version may have a pending report, by last flush.

    The daemon's buffer thread completes a dataset's latest report once no
    flush has made a version of it for `idle_seconds`, so that a steady
    stream of flushes does not scan the whole chain after each one.
    """

    def __init__(self, idle_seconds: float = 10.0) -> None:
        self.idle_seconds = idle_seconds
        """Time without a flush of a dataset before its report is completed."""
        self._flushed: dict[str, float] = {}
        self._lock = threading.Lock()

    def flushed(self, dataset: str) -> None:
        """Note that a flush made a version of `dataset` now."""
        with self._lock:
            self._flushed[dataset] = time.monotonic()

    def due(self) -> list[str]:
        """Return and forget the datasets whose last flush is `idle_seconds` old."""
        now = time.monotonic()
        with self._lock:
            due = [
                name
                for name, at in self._flushed.items()
                if now - at >= self.idle_seconds
            ]
            for name in due:
                del self._flushed[name]
        return due


def shown_version(
    catalog: Catalog, reference: str, store: bool = True
) -> DatasetVersion:
    """Return the version `reference` names, with its full quality report.

    ``datasets show``, ``datasets diff`` and the daemon's route for one
    version call it, so a pending report is completed when it is shown.

    Args:
        reference: ``DATASET`` or ``DATASET@VERSION``, as `get_dataset_version`
            takes it.
        store: Store a completed report; a read-only catalog cannot.
    """
    return complete_report(catalog, get_dataset_version(catalog, reference), store)
