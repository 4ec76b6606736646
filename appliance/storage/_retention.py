"""Retention: old dataset versions deleted, and what the catalog keeps of them.

`apply_retention` deletes all but the newest versions of a dataset, except
those a registered model was trained on. A challenger that the retraining
gate rejected and that never held an alias keeps no version (see
`appliance.storage._gate`). Each deleted version's row moves to
the ``removed_versions`` table, so a later ingest of the same files can name
it. Files of a removed version are new to the dataset when no kept version
reads their rows, and an ingest stores them again with a note naming the
removed version (`removed_notes`). An append of the files of a removed
version whose rows a kept ``append`` version still reads would store those
rows twice, so `find_removed_in_latest` finds that version for the ingest.

A removed version's quarantined rows are deleted with it, and so are its
source files in the ingest buffer's ``buffer/DATASET/quarantined/`` folder:
the segments of HTTP rows that broke the contract. Source files elsewhere
belong to the operator and stay.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from appliance.errors import StorageError
from appliance.storage._catalog import Catalog
from appliance.storage._datasets import (
    REDACTED,
    VERSION_COLUMNS,
    DatasetVersion,
    list_versions,
    sources_filter,
    version_from_row,
)

logger = logging.getLogger(__name__)

_PREFIX = "version="
"""Start of the name of a version folder in the lake."""


def apply_retention(catalog: Catalog, dataset: str, keep: int) -> list[str]:
    """Delete all but the newest `keep` versions of `dataset`; return their ids.

    Only versions that added rows count towards `keep`: an append whose rows
    were all quarantined, such as a buffer flush of bad rows, does not push
    out a version with data. Of such appends newer than the oldest kept
    version with data, the newest `keep` are kept. An older
    version that a registered model was trained on is kept too, unless every
    such model version is a challenger the retraining gate rejected that
    never held an alias (`DatasetVersion.rejected_users`). A deleted
    version's folder stays while a kept version still reads it (an
    ``append`` child reads its parent's files), and a later run that removes
    a version deletes it once none does.
    """
    versions = list_versions(catalog, dataset)
    newest = _newest_with_rows(versions, keep)
    # Of the appends without rows among the kept, the newest `keep` stay, so
    # a steady stream of bad rows does not grow the catalog without bound.
    empty = [v.version for v in versions[:newest] if _added_no_rows(v)]
    surplus = set(empty[keep:])
    window = [v for v in versions[:newest] if v.version not in surplus]
    in_window = {v.version for v in window}
    older = [v for v in versions if v.version not in in_window]
    kept = window + [v for v in older if _keepers(v)]
    dropped = [v for v in older if not _keepers(v)]
    for version in kept[len(window) :]:
        logger.info(
            "version kept by retention dataset=%s version=%s used_by=%s",
            dataset,
            version.version,
            ",".join(_keepers(version)),
        )
    if not dropped:
        return []
    for version in dropped:
        _move_to_removed(catalog, dataset, version.version)
        rows, segments = _remove_quarantine(catalog, version)
        logger.info(
            "version removed by retention dataset=%s version=%s keep=%d "
            "quarantined_rows=%d buffer_segments=%d rejected_users=%s",
            dataset,
            version.version,
            keep,
            rows,
            segments,
            ",".join(version.rejected_users) or "-",
        )
    _remove_unread_folders(catalog, dataset, kept)
    return [version.version for version in dropped]


def _keepers(version: DatasetVersion) -> list[str]:
    """Return the model versions for which retention keeps `version`."""
    return [user for user in version.used_by if user not in version.rejected_users]


def _remove_unread_folders(
    catalog: Catalog, dataset: str, kept: list[DatasetVersion]
) -> None:
    """Delete the folder of each removed version that no kept version reads.

    Earlier runs' removed versions count too: their folders stayed while a
    kept ``append`` version read them, and are freed once none does, such as
    after a ``replace`` ingest pushed the last reader out. An erasure that
    rewrote such a folder left its rows in a ``.redacted-`` sibling, which
    goes the same way. Folders are matched by name within the dataset's
    lake folder, so a glob under another spelling of the home still keeps
    its folder, and one listing serves every removed version.
    """
    lake = catalog.lake / dataset
    try:
        names = sorted(os.listdir(lake))
    except FileNotFoundError:
        return
    removed = {
        version
        for (version,) in catalog.db.execute(
            "SELECT version FROM removed_versions WHERE dataset = ?", [dataset]
        ).fetchall()
    }
    in_use = {version.path.name for version in kept}
    in_use.update(Path(version_folder(g)).name for v in kept for g in v.files)
    for name in names:
        version = name.removeprefix(_PREFIX).split(REDACTED)[0]
        if not name.startswith(_PREFIX) or version not in removed or name in in_use:
            continue
        if not (lake / name).is_dir():
            continue
        _remove_folder(lake / name)
        logger.info(
            "removed version folder deleted dataset=%s version=%s folder=%s",
            dataset,
            version,
            lake / name,
        )


def version_folder(glob: str) -> str:
    """Return the version folder of a file glob of a version."""
    for ending in ("/*/*.parquet", "/*.parquet"):
        if glob.endswith(ending):
            return glob.removesuffix(ending)
    return glob.rsplit("/", 1)[0]


def _newest_with_rows(versions: list[DatasetVersion], keep: int) -> int:
    """Return how many of `versions`, newest first, to keep so that `keep`
    of them added rows."""
    counted = 0
    for index, version in enumerate(versions):
        counted += not _added_no_rows(version)
        if counted == keep:
            return index + 1
    return len(versions)


def _added_no_rows(version: DatasetVersion) -> bool:
    """Tell whether `version` is an append whose rows were all quarantined."""
    return version.mode == "append" and version.report.get("accepted") == 0


def removed_versions(
    catalog: Catalog, dataset: str, sources: Sequence[str] = ()
) -> list[DatasetVersion]:
    """Return the versions of `dataset` that retention removed, newest first.

    Args:
        sources: When given, only versions whose source files include
            files of each of these SHA-256 hashes, and maybe others.
    """
    conditions, hashes = sources_filter(sources)
    rows = catalog.db.execute(
        f"SELECT {VERSION_COLUMNS} FROM removed_versions WHERE dataset = ?"
        f"{conditions} ORDER BY created_at DESC",
        [dataset, *hashes],
    ).fetchall()
    return [version_from_row(row) for row in rows]


def find_removed_in_latest(
    catalog: Catalog, dataset: str, hashes: list[str], latest: DatasetVersion | None
) -> DatasetVersion | None:
    """Return a removed version of exactly these files whose rows `latest` reads.

    Retention keeps the folder of a removed version while a kept ``append``
    version reads it, so the files' rows are still part of the latest version.
    """
    if latest is None:
        return None
    file_hashes = sorted(hashes)
    for version in removed_versions(catalog, dataset, hashes):
        prefix = f"{version.path}/"
        same_files = sorted(s["sha256"] for s in version.sources) == file_hashes
        if same_files and any(glob.startswith(prefix) for glob in latest.files):
            return version
    return None


def find_removed_sources(
    catalog: Catalog, dataset: str, sources: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Return each file that a removed version contained, with that version's id.

    Args:
        sources: The ingested files as ``(name, sha256)`` pairs.

    Returns:
        ``(name, version)`` pairs, naming the newest removed version of a file.
    """
    found = []
    for name, sha256 in sources:
        holder = next(
            (
                v
                for v in removed_versions(catalog, dataset, [sha256])
                if any(s["sha256"] == sha256 for s in v.sources)
            ),
            None,
        )
        if holder is not None:
            found.append((name, holder.version))
    return found


def removed_notes(
    dataset: str, version: str, found: list[tuple[str, str]]
) -> list[str]:
    """Log and return a note for each file of `find_removed_sources` stored again.

    Args:
        version: The id of the version that stored the files again.
    """
    notes = []
    for name, removed in found:
        logger.info(
            "ingest stored files of a removed version again dataset=%s version=%s "
            "removed_version=%s file=%s",
            dataset,
            version,
            removed,
            name,
        )
        notes.append(
            f"{name} was ingested before as {dataset}@{removed}, which the "
            "retention rule removed, so its rows are stored again in this version"
        )
    return notes


def forget_removed(catalog: Catalog, dataset: str, version: str) -> None:
    """Delete the record and quarantined rows of a removed version recorded again.

    The same files under the same contract get the same version id, so an
    ingest of a removed version's files recreates it. Its old quarantined
    rows are deleted, so the new ingest's rows are not listed twice.
    """
    for table in ("removed_versions", "quarantine"):
        catalog.db.execute(
            f"DELETE FROM {table} WHERE dataset = ? AND version = ?",
            [dataset, version],
        )


def _move_to_removed(catalog: Catalog, dataset: str, version: str) -> None:
    with catalog.transaction():
        catalog.db.execute(
            f"INSERT OR REPLACE INTO removed_versions ({VERSION_COLUMNS}, removed_at) "
            f"SELECT {VERSION_COLUMNS}, now() FROM dataset_versions "
            "WHERE dataset = ? AND version = ?",
            [dataset, version],
        )
        catalog.db.execute(
            "DELETE FROM dataset_versions WHERE dataset = ? AND version = ?",
            [dataset, version],
        )


def _remove_quarantine(catalog: Catalog, version: DatasetVersion) -> tuple[int, int]:
    """Delete the quarantined rows and buffer segments of a removed version.

    Returns:
        The number of rows and of segment files deleted.
    """
    (rows,) = catalog.db.execute(
        "DELETE FROM quarantine WHERE dataset = ? AND version = ?",
        [version.dataset, version.version],
    ).fetchall()[0]
    folder = (catalog.home / "buffer" / version.dataset / "quarantined").resolve()
    segments = 0
    for source in version.sources:
        path = Path(source["path"])
        if path.parent != folder or not path.exists():
            continue
        try:
            path.unlink()
        except OSError as exc:
            # The catalog no longer names the file, so no later run retries.
            # `appliance disk` shows the segments left.
            logger.warning("buffer segment not removed file=%s error=%s", path, exc)
            continue
        segments += 1
    return int(rows), segments


def _remove_folder(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"cannot remove old version folder {path}: {exc}") from exc
