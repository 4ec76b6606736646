"""The quarantine table: rows that broke a dataset's contract, kept for review."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from appliance.storage._catalog import Catalog


@dataclass(frozen=True)
class QuarantinedRow:
    """One broken rule of one source row."""

    dataset: str
    version: str
    """Version whose ingest quarantined the row."""
    source: str
    """Path of the file the row came from; for HTTP ingest, the buffer segment."""
    line: int | None
    """Line in a CSV or JSON-lines file (row position for Parquet), from 1."""
    column: str | None
    value: str | None
    reason: str
    quarantined_at: datetime
    row: dict[str, Any] | None = None
    """Every field of the source row as read, so the row is kept whole."""


def list_quarantine(
    catalog: Catalog, dataset: str, version: str | None = None, limit: int | None = None
) -> list[QuarantinedRow]:
    """Return the quarantined rows of `dataset` (of one version when given)."""
    sql = (
        "SELECT dataset, version, source, line, column_name, value, reason, "
        "quarantined_at, row_json FROM quarantine WHERE dataset = ?"
    )
    params: list[object] = [dataset]
    if version:
        sql += " AND starts_with(version, ?)"
        params.append(version)
    sql += " ORDER BY quarantined_at, source, line, column_name"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    rows = catalog.db.execute(sql, params).fetchall()
    return [
        QuarantinedRow(*row[:8], row=json.loads(row[8]) if row[8] else None)
        for row in rows
    ]
