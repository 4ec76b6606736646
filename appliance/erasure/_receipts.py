"""Erasure receipts: what one erasure removed, where, and when.

A receipt names the subject only by `Subject.digest` and the key column
names, never by the values, so the catalog keeps no copy of what was erased.
The ``erasures`` table is created by the first erasure.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from appliance.storage import Catalog

_SCHEMA = """
CREATE TABLE IF NOT EXISTS erasures (
    erasure_id     VARCHAR PRIMARY KEY,
    dataset        VARCHAR NOT NULL,
    columns_json   VARCHAR NOT NULL,
    subject_sha256 VARCHAR NOT NULL,
    started_at     TIMESTAMPTZ NOT NULL,
    finished_at    TIMESTAMPTZ NOT NULL,
    removed_json   VARCHAR NOT NULL,
    models_json    VARCHAR NOT NULL,
    notes_json     VARCHAR NOT NULL
)
"""


ALSO_IN_TABLE = ("predictions_journal", "predictions_spill")
"""Places whose rows the erasure writes to the predictions table first."""


@dataclass
class Receipt:
    """The outcome of one erasure, or of a dry run when `dry_run` is set."""

    erasure_id: str
    dataset: str
    columns: list[str]
    """Names of the key columns; the values are not kept."""
    subject_sha256: str
    started_at: datetime
    finished_at: datetime | None = None
    removed: dict[str, Any] = field(default_factory=dict)
    """Rows removed, or matched in a dry run, per place. The rows of journal
    segments and spill files are written to the predictions table before the
    erasure, so they are counted under ``predictions_table`` too, and a row
    can be in the journal and the table at once."""
    models: list[str] = field(default_factory=list)
    """Model versions trained on a redacted dataset version, as ``MODEL vN``.
    They are not changed; retrain them to drop the rows' influence."""
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False
    unreadable: dict[str, str] = field(default_factory=dict)
    """Rolled prediction log files that could not be read, with the error of
    each. Their rows were neither counted nor removed, so an erasure with
    such a file fails and stores no receipt."""

    @property
    def total(self) -> int:
        """Rows removed, or matched in a dry run, over every place but the
        journal and spill files, whose rows the table count includes."""
        return sum(
            _total(value)
            for place, value in self.removed.items()
            if place not in ALSO_IN_TABLE
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the receipt as JSON-ready values."""
        record = asdict(self)
        record["started_at"] = self.started_at.isoformat()
        record["finished_at"] = (
            self.finished_at.isoformat() if self.finished_at else None
        )
        record["total"] = self.total
        return record


def store_receipt(catalog: Catalog, receipt: Receipt) -> None:
    """Insert `receipt` into the ``erasures`` table."""
    catalog.db.execute(_SCHEMA)
    catalog.db.execute(
        "INSERT INTO erasures VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            receipt.erasure_id,
            receipt.dataset,
            json.dumps(receipt.columns),
            receipt.subject_sha256,
            receipt.started_at,
            receipt.finished_at,
            json.dumps(receipt.removed),
            json.dumps(receipt.models),
            json.dumps(receipt.notes),
        ],
    )


def list_receipts(catalog: Catalog, dataset: str | None = None) -> list[Receipt]:
    """Return the stored receipts, of one dataset when given, newest first."""
    where, params = ("WHERE dataset = ?", [dataset]) if dataset else ("", [])
    try:
        rows = catalog.db.execute(
            "SELECT erasure_id, dataset, columns_json, subject_sha256, started_at, "
            f"finished_at, removed_json, models_json, notes_json FROM erasures {where} "
            "ORDER BY started_at DESC",
            params,
        ).fetchall()
    except duckdb.CatalogException:
        return []
    return [
        Receipt(
            erasure_id=row[0],
            dataset=row[1],
            columns=json.loads(row[2]),
            subject_sha256=row[3],
            started_at=row[4],
            finished_at=row[5],
            removed=json.loads(row[6]),
            models=json.loads(row[7]),
            notes=json.loads(row[8]),
        )
        for row in rows
    ]


def _total(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_total(v) for v in value.values())
    return int(value)
