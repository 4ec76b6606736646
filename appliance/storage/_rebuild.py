"""Lost lake files of a version, written again from its source files.

A version is content-addressed: its id is a hash of its source files'
SHA-256 hashes, of its parent in ``append`` mode, and of the contract and
sensitive columns its rows were checked against (`_unchanged.version_id`).
So when the folder of a version is lost, an ingest of the same files can
stage and check them again as the version's ingest did and write its rows
back to the same folder. `find_lost` finds the versions of the ingested
files whose rows cannot all be read. `rebuild_version` first checks that
the files and the current settings hash to the version's id, then stages
them, and writes the folder only when the staged rows match the recorded
counts and column types.

An ``append`` version reads its parent chain's files too, and its unique
keys are checked against the parent's rows, so the parent's files must be
readable before it can be rebuilt. A folder that an erasure rewrote is not
rebuilt, because its source files still contain the erased rows.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path

import duckdb

from appliance.config import ContractConfig, DatasetConfig
from appliance.crypto import ColumnCipher
from appliance.errors import IngestError
from appliance.storage._catalog import Catalog
from appliance.storage._datasets import (
    REDACTED,
    DatasetVersion,
    find_version,
    list_versions,
    read_by_kept,
    scan_sql,
)
from appliance.storage._encrypted import register_functions, remove_functions
from appliance.storage._lake_write import (
    Columns,
    make_staging_folder,
    mark_committed,
    write_rows,
)
from appliance.storage._retention import removed_versions
from appliance.storage._sources import SourceFile
from appliance.storage._sql import literal
from appliance.storage._staging import Checked, source_names, stage_checked
from appliance.storage._unchanged import id_fingerprint, version_id

logger = logging.getLogger(__name__)


def find_lost(
    catalog: Catalog, dataset: str, hashes: list[str], paths: list[str] | None = None
) -> list[DatasetVersion]:
    """Return the versions of exactly these files whose rows cannot all be read.

    A version's rows cannot all be read when its own files are missing, or
    contain another count of rows than the version accepted (`own_files_lost`),
    or when the files of an ancestor it appends to are (`lost_ancestor`).
    Besides the versions in the catalog, a version that retention removed
    counts while a kept ``append`` version still reads its folder.

    Args:
        hashes: SHA-256 of each ingested file.
        paths: When given, the version must also have read the files from
            these paths, as the ingest buffer's segments must.

    Returns:
        The versions, newest first, the kept ones before the removed ones.
    """
    kept = list_versions(catalog, dataset, hashes)
    removed = [
        version
        for version in removed_versions(catalog, dataset, hashes)
        if read_by_kept(catalog, dataset, version.path)
    ]
    expected = sorted(zip(hashes, paths)) if paths is not None else sorted(hashes)
    lost = []
    with catalog.db.cursor() as db:
        for version in kept + removed:
            if _source_key(version, paths is not None) != expected:
                continue
            if own_files_lost(db, version) or lost_ancestor(catalog, db, version):
                lost.append(version)
    return lost


def _source_key(version: DatasetVersion, with_paths: bool) -> list:
    if with_paths:
        return sorted((s["sha256"], s["path"]) for s in version.sources)
    return sorted(s["sha256"] for s in version.sources)


def own_globs(version: DatasetVersion) -> list[str]:
    """Return the globs of the files that contain the version's own rows.

    An ``append`` version with no accepted row has none.
    """
    return [glob for glob in version.files if glob.startswith(f"{version.path}/")]


def own_files_lost(db: duckdb.DuckDBPyConnection, version: DatasetVersion) -> bool:
    """Tell whether the version's own files are missing, unreadable or incomplete.

    The files are incomplete when they contain another count of rows than the
    version accepted, such as a partitioned folder that lost some of its
    partitions. The count is read from the Parquet footers. A folder that
    an erasure rewrote contains fewer rows, so only its files' presence counts.
    """
    globs = own_globs(version)
    if not globs:
        return False
    files = "[" + ", ".join(literal(glob) for glob in globs) + "]"
    try:
        found = db.execute(
            f"SELECT count(*) FROM read_parquet({files}, hive_partitioning=false)"
        ).fetchall()[0][0]
    except (duckdb.IOException, duckdb.InvalidInputException):
        return True
    expected = version.report.get("accepted")
    if REDACTED in version.path.name or expected is None:
        return False
    return int(found) != int(expected)


def recorded_version(
    catalog: Catalog, dataset: str, version: str
) -> DatasetVersion | None:
    """Return a version in the catalog or one that retention removed, or None."""
    found = find_version(catalog, dataset, version)
    if found is not None:
        return found
    return next(
        (v for v in removed_versions(catalog, dataset) if v.version == version), None
    )


def lost_ancestor(
    catalog: Catalog, db: duckdb.DuckDBPyConnection, version: DatasetVersion
) -> DatasetVersion | None:
    """Return the nearest ancestor whose files `version` reads and that are lost."""
    current = version
    while current.mode == "append" and current.parent:
        parent = recorded_version(catalog, current.dataset, current.parent)
        if parent is None:
            return None
        if own_files_lost(db, parent):
            return parent
        current = parent
    return None


def rebuild_version(
    catalog: Catalog,
    version: DatasetVersion,
    sources: list[SourceFile],
    settings: DatasetConfig,
    contract: ContractConfig | None,
    encryption: tuple[ColumnCipher | None, bool] = (None, False),
) -> int:
    """Write the lake files of `version` again from its source files.

    Args:
        version: A version of `find_lost`.
        sources: The ingested files, the same bytes as the version's sources.
        settings: The dataset's configuration.
        contract: The contract the version's ingest checked the files
            against: the declared one, or the one inferred from the
            dataset's first version with rows, or None for that version.
        encryption: The column key's cipher, needed when `settings` declares
            sensitive columns, and whether the files contain them encrypted.

    Returns:
        The count of Parquet files written.

    Raises:
        IngestError: An erasure rewrote the version's folder, the files and
            the current settings hash to another version id, an ancestor's
            files are lost too, or the staged rows differ from the
            recorded ones. Nothing was written.
        StorageError: The folder cannot be written.
    """
    names = source_names(sources)
    _check_not_erased(version, names)
    parent = None
    if version.mode == "append" and version.parent:
        parent = recorded_version(catalog, version.dataset, version.parent)
    _check_parent_recorded(version, parent, names)
    _check_id(version, sources, settings, parent, names)
    with catalog.db.cursor() as db:
        _check_ancestors(catalog, db, version, names)
    if not own_globs(version):
        return 0
    ordered = _in_recorded_order(version, sources)
    work = version.path.with_name(f"{version.path.name}.rebuild.tmp")
    shutil.rmtree(work, ignore_errors=True)
    cipher, ciphertext = encryption
    db = catalog.db.cursor()
    if cipher is not None and settings.sensitive:
        register_functions(db, cipher)
    try:
        make_staging_folder(work)
        written = _write_again(
            db, version, ordered, settings, contract, parent, work, (cipher, ciphertext)
        )
    finally:
        if cipher is not None and settings.sensitive:
            remove_functions(db)
        db.close()
        shutil.rmtree(work, ignore_errors=True)
    logger.info(
        "lake files rebuilt dataset=%s version=%s files=%d",
        version.dataset,
        version.version,
        written,
    )
    return written


def _write_again(
    db: duckdb.DuckDBPyConnection,
    version: DatasetVersion,
    sources: list[SourceFile],
    settings: DatasetConfig,
    contract: ContractConfig | None,
    parent: DatasetVersion | None,
    work: Path,
    encryption: tuple[ColumnCipher | None, bool],
) -> int:
    """Stage and check the files, compare them with `version`, and write them."""
    cipher, ciphertext = encryption
    sensitive = frozenset(settings.sensitive) if cipher else frozenset()
    decrypted = sensitive if cipher and ciphertext else None
    parent_scan = scan_sql(parent) if parent is not None else None
    checked = stage_checked(
        db, sources, settings, contract, work, parent_scan, (sensitive, decrypted)
    )
    _check_same_rows(version, checked, parent, sensitive, source_names(sources))
    accepted = sum(checked.staged.records) - checked.bad
    write_rows(
        db,
        Columns(checked.types, sensitive),
        checked.staged,
        (work, version.path),
        version.partition_by,
        checked.bad,
        accepted,
    )
    # The catalog recorded the version before its files were lost.
    mark_committed(version.path)
    return sum(1 for _ in version.path.rglob("*.parquet"))


def _in_recorded_order(
    version: DatasetVersion, sources: list[SourceFile]
) -> list[SourceFile]:
    """Return `sources` in the order the version's ingest read them.

    The rows are written in the order of their files, so the rebuilt files
    keep the recorded order whatever order the files are given in now.
    """
    position = {s["sha256"]: index for index, s in enumerate(version.sources)}
    return sorted(sources, key=lambda source: position[source.sha256])


def _check_not_erased(version: DatasetVersion, names: str) -> None:
    if REDACTED not in version.path.name:
        return
    raise IngestError(
        f"{names}: dataset {version.dataset!r} version {version.version} has lost "
        f"lake files, but an erasure removed rows from its folder {version.path}, "
        "and rebuilding it from its source files would bring the erased rows "
        "back; nothing was written. Restore that folder from a backup"
    )


def _check_id(
    version: DatasetVersion,
    sources: list[SourceFile],
    settings: DatasetConfig,
    parent: DatasetVersion | None,
    names: str,
) -> None:
    """Check that the files and the current settings hash to the version's id.

    A ``replace`` of the files of an older version also hashes the latest
    version of the time, which is its recorded parent.
    """
    hashes = [s["sha256"] for s in version.sources]
    if sorted(hashes) != sorted(source.sha256 for source in sources):
        raise ValueError(f"{names} are not the sources of version {version.version}")
    fingerprint = id_fingerprint(
        settings.contract, settings.sensitive, settings.max_line_bytes
    )
    computed = version_id(hashes, version.mode, parent, fingerprint)
    if computed == version.version:
        return
    if version.mode == "replace" and version.parent:
        follows = _stand_in(version, version.parent)
        if version_id(hashes, "replace", None, fingerprint, follows) == version.version:
            return
    raise IngestError(
        f"{names}: these files are the sources of dataset {version.dataset!r} "
        f"version {version.version}, whose lake files are lost, but with the "
        f"current settings they hash to version {computed}, because the declared "
        "contract, the sensitive columns or max_line_bytes differ from when the "
        "version was ingested; nothing was written. Declare them as they were and "
        f"ingest the files again, or restore the folder {version.path} from a "
        "backup"
    )


def _stand_in(version: DatasetVersion, other: str) -> DatasetVersion:
    """Return `version` renamed to `other`, for `version_id`, which reads the id."""
    return replace(version, version=other)


def _check_parent_recorded(
    version: DatasetVersion, parent: DatasetVersion | None, names: str
) -> None:
    if version.mode != "append" or not version.parent or parent is not None:
        return
    raise IngestError(
        f"{names}: dataset {version.dataset!r} version {version.version} appends "
        f"to version {version.parent}, which the catalog no longer records, so "
        "its rows cannot be staged again; nothing was written. Restore the "
        f"folder {version.path} from a backup"
    )


def _check_ancestors(
    catalog: Catalog,
    db: duckdb.DuckDBPyConnection,
    version: DatasetVersion,
    names: str,
) -> None:
    """Reject a rebuild of an ``append`` version whose ancestors' files are lost."""
    lost = lost_ancestor(catalog, db, version)
    if lost is None:
        return
    files = ", ".join(s["path"] for s in lost.sources)
    reference = f"dataset {version.dataset!r} version {version.version}"
    raise IngestError(
        f"{names}: {reference} appends to the rows of version {lost.version}, "
        f"whose lake files in {lost.path} are lost too; nothing was written. "
        f"Rebuild version {lost.version} first by ingesting its source files "
        f"({files}) again, or restore its folder from a backup, then ingest these "
        "files again"
    )


def _check_same_rows(
    version: DatasetVersion,
    checked: Checked,
    parent: DatasetVersion | None,
    sensitive: frozenset[str],
    names: str,
) -> None:
    """Reject staged rows whose counts or column types differ from the recorded."""
    staged = checked.staged
    accepted = sum(staged.records) - checked.bad
    quarantined = checked.bad + staged.malformed
    schema = {
        name: "VARCHAR" if name in sensitive else column.type
        for name, column in checked.types.items()
    }
    if parent is not None:
        schema = {**parent.schema, **schema}
    differences = [
        f"{label} {now}, recorded {recorded}"
        for label, now, recorded in (
            ("accepted rows", accepted, version.report.get("accepted", accepted)),
            (
                "quarantined rows",
                quarantined,
                version.report.get("quarantined", quarantined),
            ),
        )
        if now != recorded
    ]
    differences += [
        f"column {name!r} {schema.get(name, 'missing')}, recorded "
        f"{version.schema.get(name, 'missing')}"
        for name in dict.fromkeys([*version.schema, *schema])
        if schema.get(name) != version.schema.get(name)
    ]
    if not differences:
        return
    raise IngestError(
        f"{names}: the rows staged to rebuild the lake files of dataset "
        f"{version.dataset!r} version {version.version} differ from the recorded "
        f"version ({'; '.join(differences)}); nothing was written. Restore the "
        f"folder {version.path} from a backup"
    )
