"""Erasure from the Parquet lake: every version of a dataset, rewritten.

A version's own rows are in one folder, ``lake/DATASET/version=ID/``, and an
``append`` version also reads its parent chain's folders. Each folder that
contains a matching row is copied to a new folder with the rows left out (files
without a match are hard-linked), named ``version=ID.redacted-HASH`` after the
new content. One catalog transaction then points every version of the
dataset at the new folders and records the redactions, so a reader sees
either the old or the new rows of the whole dataset. The old folders are
deleted after the commit.

A crash before the commit leaves the old state and a ``.tmp`` folder; a
crash after it leaves the new state and the old folder. The daemon's start
and the next command-line ingest delete both (`remove_orphan_folders`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from appliance.erasure._subject import Subject, check_values, typed_sql
from appliance.errors import StorageError
from appliance.storage import Catalog, DatasetVersion, fsync_path, list_versions
from appliance.storage._datasets import parquet_sql, sample_sql, scan_sql
from appliance.storage._null_sources import add_to_quality, null_counts
from appliance.storage._quality import quality_report
from appliance.storage._sql import ident, literal

logger = logging.getLogger(__name__)

_PATTERNS = ("/*/*.parquet", "/*.parquet")
"""Endings of a version's file glob: partitioned, or one folder of files."""
_REDACTED = ".redacted-"
_PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd"
_NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
"""Folder name value that DuckDB 2.0.1 writes and reads as a NULL partition."""


@dataclass
class Folder:
    """One version folder of the lake that some version of the dataset reads."""

    path: str
    pattern: str
    """The glob's end after the folder, ``/*.parquet`` or ``/*/*.parquet``."""
    owner: DatasetVersion
    """The version whose own rows the folder holds, or the newest that reads it
    when retention removed that version."""
    matched: int = 0
    new_path: str | None = None
    sha256: str | None = None

    @property
    def glob(self) -> str:
        """The file glob of the folder, as versions record it."""
        return self.path + self.pattern

    @property
    def version(self) -> str:
        """Version id of the folder, from its name."""
        name = Path(self.path).name.removeprefix("version=")
        return name.split(_REDACTED)[0]


@dataclass
class LakeErasure:
    """Folders of a dataset with the count of matching rows in each."""

    versions: list[DatasetVersion]
    folders: list[Folder] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Matching rows by version id of the folder that contains them."""
        return {f.version: f.matched for f in self.folders}

    @property
    def latest_rows(self) -> int:
        """Matching rows that the newest version reads, each row once.

        The folders of one version contain disjoint rows, while a compacted
        version's folder contains copies of the rows of its append chain.
        """
        read = set(self.versions[0].files) if self.versions else set()
        return sum(f.matched for f in self.folders if f.glob in read)


def plan_lake(catalog: Catalog, subject: Subject) -> LakeErasure:
    """Count the subject's rows in every folder that a version of the dataset reads.

    Raises:
        NotFoundError: The dataset has no version.
        RequestError: A key column is in no version of the dataset, or a value
            does not read as the column's type.
    """
    versions = list_versions(catalog, subject.dataset)
    if not versions:
        from appliance.storage import latest_version

        latest_version(catalog, subject.dataset)
    schema: dict[str, str] = {}
    for version in reversed(versions):
        schema.update(version.schema)
    check_values(catalog.db, subject, schema)
    plan = LakeErasure(versions, _folders(versions))
    for folder in plan.folders:
        if all(name in folder.owner.schema for name in subject.columns):
            folder.matched = _count(catalog.db, folder, subject)
    return plan


def apply_lake(
    catalog: Catalog,
    plan: LakeErasure,
    subject: Subject,
    erasure_id: str,
    after_commit: Callable[[], None] | None = None,
) -> list[DatasetVersion]:
    """Rewrite the folders with matching rows and switch the versions to them.

    Args:
        after_commit: Called once the versions read the new folders and
            before the old ones are deleted, such as to read the daemon's
            feature views again.

    Returns:
        The versions whose rows changed, as recorded after the erasure.

    Raises:
        StorageError: A folder cannot be written or the catalog cannot be
            updated; the versions keep their old rows.
    """
    changed = [f for f in plan.folders if f.matched]
    if not changed:
        return []
    try:
        for folder in changed:
            _rewrite_folder(catalog.db, folder, subject)
        updated = _updated_versions(catalog, plan, changed, subject)
        _record(catalog, updated, changed, erasure_id, subject)
    except (duckdb.Error, OSError) as exc:
        for folder in changed:
            shutil.rmtree(_work_path(folder), ignore_errors=True)
            if folder.new_path:
                shutil.rmtree(folder.new_path, ignore_errors=True)
        raise StorageError(
            f"erasure from dataset {subject.dataset!r} failed: "
            f"{subject.redact(str(exc))}; the versions keep their rows, check "
            "the free disk space and retry"
        ) from None
    if after_commit is not None:
        after_commit()
    _remove_old(changed, subject)
    return updated


def _remove_old(changed: list[Folder], subject: Subject) -> None:
    """Delete the folders that no version reads since the commit.

    NOTE: a query that listed the old files before the commit and reads
    them after this, such as a request joined on the feature views the
    daemon read before `after_commit` replaced them, fails.
    """
    for folder in changed:
        shutil.rmtree(folder.path, ignore_errors=True)
        logger.info(
            "version folder redacted dataset=%s version=%s rows=%d folder=%s",
            subject.dataset,
            folder.version,
            folder.matched,
            folder.new_path,
        )


def _folders(versions: list[DatasetVersion]) -> list[Folder]:
    """Return each folder the versions read, with the version owning its rows."""
    folders: dict[str, Folder] = {}
    # Oldest first, so that a folder's own version, which lists it first,
    # is its owner, and otherwise the newest version that reads it.
    for version in reversed(versions):
        for glob in version.files:
            pattern = next((p for p in _PATTERNS if glob.endswith(p)), None)
            if pattern is None:
                continue
            path = glob.removesuffix(pattern)
            found = folders.get(path)
            if found is None or str(found.owner.path) != path:
                folders[path] = Folder(path, pattern, version)
    return list(folders.values())


def _read(folder: Folder, glob: str) -> str:
    return parquet_sql(replace(folder.owner, files=[glob]))


def _count(db: duckdb.DuckDBPyConnection, folder: Folder, subject: Subject) -> int:
    where = typed_sql(subject, folder.owner.schema)
    sql = f"SELECT count(*) FROM {_read(folder, folder.glob)} WHERE {where}"
    return int(db.execute(sql).fetchall()[0][0])


def _rewrite_folder(
    db: duckdb.DuckDBPyConnection, folder: Folder, subject: Subject
) -> None:
    """Write the folder's rows without the subject's into a new folder.

    A partition that loses every row is left out, because its folder name
    is a value of the partition column, which may be the subject's key.
    """
    old = Path(folder.path)
    base = old.name.split(_REDACTED)[0]
    work = _work_path(folder)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    where = typed_sql(subject, folder.owner.schema)
    partitioned = folder.pattern == _PATTERNS[0]
    columns = ""
    for file in sorted(old.glob(folder.pattern.removeprefix("/"))):
        columns = _file_columns(db, file)
        target = work / file.relative_to(old)
        _write_file(db, folder, file, target, where, columns, partitioned)
    if partitioned and not any(work.glob("*/*.parquet")):
        # A version's glob must match a file, so an empty file is written.
        empty = work / f"{folder.owner.partition_by}={_NULL_PARTITION}"
        empty.mkdir(parents=True)
        db.execute(
            f"COPY (SELECT {columns} FROM {_read(folder, folder.glob)} LIMIT 0) "
            f"TO {literal(str(empty / 'data_0.parquet'))} ({_PARQUET_OPTIONS})"
        ).fetchall()
    folder.sha256 = _tree_sha256(work)
    _sync_tree(work)
    final = old.with_name(f"{base}{_REDACTED}{folder.sha256[:16]}")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(work, final)
    fsync_path(old.parent)
    folder.new_path = str(final)


def _work_path(folder: Folder) -> Path:
    """Return the staging folder of the rewrite, deleted as an orphan after a
    crash because its name ends in ``.tmp``."""
    old = Path(folder.path)
    return old.with_name(f"{old.name.split(_REDACTED)[0]}.erase.tmp")


def _write_file(
    db: duckdb.DuckDBPyConnection,
    folder: Folder,
    file: Path,
    target: Path,
    where: str,
    columns: str,
    partitioned: bool,
) -> None:
    """Copy `file` to `target` without matching rows; hard-link it without any.

    A partition file left with no row is not written.
    """
    read = _read(folder, str(file))
    (matched, total) = db.execute(
        f"SELECT count(*) FILTER ({where}), count(*) FROM {read}"
    ).fetchall()[0]
    if partitioned and matched == total:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if not matched:
        try:
            os.link(file, target)
        except OSError:
            shutil.copy2(file, target)
        return
    # IS NOT TRUE keeps the rows where a key column is NULL.
    db.execute(
        f"COPY (SELECT {columns} FROM {read} WHERE ({where}) IS NOT TRUE) "
        f"TO {literal(str(target))} ({_PARQUET_OPTIONS})"
    ).fetchall()


def _file_columns(db: duckdb.DuckDBPyConnection, file: Path) -> str:
    """Return the quoted column list stored in `file`, without Hive columns."""
    rows = db.execute(
        f"DESCRIBE SELECT * FROM read_parquet({literal(str(file))}, "
        "hive_partitioning=false)"
    ).fetchall()
    return ", ".join(ident(row[0]) for row in rows)


def _tree_sha256(folder: Path) -> str:
    """Return the SHA-256 of the relative paths and contents of the files."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder)}\0{_file_sha256(path)}\n".encode())
    return digest.hexdigest()


def _updated_versions(
    catalog: Catalog, plan: LakeErasure, changed: list[Folder], subject: Subject
) -> list[DatasetVersion]:
    """Return the versions that read a changed folder, pointed at the new ones,
    with row counts and quality reports of their remaining rows."""
    moved = {f.path + "/": f.new_path + "/" for f in changed if f.new_path}
    removed = {f.path: f.matched for f in changed}
    updated = []
    for version in plan.versions:
        files = [_moved(glob, moved) for glob in version.files]
        if files == version.files:
            continue
        removed_rows = sum(
            removed.get(glob.removesuffix(p), 0)
            for glob in version.files
            for p in _PATTERNS
            if glob.endswith(p)
        )
        own = removed.get(str(version.path), 0)
        path = Path(moved.get(str(version.path) + "/", str(version.path) + "/"))
        new = replace(
            version, files=files, path=path, row_count=version.row_count - removed_rows
        )
        report = dict(version.report)
        if "accepted" in report:
            report["accepted"] = int(report["accepted"]) - own
        report["warnings"] = _scrubbed(report.get("warnings", []), subject)
        report["quality"] = quality_report(
            catalog.db,
            f"({scan_sql(new)})",
            new.schema,
            parquet_sql(new),
            functools.partial(sample_sql, new),
            new.row_count,
        )
        # NOTE: The null counts describe the source files, so they still
        # count the values of the erased rows.
        add_to_quality(report["quality"], null_counts(version.report), None)
        updated.append(replace(new, report=report))
    return updated


def _moved(glob: str, moved: dict[str, str]) -> str:
    for old, new in moved.items():
        if glob.startswith(old):
            return new + glob[len(old) :]
    return glob


def _scrubbed(warnings: list[str], subject: Subject) -> list[str]:
    """Return the warnings with each quoted key value replaced by ``<erased>``.

    Ingest warnings quote a value with ``repr``, such as the first value of a
    column that is not a number.
    """
    cleaned = []
    for warning in warnings:
        for _, value in subject.keys:
            warning = warning.replace(repr(value), "<erased>")
        cleaned.append(warning)
    return cleaned


def _record(
    catalog: Catalog,
    versions: list[DatasetVersion],
    changed: list[Folder],
    erasure_id: str,
    subject: Subject,
) -> None:
    """Point the versions at the new folders and record the redactions, at once."""
    now = datetime.now(timezone.utc)
    db = catalog.db
    with catalog.transaction():
        for version in versions:
            db.execute(
                "UPDATE dataset_versions SET path = ?, files_json = ?, row_count = ?, "
                "report_json = ? WHERE dataset = ? AND version = ?",
                [
                    str(version.path),
                    json.dumps(version.files),
                    version.row_count,
                    json.dumps(version.report, default=str),
                    version.dataset,
                    version.version,
                ],
            )
        for folder in changed:
            db.execute(
                "INSERT INTO dataset_redactions VALUES (?, ?, ?, ?, ?, ?)",
                [
                    folder.owner.dataset,
                    folder.version,
                    erasure_id,
                    now,
                    folder.matched,
                    folder.sha256,
                ],
            )
        _scrub_removed(db, subject, erasure_id)


def _scrub_removed(
    db: duckdb.DuckDBPyConnection, subject: Subject, erasure_id: str
) -> None:
    """Drop the quality statistics of removed versions that show a key value.

    Retention deleted those versions' files, so the statistics cannot be
    computed again without the subject's rows. A minimum or maximum of a
    text column can be the value itself.
    """
    rows = db.execute(
        "SELECT version, report_json FROM removed_versions WHERE dataset = ?",
        [subject.dataset],
    ).fetchall()
    quoted = [json.dumps(value) for _, value in subject.keys]
    for version, text in rows:
        if not text or not any(value in text for value in quoted):
            continue
        report = json.loads(text)
        report["quality"] = {"removed_by_erasure": erasure_id}
        report["warnings"] = _scrubbed(report.get("warnings", []), subject)
        db.execute(
            "UPDATE removed_versions SET report_json = ? WHERE dataset = ? "
            "AND version = ?",
            [json.dumps(report, default=str), subject.dataset, version],
        )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sync_tree(folder: Path) -> None:
    """Fsync every file and folder under `folder`, so the rename publishes
    complete files after a power loss too."""
    for path in sorted(folder.rglob("*"), reverse=True):
        fsync_path(path)
    fsync_path(folder)
