"""The folders under ``HOME/orphans``: listed and removed by an operator.

`remove_orphan_folders` moves a lake version folder that no catalog row
reads, and that is not provably a leftover of this appliance's own writes, to
``HOME/orphans/DATASET/``. Such a folder may contain committed rows that
exist nowhere else, such as the newer versions of a home whose catalog was
restored from an older backup. The appliance therefore never deletes one on
its own, however old it is. An operator lists them, ingests the rows to keep
and removes the folders, and each removal is recorded in the audit log as
``orphans.remove``.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from appliance.access import record
from appliance.errors import NotFoundError, RequestError, StorageError
from appliance.storage._catalog import Catalog
from appliance.storage._orphans import ORPHANS_FOLDER

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrphanFolder:
    """One folder under ``HOME/orphans/DATASET/``."""

    dataset: str
    folder: str
    """Name of the folder, ``version=ID``, or ``version=ID.N`` when a folder
    of that name was there already."""
    path: Path
    bytes: int
    """Total size of the regular files in the folder."""
    files: int
    modified_at: datetime
    """Newest modification time of the folder and its files, in UTC. Moving
    a folder keeps these times, so this is when its rows were last written,
    not when it was moved."""

    def to_dict(self) -> dict[str, Any]:
        """Return the folder as JSON-ready values."""
        return {
            "dataset": self.dataset,
            "folder": self.folder,
            "path": str(self.path),
            "bytes": self.bytes,
            "files": self.files,
            "modified_at": self.modified_at.isoformat(),
        }


def orphans_dir(home: Path) -> Path:
    """Return the folder that unknown lake folders are moved to."""
    return home / ORPHANS_FOLDER


def list_orphans(home: Path, dataset: str | None = None) -> list[OrphanFolder]:
    """Return the orphan folders of every dataset, or of `dataset`, by name.

    Only the file system is read, so the listing works while a daemon runs.
    """
    root = orphans_dir(home)
    if not root.is_dir():
        return []
    # Names come from the listing only, so a name such as "../lake" never
    # reaches a folder outside the orphans folder.
    datasets = sorted(os.listdir(root))
    if dataset is not None:
        datasets = [dataset] if dataset in datasets else []
    found = []
    for name in datasets:
        folder = root / name
        if not folder.is_dir():
            continue
        for child in sorted(folder.iterdir()):
            if child.is_dir() and not child.is_symlink():
                found.append(_describe(name, child))
    return found


def log_orphans(home: Path) -> list[OrphanFolder]:
    """Log a warning with the count and size of the orphan folders, if any.

    The daemon calls this at its start, so folders kept from an earlier
    start are not forgotten.

    Returns:
        The orphan folders.
    """
    found = list_orphans(home)
    if found:
        logger.warning(
            "orphan folders kept folders=%d bytes=%d datasets=%s path=%s; they "
            "may contain committed rows that no catalog row reads: ingest the "
            "rows to keep, then delete them with 'appliance orphans remove' "
            "(README, 'Restoring a home')",
            len(found),
            sum(o.bytes for o in found),
            ",".join(dict.fromkeys(o.dataset for o in found)),
            orphans_dir(home),
        )
    return found


def remove_orphans(
    catalog: Catalog, dataset: str | None, folders: Sequence[str] = ()
) -> list[OrphanFolder]:
    """Delete orphan folders and record one ``orphans.remove`` entry per dataset.

    Args:
        catalog: A writable catalog, or a cursor view of the daemon's, where
            the audit entries go.
        dataset: The dataset whose folders to delete; every dataset when None.
        folders: Names of the folders of `dataset` to delete; all when empty.

    Returns:
        The folders deleted.

    Raises:
        RequestError: `folders` is given without a dataset.
        NotFoundError: `dataset` has no orphan folder, or a name in `folders`
            is not one of its folders.
        StorageError: A folder could not be deleted. The folders before it
            are deleted and recorded.
    """
    if folders and dataset is None:
        raise RequestError("folder names need a dataset; name the dataset too")
    chosen = _chosen(catalog.home, dataset, folders)
    removed: list[OrphanFolder] = []
    try:
        for orphan in chosen:
            _delete(orphan)
            removed.append(orphan)
    finally:
        _record(catalog, removed)
        _remove_empty_parents(catalog.home, removed)
    return removed


def _chosen(
    home: Path, dataset: str | None, folders: Sequence[str]
) -> list[OrphanFolder]:
    """Return the folders to delete, checked against the listing."""
    found = list_orphans(home, dataset)
    if dataset is not None and not found:
        present = sorted({o.dataset for o in list_orphans(home)})
        raise NotFoundError(
            f"dataset {dataset!r} has no folder under {orphans_dir(home)}; "
            f"datasets with orphan folders: {', '.join(present) or 'none'}"
        )
    if not folders:
        return found
    by_name = {o.folder: o for o in found}
    unknown = [name for name in folders if name not in by_name]
    if unknown:
        raise NotFoundError(
            f"dataset {dataset!r} has no orphan folder {unknown[0]!r}; its "
            f"folders: {', '.join(by_name)}. Run 'appliance orphans list' to see them"
        )
    return [by_name[name] for name in dict.fromkeys(folders)]


def _delete(orphan: OrphanFolder) -> None:
    try:
        shutil.rmtree(orphan.path)
    except OSError as exc:
        raise StorageError(
            f"orphan folder {orphan.path} could not be deleted: {exc}; check "
            "the permissions of the home, then run the command again"
        ) from exc
    logger.warning(
        "orphan folder removed dataset=%s folder=%s bytes=%d files=%d",
        orphan.dataset,
        orphan.path,
        orphan.bytes,
        orphan.files,
    )


def _record(catalog: Catalog, removed: list[OrphanFolder]) -> None:
    for dataset in dict.fromkeys(o.dataset for o in removed):
        deleted = [o for o in removed if o.dataset == dataset]
        details = {
            "folders": [o.folder for o in deleted],
            "bytes": sum(o.bytes for o in deleted),
            "files": sum(o.files for o in deleted),
        }
        record(catalog, "orphans.remove", dataset, details)


def _remove_empty_parents(home: Path, removed: list[OrphanFolder]) -> None:
    """Delete the dataset folders and the orphans folder left empty."""
    root = orphans_dir(home)
    for folder in [*dict.fromkeys(o.path.parent for o in removed), root]:
        try:
            folder.rmdir()
        except OSError:
            # The folder is not empty or is gone already, so it stays as is.
            continue


def _describe(dataset: str, folder: Path) -> OrphanFolder:
    total = files = 0
    newest = folder.stat().st_mtime
    for root, _dirs, names in os.walk(folder):
        for name in names:
            try:
                stat = (Path(root) / name).stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            total += stat.st_size
            files += 1
            newest = max(newest, stat.st_mtime)
    modified = datetime.fromtimestamp(newest, timezone.utc)
    return OrphanFolder(dataset, folder.name, folder, total, files, modified)
