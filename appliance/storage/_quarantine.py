"""The quarantine table: rows that broke a dataset's contract, kept for review."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.dbrows import first_row
from appliance.storage._catalog import Catalog


@dataclass(frozen=True)
class QuarantinedRow:
    """One broken rule of one source row."""

    dataset: str
    version: str
    """Version whose ingest quarantined the row."""
    source: str
    """Path of the file the row came from. For rows sent over HTTP, the buffer
    segment in the dataset's ``buffer/DATASET/quarantined/`` folder."""
    line: int | None
    """Line in a CSV or JSON-lines file (row position for Parquet), from 1."""
    column: str | None
    value: str | None
    """The rejected value as written in a CSV or JSON-lines file, such as
    ``1e309``. A Parquet file stores typed values and no text, so for Parquet
    it is the stored value as DuckDB prints it, such as ``inf``."""
    reason: str
    quarantined_at: datetime
    row: dict[str, Any] | None = None
    """Every field of the source row as read, so the row is kept whole."""


RAW_LINE_FIELDS = {"read_csv": "csv_line", "read_json": "json_line"}
"""Per reader, the only field of a quarantined row's JSON for a record that no
row could be read from, such as a CSV record with too many fields or a
JSON-lines line that is not an object. The field contains the record's text."""


def raw_line_field(reader: str) -> str:
    """Return the field that contains the text of an unread record of `reader`."""
    return RAW_LINE_FIELDS[reader]


def raw_line_key(row: object) -> str | None:
    """Return the key of a quarantined row's JSON that contains its record's text.

    None when `row` has the fields of a read row instead.
    """
    if isinstance(row, dict) and len(row) == 1:
        (name,) = row
        if name in RAW_LINE_FIELDS.values():
            return name
    return None


def violation_place(source: str, line: int | None, column: str | None) -> str:
    """Return ``SOURCE, line N, column 'C'`` without the parts that are unknown.

    A record with too many or too few fields has no column, and a row sent
    over HTTP may have no line.
    """
    parts = [source]
    if line is not None:
        parts.append(f"line {line}")
    if column is not None:
        parts.append(f"column {column!r}")
    return ", ".join(parts)


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


def move_source(
    catalog: Catalog, dataset: str, version: str, old: Path, new: Path
) -> None:
    """Record that source file `old` of `version` now lives at `new`.

    The quarantined rows and the version's lineage name the file by its
    absolute path; both are updated in one transaction.
    """
    old_path, new_path = str(old.resolve()), str(new.resolve())
    with catalog.transaction():
        catalog.db.execute(
            "UPDATE quarantine SET source = ? "
            "WHERE dataset = ? AND version = ? AND source = ?",
            [new_path, dataset, version, old_path],
        )
        row = first_row(
            catalog.db.execute(
                "SELECT sources_json FROM dataset_versions WHERE dataset = ? "
                "AND version = ?",
                [dataset, version],
            )
        )
        if row is not None:
            sources = [
                {**s, "path": new_path} if s["path"] == old_path else s
                for s in json.loads(row[0])
            ]
            catalog.db.execute(
                "UPDATE dataset_versions SET sources_json = ? WHERE dataset = ? "
                "AND version = ?",
                [json.dumps(sources), dataset, version],
            )
