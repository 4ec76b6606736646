"""Writing the accepted rows of an ingest to a version's lake folder.

The rows are written as zstd Parquet to a folder in the staging folder,
which is then renamed to the version's folder. `write_rows` keeps the typed
path's staged Parquet file when it already contains the version's data.

The folder carries an `UNCOMMITTED` marker file until the catalog records
the version (`mark_committed`). A folder that still has it after a crash is
an unfinished write that the orphan cleanup may delete; a folder without it
may hold committed rows, so the cleanup only moves it aside.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from appliance.errors import StorageError
from appliance.storage._contracts import STAGED
from appliance.storage._encrypted import encrypted_sql
from appliance.storage._errors import short_error
from appliance.storage._loading import PARQUET_OPTIONS
from appliance.storage._sql import ident, literal
from appliance.storage._staging import Staged
from appliance.storage._types import ColumnType, stored_sql

logger = logging.getLogger(__name__)

UNCOMMITTED = "_uncommitted"
"""Marker file in a version folder whose version the catalog does not record
yet. Its name matches no version file glob (``*.parquet``)."""


@dataclass(frozen=True)
class Columns:
    """The stored type of each column, and the columns stored encrypted."""

    types: dict[str, ColumnType]
    sensitive: frozenset[str] = frozenset()


def write_rows(
    db: duckdb.DuckDBPyConnection,
    columns: Columns,
    staged: Staged,
    folders: tuple[Path, Path],
    partition: str | None,
    bad: int,
    accepted: int,
) -> bool:
    """Write the accepted rows to ``WORK/out`` and move that folder to TARGET.

    Args:
        folders: The staging folder WORK and the version's folder TARGET.

    Returns:
        Whether the files are Hive-partitioned by `partition`.
    """
    work, target = folders
    out = work / "out"
    target.parent.mkdir(parents=True, exist_ok=True)
    partitioned = partition is not None and accepted > 0
    try:
        if not partitioned and _can_keep_staged(staged, columns, bad):
            assert staged.typed_files is not None
            out.mkdir()
            os.replace(staged.typed_files[0], out / "data_0.parquet")
        elif partitioned:
            db.execute(
                f"COPY ({accepted_sql(columns, staged, bad)}) TO {literal(str(out))} "
                f"({PARQUET_OPTIONS}, PARTITION_BY ({ident(partition or '')}))"
            )
        else:
            out.mkdir()
            db.execute(
                f"COPY ({accepted_sql(columns, staged, bad)}) TO "
                f"{literal(str(out / 'data_0.parquet'))} ({PARQUET_OPTIONS})"
            )
        (out / UNCOMMITTED).touch()
        shutil.rmtree(target, ignore_errors=True)
        os.replace(out, target)
    except duckdb.Error as exc:
        raise StorageError(
            f"cannot write version folder {target}: {short_error(exc)}; check the "
            "free disk space and permissions of the lake folder"
        ) from exc
    except OSError as exc:
        raise StorageError(
            f"cannot write version folder {target}: {exc}; check the free disk "
            "space and permissions of the lake folder"
        ) from exc
    return partitioned


def mark_committed(folder: Path) -> None:
    """Delete the `UNCOMMITTED` marker of a folder the catalog now records.

    A marker that cannot be deleted is left: the folder's catalog row keeps
    the orphan cleanup from deleting it, which also deletes the marker.
    """
    try:
        (folder / UNCOMMITTED).unlink(missing_ok=True)
    except OSError as exc:
        logger.warning("commit marker not removed folder=%s error=%s", folder, exc)


def _can_keep_staged(staged: Staged, columns: Columns, bad: int) -> bool:
    """Tell whether the typed path's Parquet file is already the version's data.

    It is when it is the only source and no row is dropped. Every column must
    be stored as read, in the same order, with none added by the contract and
    none encrypted. No float column may contain NaN, which is stored as
    missing, and no text column a null token as text.
    """
    types = columns.types
    if staged.typed_files is None or len(staged.typed_files) != 1:
        return False
    if bad or staged.missing or columns.sensitive:
        return False
    same = list(types) == list(staged.source_types) and all(
        column.type == staged.source_types[name] and not column.date_format
        for name, column in types.items()
    )
    return same and not staged.nan_columns and not staged.token_columns


def accepted_sql(
    columns: Columns,
    staged: Staged,
    bad: int,
    where: str = "true",
    *,
    row_ids: bool = False,
) -> str:
    """Return the query of the rows that keep the contract, converted to their
    types, with the sensitive columns encrypted.

    Args:
        where: A further condition on the staged rows.
        row_ids: Select each row's ``_file`` and ``_record`` first, as the
            ``violations`` table names rows.
    """
    selects = ["_file", "_record"] if row_ids else []
    for name, column in columns.types.items():
        value = stored_sql(name, column, staged.source_types.get(name, "VARCHAR"))
        if name in columns.sensitive:
            value = encrypted_sql(value)
        selects.append(f"{value} AS {ident(name)}")
    rows = f"SELECT {', '.join(selects)} FROM {STAGED}"
    if bad:
        rows += (
            f" WHERE ({where}) AND (_file, _record) NOT IN "
            "(SELECT (_file, _record) FROM violations) ORDER BY _file, _record"
        )
    elif where != "true":
        rows += f" WHERE {where}"
    return rows


def make_staging_folder(work: Path) -> None:
    """Create the folder that a version's files are written to first.

    Raises:
        StorageError: The folder cannot be created.
    """
    try:
        work.mkdir(parents=True)
    except OSError as exc:
        raise StorageError(
            f"cannot create the staging folder {work}: {exc}; check the free disk "
            "space and permissions of the lake folder"
        ) from exc
