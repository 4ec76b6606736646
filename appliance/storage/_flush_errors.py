"""Failures of a buffer flush that the segment's own rows cause.

A flush of the same rows fails again with a DuckDB Binder, Catalog,
Conversion or Constraint error, or an `IngestError` or `ColumnKeyError` of
the ingest's checks, whatever the disk or the catalog does meanwhile. The
buffer sets such a segment aside, so the rows sent after it are flushed.
Any other failure, such as a full disk, an I/O error or a catalog held by
another process, may pass, so the buffer keeps the segment and retries it.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from appliance.errors import ColumnKeyError, IngestError
from appliance.storage._errors import short_error

_OF_ROWS = (
    IngestError,
    ColumnKeyError,
    duckdb.BinderException,
    duckdb.CatalogException,
    duckdb.ConversionException,
    duckdb.ConstraintException,
)


def rows_error(exc: BaseException) -> BaseException | None:
    """Return the error in the chain of `exc` that every retry would raise again.

    The lake and catalog writes wrap a DuckDB error in a `StorageError`, so
    the chain of causes is searched too. None when the failure may pass.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _OF_ROWS):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def rejection_message(
    error: BaseException, dataset: str, segment: Path, kept: Path
) -> str:
    """Return why the flush set `segment` aside, naming its new path `kept`."""
    if isinstance(error, (IngestError, ColumnKeyError)):
        return str(error).replace(str(segment), str(kept))
    assert isinstance(error, duckdb.Error)
    return (
        f"the flush of {kept} failed on its rows and is not retried: "
        f"{short_error(error)}; correct the rows or the contract, then retry "
        f"it with 'appliance datasets rejected {dataset} --retry {kept.name}'"
    )
