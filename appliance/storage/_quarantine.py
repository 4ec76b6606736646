"""The quarantine table: rows that broke a dataset's contract, kept for review."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from appliance.storage._catalog import Catalog


@dataclass(frozen=True)
class QuarantinedRow:
    """One broken rule of one source row."""

    dataset: str
    version: str
    """Version whose ingest quarantined the row."""
    source: str
    """Source file path, or ``http`` buffer segment, the row came from."""
    line: int | None
    """Line in a CSV or JSON-lines file (row position for Parquet), from 1."""
    column: str | None
    value: str | None
    reason: str
    quarantined_at: datetime


def list_quarantine(
    catalog: Catalog, dataset: str, version: str | None = None, limit: int | None = None
) -> list[QuarantinedRow]:
    """Return the quarantined rows of `dataset` (of one version when given)."""
    sql = "SELECT * FROM quarantine WHERE dataset = ?"
    params: list[object] = [dataset]
    if version:
        sql += " AND starts_with(version, ?)"
        params.append(version)
    sql += " ORDER BY quarantined_at, source, line, column_name"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [QuarantinedRow(*row) for row in catalog.db.execute(sql, params).fetchall()]
