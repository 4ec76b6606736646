"""Lake folders that no catalog row reads, left by a process killed mid-ingest.

An ingest writes a version's rows to ``lake/DATASET/version=ID/`` and then
records the version in the catalog. A process killed between the two leaves
a folder that no version names; one killed while staging leaves its
``version=ID.tmp`` folder. An erasure killed before its commit leaves a
``version=ID.erase.tmp`` folder, and one killed after it the old folder of
each version it rewrote. An ingest of compressed files killed before its
end leaves their decompressed copies in the home's ``decompressed`` folder.
`remove_orphan_folders` deletes all of them. It
must run while no ingest is in progress, such as at the daemon's start or
before a command-line ingest, because an ingest's folder has no catalog row
until the ingest ends.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from appliance.storage._catalog import Catalog
from appliance.storage._compressed import DECOMPRESSED_FOLDER

logger = logging.getLogger(__name__)

_PREFIX = "version="
_STAGING = ".tmp"


def remove_orphan_folders(catalog: Catalog) -> list[Path]:
    """Delete the version folders of the lake that no catalog row reads.

    A folder is kept while a version in the catalog is stored in it or while
    another version reads its files: an ``append`` version reads its parent's files
    even after retention deleted the parent's row.

    A folder that cannot be deleted is logged and kept, so a start or an
    ingest does not fail on it. The folders of decompressed copies that an
    ingest left are deleted too.

    Returns:
        The folders deleted.
    """
    removed = _remove_decompressed(catalog.home)
    if not catalog.lake.is_dir():
        return removed
    known, globs = _referenced(catalog)
    for dataset_folder in sorted(p for p in catalog.lake.iterdir() if p.is_dir()):
        dataset = dataset_folder.name
        for folder in sorted(dataset_folder.glob(_PREFIX + "*")):
            version = folder.name.removeprefix(_PREFIX)
            if not folder.is_dir() or _is_read(dataset, version, known, globs):
                continue
            if _remove(folder):
                logger.warning(
                    "orphan version folder removed dataset=%s version=%s folder=%s",
                    dataset,
                    version,
                    folder,
                )
                removed.append(folder)
    return removed


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


def _referenced(catalog: Catalog) -> tuple[set[tuple[str, str]], list[str]]:
    """Return the (dataset, folder name) pairs of the catalog and every file glob.

    The folder name is the version id, or after an erasure the id and the
    suffix of its redacted folder (``ID.redacted-HASH``).
    """
    rows = catalog.db.execute(
        "SELECT dataset, version, path, files_json FROM dataset_versions"
    ).fetchall()
    known = set()
    for dataset, version, path, _ in rows:
        name = Path(path).name
        # A version recorded before its files were listed names one file.
        known.add(
            (
                dataset,
                name.removeprefix(_PREFIX) if name.startswith(_PREFIX) else version,
            )
        )
    globs = []
    for *_, files in rows:
        if files:
            globs += json.loads(files)
    return known, globs


def _is_read(
    dataset: str, version: str, known: set[tuple[str, str]], globs: list[str]
) -> bool:
    if version.endswith(_STAGING):
        return False
    if (dataset, version) in known:
        return True
    # Globs name the folder by the home's path at the time of the ingest,
    # which may differ from this catalog's, so only the last two parts count.
    part = f"/{dataset}/{_PREFIX}{version}/"
    return any(part in glob for glob in globs)


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
