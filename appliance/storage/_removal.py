"""Removal of a whole dataset: its catalog records, lake folder and buffer.

One catalog transaction deletes the dataset's versions, the versions that
retention removed, its redaction records, its stored contract and its
quarantined rows, and records the removal in ``dataset_removals``. That
commit is the point of no return: a crash before it leaves the whole
dataset, and a crash after it leaves files that no catalog row reads. The
files are then deleted: ``buffer/DATASET`` while the buffer takes no rows,
then ``lake/DATASET``. Only files modified at or before the commit go, so
rows sent or ingested under the same name afterwards stay. The removal is
then marked finished. `finish_removals` deletes the files of each unfinished
removal. `remove_orphan_folders` calls it at the daemon's start and before a
command-line ingest or erasure, before it looks for unknown version folders.

Erasure receipts and the audit log keep their entries of the dataset, because
they are records of what was done.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from appliance.access import record
from appliance.config import Config, dataset_name_problem
from appliance.errors import InUseError, NotFoundError, RequestError, StorageError
from appliance.storage._buffer import IngestBuffer
from appliance.storage._catalog import Catalog
from appliance.storage._removal_checks import (
    Dependent,
    dependents_message,
    find_dependents,
    unflushed_message,
    unflushed_rows,
)

logger = logging.getLogger(__name__)

_TABLES = (
    "dataset_versions",
    "removed_versions",
    "dataset_redactions",
    "dataset_contracts",
    "quarantine",
)
"""Catalog tables whose rows of the dataset a removal deletes."""


@dataclass
class DatasetRemoval:
    """The outcome of one dataset removal: the ids, counts and notes."""

    removal_id: str
    dataset: str
    removed_at: datetime
    """Time of the catalog commit; files modified later are kept."""
    versions: list[str] = field(default_factory=list)
    """Ids of the deleted versions, newest first."""
    rows: int = 0
    """Rows of the newest version."""
    quarantined_rows: int = 0
    dropped_rows: int = 0
    """Acknowledged buffer rows that no version stored, deleted on request."""
    files_deleted: int = 0
    """Files deleted from the lake and buffer folders."""
    dependents: list[Dependent] = field(default_factory=list)
    """Dependents that `ignore_dependents` let the removal go past."""
    notes: list[str] = field(default_factory=list)
    buffer_deleted: bool = False
    """Whether every buffer file modified before the commit was deleted."""

    def to_dict(self) -> dict[str, Any]:
        """Return the removal in JSON types."""
        result = asdict(self)
        result["removed_at"] = self.removed_at.isoformat()
        return result


def remove_dataset(
    catalog: Catalog,
    config: Config,
    dataset: str,
    ignore_dependents: bool = False,
    drop_buffered_rows: bool = False,
    buffer: IngestBuffer | None = None,
    after_commit: Callable[[], None] | None = None,
) -> DatasetRemoval:
    """Remove `dataset` from the catalog, the lake and the ingest buffer.

    Args:
        catalog: A writable catalog, or the daemon's cursor view of it. No
            ingest or flush of the dataset may run meanwhile.
        ignore_dependents: Remove the dataset although models, feature views
            or model versions use it. The result lists them.
        drop_buffered_rows: Delete buffered rows that no version stores.
        buffer: The daemon's running ingest buffer; None when no daemon runs.
        after_commit: Called once the catalog no longer has the dataset,
            before its lake files are deleted.

    Raises:
        RequestError: `dataset` is not a valid dataset name, and the catalog
            has no version of that name.
        NotFoundError: Nothing of `dataset` is stored.
        InUseError: Something depends on the dataset, or its buffer contains
            rows that no version stores, and no flag allows the removal.

    A file that cannot be deleted, such as for lack of permission, is logged
    and named in the notes. The catalog no longer has the dataset then, and
    the next start deletes the rest.
    """
    finish_removals(catalog)
    removal = DatasetRemoval(uuid.uuid4().hex[:16], dataset, _now())
    _read_versions(catalog, removal)
    _check_name(dataset, removal)
    _check_known(catalog, config, dataset, removal)
    try:
        blocked = _check_dependents(catalog, config, removal, ignore_dependents)
        folder = catalog.home / "buffer" / dataset
        commit = partial(
            _commit_with_buffer, catalog, removal, folder, drop_buffered_rows, blocked
        )
        if buffer is None:
            commit()
        else:
            buffer.without_appends(dataset, commit)
    except InUseError as exc:
        _audit(catalog, removal, "refused", str(exc))
        raise
    if after_commit is not None:
        after_commit()
    deleted = _delete_or_note(removal, catalog.lake / dataset)
    if deleted and removal.buffer_deleted:
        _mark_finished(catalog, removal.removal_id)
    removal.notes += _notes(catalog.home, config, dataset)
    logger.info(
        "dataset removed dataset=%s removal_id=%s versions=%d quarantined_rows=%d "
        "dropped_rows=%d files=%d ignored_dependents=%s",
        dataset,
        removal.removal_id,
        len(removal.versions),
        removal.quarantined_rows,
        removal.dropped_rows,
        removal.files_deleted,
        ",".join(f"{d.kind}:{d.name}" for d in removal.dependents) or "none",
    )
    return removal


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _read_versions(catalog: Catalog, removal: DatasetRemoval) -> None:
    rows = catalog.db.execute(
        "SELECT version, row_count FROM dataset_versions WHERE dataset = ? "
        "ORDER BY created_at DESC",
        [removal.dataset],
    ).fetchall()
    removal.versions = [version for version, _ in rows]
    removal.rows = int(rows[0][1]) if rows else 0


def _check_name(dataset: str, removal: DatasetRemoval) -> None:
    """Raise `RequestError` for a name that is invalid and not in the catalog.

    The name becomes a folder under ``lake`` and ``buffer``, so a name such
    as ``..`` must never reach the file system. A catalog written before
    names were checked may have a version of an invalid name, and such a
    dataset can be removed when its name is one path component.
    """
    problem = dataset_name_problem(dataset)
    if problem is None:
        return
    single = dataset not in ("", ".", "..") and "/" not in dataset
    if removal.versions and single:
        return
    raise RequestError(f"{problem}; 'appliance datasets list' names the datasets")


def _check_known(
    catalog: Catalog, config: Config, dataset: str, removal: DatasetRemoval
) -> None:
    """Raise `NotFoundError` when neither the catalog nor the home stores
    anything of `dataset`."""
    if removal.versions:
        return
    for table in _TABLES[1:]:
        found = catalog.db.execute(
            f"SELECT count(*) FROM {table} WHERE dataset = ?", [dataset]
        ).fetchall()
        if found[0][0]:
            return
    if any((catalog.home / part / dataset).exists() for part in ("lake", "buffer")):
        return
    names = catalog.db.execute(
        "SELECT DISTINCT dataset FROM dataset_versions ORDER BY dataset"
    ).fetchall()
    known = ", ".join(name for (name,) in names) or "none"
    declared = (
        f" It is declared in [datasets.{dataset}] but was never ingested."
        if dataset in config.datasets
        else ""
    )
    raise NotFoundError(
        f"dataset {dataset!r} has no version and nothing stored, so there is "
        f"nothing to remove.{declared} Datasets with versions: {known}"
    )


def _check_dependents(
    catalog: Catalog, config: Config, removal: DatasetRemoval, ignore: bool
) -> str | None:
    """Return the error that the dependents of the dataset raise, or None
    when it has none or `ignore` is set."""
    dependents = find_dependents(catalog, config, removal.dataset)
    if dependents and not ignore:
        return dependents_message(removal.dataset, dependents)
    removal.dependents = dependents
    return None


def _commit_with_buffer(
    catalog: Catalog,
    removal: DatasetRemoval,
    folder: Path,
    drop: bool,
    blocked: str | None,
) -> None:
    """Check the buffer, commit and audit the catalog's removal, and delete
    the buffer's files; the daemon's buffer takes no row meanwhile.

    `blocked` is the dependents' error. It is raised together with the
    buffer's error, so one attempt reports every reason.
    """
    unflushed = unflushed_rows(folder)
    reasons = [blocked] if blocked is not None else []
    if unflushed and not drop:
        reasons.append(unflushed_message(removal.dataset, folder, unflushed))
    if reasons:
        raise InUseError("\n".join(reasons))
    removal.dropped_rows = sum(unflushed.values())
    _commit(catalog, removal)
    _audit(catalog, removal, "ok")
    removal.buffer_deleted = _delete_or_note(removal, folder)


def _commit(catalog: Catalog, removal: DatasetRemoval) -> None:
    """Delete the dataset's catalog rows and record the removal, in one
    transaction."""
    db = catalog.db
    with catalog.transaction():
        (quarantined,) = db.execute(
            "SELECT count(*) FROM quarantine WHERE dataset = ?", [removal.dataset]
        ).fetchall()[0]
        removal.quarantined_rows = int(quarantined)
        removal.removed_at = _now()
        db.execute(
            "INSERT INTO dataset_removals (removal_id, dataset, removed_at, "
            "versions) VALUES (?, ?, ?, ?)",
            [removal.removal_id, removal.dataset, removal.removed_at, removal.versions],
        )
        for table in _TABLES:
            db.execute(f"DELETE FROM {table} WHERE dataset = ?", [removal.dataset])


def _delete_files(folder: Path, before: datetime) -> int:
    """Delete the files under `folder` modified at or before `before`, then
    the folders left empty; return the count of files deleted.

    Raises:
        StorageError: A file or folder could not be deleted.
    """
    if not folder.is_dir():
        return 0
    limit = before.timestamp()
    deleted = 0
    try:
        # Reverse order lists a folder's entries before the folder itself.
        for path in sorted(folder.rglob("*"), reverse=True):
            if path.is_dir() and not path.is_symlink():
                if not any(path.iterdir()):
                    path.rmdir()
            elif path.lstat().st_mtime <= limit:
                path.unlink()
                deleted += 1
        if not any(folder.iterdir()):
            folder.rmdir()
    except OSError as exc:
        raise StorageError(
            f"cannot delete {exc.filename or folder} of a removed dataset: "
            f"{exc.strerror or exc}. The catalog no longer has the dataset; fix "
            "the permissions, and the next daemon start or command-line ingest "
            "deletes the rest"
        ) from exc
    return deleted


def _delete_or_note(removal: DatasetRemoval, folder: Path) -> bool:
    """Delete the removed dataset's files under `folder`; return whether all
    went, or log the error and add it to the notes."""
    try:
        removal.files_deleted += _delete_files(folder, removal.removed_at)
    except StorageError as exc:
        logger.error(
            "removed dataset files not deleted dataset=%s removal_id=%s error=%s",
            removal.dataset,
            removal.removal_id,
            exc,
        )
        removal.notes.append(str(exc))
        return False
    return True


def _mark_finished(catalog: Catalog, removal_id: str) -> None:
    catalog.db.execute(
        "UPDATE dataset_removals SET finished_at = ? WHERE removal_id = ?",
        [_now(), removal_id],
    )


def finish_removals(catalog: Catalog) -> list[str]:
    """Delete the leftover files of removals that a crash or a failed delete
    cut short; return the datasets finished.

    A removal that fails again is logged and stays unfinished for the next
    call, so a start does not fail on it.
    """
    rows = catalog.db.execute(
        "SELECT removal_id, dataset, removed_at FROM dataset_removals "
        "WHERE finished_at IS NULL ORDER BY removed_at"
    ).fetchall()
    finished = []
    for removal_id, dataset, removed_at in rows:
        try:
            files = sum(
                _delete_files(catalog.home / part / dataset, removed_at)
                for part in ("buffer", "lake")
            )
        except StorageError as exc:
            logger.error(
                "dataset removal not finished dataset=%s removal_id=%s error=%s",
                dataset,
                removal_id,
                exc,
            )
            continue
        _mark_finished(catalog, removal_id)
        logger.warning(
            "dataset removal finished after an interruption dataset=%s "
            "removal_id=%s files=%d",
            dataset,
            removal_id,
            files,
        )
        details = {"removal_id": removal_id, "files_deleted": files}
        record(catalog, "dataset.remove", dataset, {**details, "finished": True})
        finished.append(dataset)
    return finished


def _audit(
    catalog: Catalog, removal: DatasetRemoval, outcome: str, error: str = ""
) -> None:
    details: dict[str, Any] = {
        "removal_id": removal.removal_id,
        "versions": removal.versions,
        "quarantined_rows": removal.quarantined_rows,
        "dropped_rows": removal.dropped_rows,
        "ignored_dependents": [f"{d.kind} {d.name}" for d in removal.dependents],
    }
    if error:
        details["error"] = error
    record(catalog, "dataset.remove", removal.dataset, details, outcome)


def _notes(home: Path, config: Config, dataset: str) -> list[str]:
    """Return what the removal left in place that the operator may act on."""
    notes = []
    if dataset in config.datasets:
        notes.append(
            f"[datasets.{dataset}] is still declared in the configuration, so "
            "rows sent over HTTP are buffered again and the next ingest starts "
            "the dataset anew; delete that table to stop both"
        )
    orphans = home / "orphans" / dataset
    if orphans.is_dir():
        notes.append(
            f"{orphans} contains version folders without catalog rows that an "
            "earlier start moved aside, which the removal leaves; run "
            f"'appliance orphans remove {dataset}' if their rows are not needed"
        )
    return notes
