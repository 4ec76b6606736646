"""Compaction of an append chain into a version that reads only its own files.

Each flush of the HTTP ingest buffer makes an ``append`` version that reads
its parent's files as well as its own. So the latest version reads every
folder of its chain, and retention (`_retention`) cannot delete them.
`compact_chain` writes the rows of the latest version to a folder of its
own, as one new version whose parent is that latest version. The next
flushes append to it. Once it and the versions after it are the newest
`keep_versions`, retention deletes the old chain's folders.

The new version's id is a hash of the compacted version's id, so a second
compaction of the same chain finds it. Its folder carries the
``_uncommitted`` marker until the catalog records the version in one
transaction, as an ingest's does. After a crash in between, the orphan
cleanup deletes the folder, and the chain stays as it was.

The compacted version takes the quality report of the version it compacts,
because it contains the same rows. A pending report stays pending and is then
computed over the compacted files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from appliance.access import record
from appliance.config import DatasetConfig
from appliance.errors import StorageError
from appliance.storage._catalog import Catalog
from appliance.storage._datasets import (
    DatasetVersion,
    find_version,
    has_partitioned_files,
    latest_version,
    record_version,
    scan_sql,
)
from appliance.storage._errors import short_error
from appliance.storage._lake_write import (
    UNCOMMITTED,
    make_staging_folder,
    mark_committed,
)
from appliance.storage._loading import PARQUET_OPTIONS
from appliance.storage._retention import apply_retention, version_folder
from appliance.storage._sql import ident, literal
from appliance.storage._writer_lock import dataset_writer

logger = logging.getLogger(__name__)

COMPACTED = "compacted"
"""Report key of a compacted version: the version it compacts and how many
version folders that version read."""


@dataclass(frozen=True)
class CompactResult:
    """Outcome of one compaction."""

    version: DatasetVersion
    """The compacted version, or the latest version when it had nothing to do."""
    created: bool
    """False when the latest version read only its own files, or was
    compacted before."""
    folders: int = 0
    """Version folders that the compacted version read."""
    removed: list[str] | None = None
    """Old versions deleted by the retention rule after the compaction."""


def chain_folders(version: DatasetVersion) -> int:
    """Return how many version folders `version` reads files of."""
    return len({version_folder(glob) for glob in version.files})


def compact_chain(catalog: Catalog, settings: DatasetConfig) -> CompactResult:
    """Write the rows of the latest version of a dataset to a version of its own.

    It holds the dataset's writer lock (`dataset_writer`) meanwhile, because
    a flush recorded during the compaction would not be part of the compacted
    version, and a second compaction of the chain would write the same folder.

    Raises:
        NotFoundError: The dataset has no version.
        StorageError: The lake or the catalog cannot be written; nothing was
            stored.
    """
    with dataset_writer(catalog, settings.name):
        return _compact_chain(catalog, settings)


def _compact_chain(catalog: Catalog, settings: DatasetConfig) -> CompactResult:
    dataset = settings.name
    latest = latest_version(catalog, dataset)
    assert latest is not None
    folders = chain_folders(latest)
    if latest.mode != "append" or folders < 2:
        return CompactResult(latest, created=False, folders=folders)
    version_id = hashlib.sha256(f"compact\n{latest.version}".encode()).hexdigest()
    version_id = version_id[:16]
    existing = find_version(catalog, dataset, version_id)
    if existing is not None:
        return CompactResult(existing, created=False, folders=folders)
    target = catalog.lake / dataset / f"version={version_id}"
    partition = None
    if has_partitioned_files(latest) and settings.partition_by in latest.schema:
        partition = settings.partition_by
    _write_rows(catalog, latest, target, partition)
    version = _compacted_version(latest, version_id, target, partition, folders)
    try:
        _record(catalog, version)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    mark_committed(target)
    removed = []
    if settings.keep_versions:
        removed = apply_retention(catalog, dataset, settings.keep_versions)
    details = {"compacted": latest.version, "version": version_id, "folders": folders}
    record(catalog, "dataset.compact", dataset, details)
    logger.info(
        "append chain compacted dataset=%s version=%s from=%s folders=%d rows=%d",
        dataset,
        version_id,
        latest.version,
        folders,
        latest.row_count,
    )
    return CompactResult(version, True, folders, removed)


def _write_rows(
    catalog: Catalog, latest: DatasetVersion, target: Path, partition: str | None
) -> None:
    """Write every row of `latest` to the folder `target` through a staging folder.

    Raises:
        StorageError: The rows cannot be read or written.
    """
    work = target.with_name(target.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    make_staging_folder(work)
    out = work / "out"
    options = PARQUET_OPTIONS
    if partition is not None:
        options += f", PARTITION_BY ({ident(partition)})"
        destination = out
    else:
        out.mkdir()
        destination = out / "data_0.parquet"
    try:
        with catalog.db.cursor() as db:
            db.execute(
                f"COPY ({scan_sql(latest)}) TO {literal(str(destination))} ({options})"
            )
        (out / UNCOMMITTED).touch()
        shutil.rmtree(target, ignore_errors=True)
        os.replace(out, target)
    except (duckdb.Error, OSError) as exc:
        problem = short_error(exc) if isinstance(exc, duckdb.Error) else str(exc)
        raise StorageError(
            f"cannot compact version {latest.version} of dataset "
            f"{latest.dataset!r} into {target}: {problem}; nothing was stored, "
            "check the free disk space and the version's files, and compact again"
        ) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _compacted_version(
    latest: DatasetVersion,
    version_id: str,
    target: Path,
    partition: str | None,
    folders: int,
) -> DatasetVersion:
    own_glob = str(target) + ("/*/*.parquet" if partition else "/*.parquet")
    report = {
        **latest.report,
        "accepted": latest.row_count,
        "quarantined": 0,
        "warnings": [],
        COMPACTED: {"from": latest.version, "folders": folders},
    }
    return replace(
        latest,
        version=version_id,
        parent=latest.version,
        created_at=datetime.now(timezone.utc),
        sources=[],
        path=target,
        mode="replace",
        files=[own_glob],
        partition_by=partition,
        report=report,
        used_by=[],
        redactions=[],
    )


def _record(catalog: Catalog, version: DatasetVersion) -> None:
    """Record `version` in one transaction.

    Raises:
        StorageError: The catalog cannot be written; nothing was recorded.
    """
    try:
        with catalog.transaction():
            record_version(catalog, version)
    except duckdb.Error as exc:
        raise StorageError(
            f"cannot record compacted version {version.version} of dataset "
            f"{version.dataset!r} in the catalog {catalog.path}: "
            f"{short_error(exc)}; nothing was stored, check that the catalog is "
            "writable and compact again"
        ) from exc


def compact_if_long(catalog: Catalog, settings: DatasetConfig) -> None:
    """Compact the dataset's append chain when it reads more than
    ``compact_after`` version folders, as each buffer flush checks.

    The flush's rows are stored already, so a failed compaction is logged
    and the next flush tries again.
    """
    limit = settings.compact_after
    latest = latest_version(catalog, settings.name, missing_ok=True)
    if limit is None or latest is None or chain_folders(latest) <= limit:
        return
    try:
        compact_chain(catalog, settings)
    except StorageError:
        logger.exception(
            "automatic compaction failed, tried again at the next flush "
            "dataset=%s version=%s",
            settings.name,
            latest.version,
        )
