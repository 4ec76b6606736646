"""Lake folders that no catalog row reads: unfinished writes and unknown data.

An ingest writes a version's rows to ``lake/DATASET/version=ID/`` with an
``_uncommitted`` marker file, records the version in the catalog and then
deletes the marker. A process killed before the record leaves a marked
folder that no version names; one killed while staging leaves its
``version=ID.tmp`` folder. An erasure killed before its commit leaves a
``version=ID.erase.tmp`` folder or a ``version=ID.redacted-HASH`` folder
beside the one the catalog reads, and one killed after it the old folder of
each version it rewrote. Retention killed after its commit leaves the folder
of a version it moved to ``removed_versions``, and keeps such a folder while
an ``append`` version reads it. An ingest of compressed files killed before
its end leaves their decompressed copies in the home's ``decompressed``
folder. `remove_orphan_folders` deletes all of them.

Any other folder without a catalog row may hold committed rows, such as the
newer versions of a home whose catalog was restored from an older backup.
It is moved to ``HOME/orphans/DATASET/`` with a warning instead, so its rows
can be ingested again. The cleanup must run while no ingest is in progress,
such as at the daemon's start or before a command-line ingest, because an
ingest's folder has no catalog row until the ingest ends.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from appliance.storage._catalog import Catalog
from appliance.storage._compressed import DECOMPRESSED_FOLDER
from appliance.storage._datasets import REDACTED
from appliance.storage._lake_write import UNCOMMITTED, mark_committed
from appliance.storage._removal import finish_removals

logger = logging.getLogger(__name__)

_PREFIX = "version="
_STAGING = ".tmp"
ORPHANS_FOLDER = "orphans"
"""Folder of the home that unknown version folders are moved to."""


@dataclass
class _References:
    """The version folders that the catalog reads or recorded as removed."""

    read: set[tuple[str, str]] = field(default_factory=set)
    """(dataset, folder name without ``version=``) of every folder read."""
    removed: dict[tuple[str, str], datetime] = field(default_factory=dict)
    """(dataset, version id) of each removed version, with its removal time."""


def remove_orphan_folders(catalog: Catalog) -> list[Path]:
    """Delete the unfinished writes of the lake; move other unknown folders aside.

    A folder is kept while a version in the catalog is stored in it or while
    another version reads its files: an ``append`` version reads its parent's
    files even after retention deleted the parent's row. A version folder that
    no catalog row reads and that is not provably a leftover of this
    appliance's own writes is moved to ``HOME/orphans/DATASET/``.

    A folder that cannot be deleted or moved is logged and kept, so a start
    or an ingest does not fail on it. The folders of decompressed copies that
    an ingest left are deleted too.

    The files of dataset removals that a crash cut short are deleted first
    (`finish_removals`), so their version folders are not moved aside.

    Returns:
        The folders deleted.
    """
    finish_removals(catalog)
    removed = _remove_decompressed(catalog.home)
    if not catalog.lake.is_dir():
        return removed
    references = _references(catalog)
    for dataset_folder in sorted(p for p in catalog.lake.iterdir() if p.is_dir()):
        dataset = dataset_folder.name
        for folder in sorted(dataset_folder.glob(_PREFIX + "*")):
            name = folder.name.removeprefix(_PREFIX)
            if not folder.is_dir():
                continue
            if (dataset, name) in references.read:
                # A crash between the catalog's commit and the marker's removal.
                mark_committed(folder)
                continue
            reason = _leftover_reason(dataset, folder, references)
            if reason is None:
                _quarantine(catalog.home, dataset, folder)
            elif _remove(folder):
                logger.warning(
                    "orphan version folder removed dataset=%s version=%s "
                    "folder=%s reason=%s",
                    dataset,
                    name,
                    folder,
                    reason,
                )
                removed.append(folder)
    return removed


def _leftover_reason(dataset: str, folder: Path, references: _References) -> str | None:
    """Return why `folder` is a leftover of an unfinished write, or None.

    None means the folder may hold rows that a version committed, because
    nothing proves otherwise.
    """
    name = folder.name.removeprefix(_PREFIX)
    if name.endswith(_STAGING):
        return "staging"
    if (folder / UNCOMMITTED).exists():
        return "uncommitted"
    base = name.split(REDACTED)[0]
    siblings = [
        read
        for read_dataset, read in references.read
        if read_dataset == dataset and read.split(REDACTED)[0] == base
    ]
    if any((folder.parent / (_PREFIX + s)).is_dir() for s in siblings):
        # The catalog reads another folder of the same version: the erasure
        # that wrote it, or that this folder is the output of, did not finish.
        return "erasure"
    removed_at = references.removed.get((dataset, base))
    if removed_at is not None and _modified_at(folder) <= removed_at:
        # Written before retention removed its version, not recreated since.
        return "removed"
    return None


def _modified_at(folder: Path) -> datetime:
    return datetime.fromtimestamp(folder.stat().st_mtime, timezone.utc)


def _quarantine(home: Path, dataset: str, folder: Path) -> None:
    """Move `folder` to ``HOME/orphans/DATASET/``; log and keep it on failure."""
    target = home / ORPHANS_FOLDER / dataset / folder.name
    count = 1
    while target.exists():
        count += 1
        target = target.with_name(f"{folder.name}.{count}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(folder, target)
    except OSError as exc:
        logger.error(
            "unknown version folder not moved folder=%s error=%s; check the "
            "permissions of the home",
            folder,
            exc,
        )
        return
    logger.warning(
        "version folder without a catalog row moved dataset=%s folder=%s "
        "moved_to=%s; it may hold committed rows, such as after a catalog "
        "was restored from an older backup: ingest its Parquet files again "
        "to keep them (README, 'Restoring a home'), or delete it",
        dataset,
        folder,
        target,
    )


def _remove_decompressed(home: Path) -> list[Path]:
    """Delete the folders of decompressed copies that stopped ingests left."""
    root = home / DECOMPRESSED_FOLDER
    if not root.is_dir():
        return []
    removed = []
    for folder in sorted(root.iterdir()):
        if _remove(folder):
            logger.warning(
                "decompressed copies of a stopped ingest removed folder=%s", folder
            )
            removed.append(folder)
    return removed


def _references(catalog: Catalog) -> _References:
    """Return the folders the catalog reads and the versions it removed.

    The folder name is the version id, or after an erasure the id and the
    suffix of its redacted folder (``ID.redacted-HASH``).
    """
    references = _References()
    rows = catalog.db.execute(
        "SELECT dataset, version, path, files_json FROM dataset_versions"
    ).fetchall()
    for dataset, version, path, files in rows:
        name = Path(path).name
        # A version recorded before its files were listed names one file.
        own = name.removeprefix(_PREFIX) if name.startswith(_PREFIX) else version
        references.read.add((dataset, own))
        # Globs name the folder by the home's path at the time of the ingest,
        # which may differ from this catalog's, so only the last parts count.
        for glob in json.loads(files) if files else []:
            read = _glob_folder(dataset, glob)
            if read is not None:
                references.read.add((dataset, read))
    for dataset, version, removed_at in catalog.db.execute(
        "SELECT dataset, version, removed_at FROM removed_versions"
    ).fetchall():
        references.removed[(dataset, version)] = removed_at
    return references


def _glob_folder(dataset: str, glob: str) -> str | None:
    """Return the version folder name (without ``version=``) a glob reads."""
    part = f"/{dataset}/{_PREFIX}"
    if part not in glob:
        return None
    return glob.rsplit(part, 1)[1].split("/", 1)[0]


def _remove(folder: Path) -> bool:
    """Delete `folder`; log and keep it when it cannot be deleted."""
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        return False
    except OSError as exc:
        logger.error(
            "orphan folder not removed folder=%s error=%s; check the "
            "permissions of its parent folder",
            folder,
            exc,
        )
        return False
    return True
