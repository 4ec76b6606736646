"""Ingest: files validated against the dataset's contract into a new version.

The steps: check and hash each file; stage its rows with an in-memory DuckDB
(a CSV file whose values all parse as the sniffed types goes straight to a
Parquet file, any other CSV file is read as text so every value is converted
by rules this module controls); infer types over every row; check the
contract; write the rows that keep it to the lake as zstd Parquet (the staged
Parquet file itself when nothing needs converting or dropping) and the rows
that break it to the quarantine table with their file, line, column and
reason; record the version with its lineage and quality report; apply the
retention rule.

A version id is a hash of the source files' hashes (and, in ``append`` mode,
of the parent version, and when one is declared, of the contract), so
ingesting the same bytes under the same contract again finds the existing
version and writes nothing. `_unchanged.find_existing` finds such a version,
and `_unchanged.check_unchanged` decides whether it may stand for the ingest.
When a version of the same files has lost its lake files, the ingest writes
them again instead (`_rebuild`) and stores no new version. An ingest holds
the dataset's writer lock (`_writer_lock`) throughout, so a second ingest of
the same files in the process waits and then finds the first one's version.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from appliance.access import record
from appliance.config import (
    ColumnRule,
    ContractConfig,
    DatasetConfig,
    FeatureViewConfig,
    dataset_name_problem,
)
from appliance.crypto import ColumnCipher
from appliance.dbrows import first_row
from appliance.errors import IngestError, StorageError
from appliance.storage._catalog import Catalog
from appliance.storage._compressed import DecompressedFiles
from appliance.storage._contracts import (
    StoredRule,
    retyped_columns,
    schema_changes,
)
from appliance.storage._datasets import (
    DatasetVersion,
    Mode,
    find_version,
    has_partitioned_files,
    latest_version,
    parquet_sql,
    read_by_kept,
    record_version,
    sample_sql,
    scan_sql,
    value_sample_sql,
)
from appliance.storage._encrypted import (
    check_cipher,
    check_same_columns,
    encrypt_quarantine,
    encrypted_columns,
    encryption_report,
    register_functions,
    remove_functions,
)
from appliance.storage._errors import short_error
from appliance.storage._lake_write import (
    Columns,
    accepted_sql,
    make_staging_folder,
    mark_committed,
    write_rows,
)
from appliance.storage._null_sources import NullCounts, add_to_quality
from appliance.storage._pending_quality import pending_quality as pending_report
from appliance.storage._quality import quality_report
from appliance.storage._quarantine import violation_place
from appliance.storage._rebuild import find_lost, rebuild_version
from appliance.storage._retention import (
    apply_retention,
    find_removed_sources,
    forget_removed,
    removed_notes,
)
from appliance.storage._sources import (
    READERS,
    Dialect,
    InputFile,
    SourceFile,
    check_distinct,
    open_source,
    sniff_dialect,
)
from appliance.storage._staging import (
    Staged,
    quarantine_rows,
    source_names,
    stage_checked,
)
from appliance.storage._steps import timed_step
from appliance.storage._types import (
    ColumnType,
)
from appliance.storage._unchanged import (
    REPORT_KEY,
    check_unchanged,
    contract_fingerprint,
    find_existing,
)
from appliance.storage._view_keys import check_dropped_keys, check_first_keys
from appliance.storage._view_reads import find_unread_rows, views_reading
from appliance.storage._writer_lock import dataset_writer

logger = logging.getLogger(__name__)

_SHOWN_VIOLATIONS = 5


@dataclass(frozen=True)
class IngestResult:
    """Outcome of one ingest."""

    version: DatasetVersion
    created: bool
    """False when the same bytes were ingested before and nothing was written."""
    accepted: int = 0
    """Rows written to the version from the sources."""
    quarantined: int = 0
    """Rows that broke the contract, stored in the quarantine table."""
    warnings: list[str] = field(default_factory=list)
    """Schema changes and columns left as text, such as ambiguous dates."""
    removed: list[str] = field(default_factory=list)
    """Old versions deleted by the retention rule."""
    notes: list[str] = field(default_factory=list)
    """Facts about the ingest that are no problem with the files, such as
    files stored again after retention removed the version that contained them."""
    stored_in: str | None = None
    """When nothing was written because an ancestor of the latest version
    stored the files, that ancestor's id; `version` is then the latest."""
    rebuilt: dict[str, int] = field(default_factory=dict)
    """Versions of the same files whose lost lake files the ingest wrote again,
    with the count of Parquet files written; `version` is then the first."""


def ingest(
    catalog: Catalog,
    dataset: str,
    paths: list[Path],
    mode: Mode = "replace",
    settings: DatasetConfig | None = None,
    strict: bool = False,
    views: Sequence[FeatureViewConfig] = (),
    force: bool = False,
    *,
    same_paths: bool = False,
    cipher: ColumnCipher | None = None,
    ciphertext_sources: bool = False,
    pending_quality: bool = False,
) -> IngestResult:
    """Load files into a new version of `dataset`, or find the existing one.

    Args:
        catalog: Open catalog.
        dataset: Dataset name.
        paths: CSV, Parquet or JSON-lines files, all of one format. A CSV or
            JSON-lines file may be compressed with gzip (``.csv.gz``), or
            with zstd (``.jsonl.zst``) on Python 3.14 and later.
        mode: ``replace`` makes a version of these files only; ``append`` adds
            their rows to the latest version's.
        settings: The dataset's configuration; defaults when None.
        strict: Reject the whole ingest when any row breaks the contract or
            the schema changed, instead of quarantining rows.
        views: The configured feature views, to check that the files have
            the columns their entity keys and timestamps are read from.
        force: Ingest even when the files lack such a column, or have none
            of the dataset's columns (a warning).
        same_paths: In ``append`` mode, take an earlier version of the same
            bytes as this ingest only when it also read them from the same
            paths. The ingest buffer sets it, because two of its segments
            with equal bytes are two batches of rows.
        cipher: The column key's cipher; needed when `settings` declares
            sensitive columns, whose values are then stored encrypted.
        ciphertext_sources: The files hold the sensitive columns encrypted
            already, as the ingest buffer's segments do; they are decrypted
            in memory to be checked against the contract.
        pending_quality: An ``append`` version gets a pending quality report
            (`_pending_quality`), whose cost does not grow with the parent's
            rows, as the ingest buffer's flushes do. Otherwise the report
            covers every row of the version.

    Raises:
        IngestError: A file is missing, empty, unreadable, of an unknown format,
            breaks the contract while `strict` is set, or, without `force`,
            lacks a column that a feature view's key is read from or has none
            of the dataset's columns. Or the files are the sources of a
            version with lost lake files that cannot be rebuilt from them
            (`rebuild_version`).
        StorageError: The lake or the catalog cannot be written; nothing was
            stored.
        ColumnKeyError: Sensitive columns are declared and `cipher` is None
            or has another key than the stored versions.
    """
    args = (catalog, dataset, paths, mode, settings, strict, views, force)
    details: dict[str, Any] = {"mode": mode, "files": [str(p) for p in paths]}
    try:
        with (
            dataset_writer(catalog, dataset),
            DecompressedFiles(catalog.home) as copies,
        ):
            result = _ingest(
                *args,
                same_paths,
                cipher,
                ciphertext_sources,
                copies,
                pending_quality=pending_quality,
            )
    except (IngestError, StorageError) as exc:
        details["error"] = str(exc)
        record(catalog, "dataset.ingest", dataset, details, "failed")
        raise
    details.update(
        version=result.version.version,
        created=result.created,
        accepted=result.accepted,
        quarantined=result.quarantined,
    )
    if result.rebuilt:
        details["rebuilt"] = result.rebuilt
    record(catalog, "dataset.ingest", dataset, details)
    return result


def _ingest(
    catalog: Catalog,
    dataset: str,
    paths: list[Path],
    mode: Mode,
    settings: DatasetConfig | None,
    strict: bool,
    views: Sequence[FeatureViewConfig],
    force: bool,
    same_paths: bool,
    cipher: ColumnCipher | None,
    ciphertext_sources: bool,
    copies: DecompressedFiles,
    *,
    pending_quality: bool,
) -> IngestResult:
    _check_name(dataset)
    settings = settings or DatasetConfig(name=dataset)
    if settings.name != dataset:
        raise ValueError(
            f"settings of dataset {settings.name!r} passed to an ingest of {dataset!r}"
        )
    if not paths:
        raise IngestError("no input files given; name at least one file")
    check_cipher(catalog, settings, cipher)
    with timed_step(dataset, "hash"):
        sources = _open_sources(catalog, paths, settings, copies)
    if len({source.reader for source in sources}) > 1:
        raise IngestError(
            f"{source_names(sources)}: input files mix formats; ingest CSV, "
            "Parquet and JSON-lines files in separate commands"
        )
    hashes = [source.sha256 for source in sources]
    check_distinct(sources)
    parent = latest_version(catalog, dataset, missing_ok=True)
    if parent is None:
        _check_case(catalog, dataset)
        mode = "replace"
    resolved = [str(s.path.resolve()) for s in sources] if same_paths else None
    lost = find_lost(catalog, dataset, hashes, resolved) if parent else []
    if lost:
        encryption = (cipher, ciphertext_sources)
        return _rebuild(catalog, lost, sources, settings, encryption)
    version_id, existing = find_existing(
        catalog,
        dataset,
        hashes,
        mode,
        parent,
        settings.contract,
        resolved,
        settings.sensitive,
        settings.max_line_bytes,
    )
    if existing is not None and encrypted_columns(existing) != sorted(
        settings.sensitive
    ):
        # The same files stored under another sensitive setting.
        existing = None
    if existing is not None:
        return _unchanged_result(
            catalog, existing, parent, sources, settings, strict, same_paths
        )

    if mode == "append" and parent is not None:
        check_same_columns(parent, settings)
    contract = settings.contract or stored_contract(catalog, dataset)
    if mode == "append" and parent is not None:
        contract = _with_parent_types(contract, parent, settings)
    work = catalog.lake / settings.name / f"version={version_id}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    make_staging_folder(work)
    files = [(str(source.path), source.sha256) for source in sources]
    # Read before the ingest records a version that recreates a removed one.
    stored_again = find_removed_sources(catalog, dataset, files)
    # A cursor has its own temporary tables and views, and opening one takes
    # 0.1 ms against 12 ms for a new in-memory database (DuckDB 2.0.1).
    db = catalog.db.cursor()
    encryption = None
    if cipher is not None and settings.sensitive:
        encryption = _Encryption(cipher, ciphertext_sources)
        register_functions(db, cipher)
    try:
        result = _ingest_new(
            catalog,
            db,
            settings,
            sources,
            (version_id, work),
            mode,
            parent,
            contract,
            _Checks(strict, tuple(views), force),
            encryption,
            pending_quality=pending_quality,
        )
    finally:
        if encryption is not None:
            remove_functions(db)
        db.close()
        shutil.rmtree(work, ignore_errors=True)
    return replace(result, notes=removed_notes(dataset, version_id, stored_again))


def _with_parent_types(
    contract: ContractConfig | None, parent: DatasetVersion, settings: DatasetConfig
) -> ContractConfig | None:
    """Return `contract` with the parent's type of each column it does not name.

    An appended version reads its parent's rows in the new rows' types, so
    another type would cast the parent's values, such as a DOUBLE column to
    text or text that is no date to DATE. The new rows are converted to the
    parent's type instead, and a value that does not convert is quarantined.
    Three kinds of column keep the new rows' type. Sensitive columns are
    stored as ciphertext. A column without a value in the parent has no type
    to keep. When `date_formats` are set, a DATE or TIMESTAMP column is left
    out too, because the version does not record which format its text had.
    """
    if contract is None:
        return None
    stats = parent.report.get("quality", {}).get("columns", {})
    added = {
        name: ColumnRule(type=kind)
        for name, kind in parent.schema.items()
        if name not in contract.columns
        and name not in settings.sensitive
        and stats.get(name, {}).get("null_rate") != 1
        and not (settings.date_formats and kind.startswith(("DATE", "TIMESTAMP")))
    }
    if not added:
        return contract
    return replace(contract, columns={**contract.columns, **added})


def _open_sources(
    catalog: Catalog,
    paths: list[Path],
    settings: DatasetConfig,
    copies: DecompressedFiles,
) -> list[SourceFile]:
    """Check and hash `paths`, and sniff the dialect of CSV files meanwhile.

    Hashing and the sniff each use one core, so a worker thread hashes while
    this thread sniffs the files until the hashes are done. When an existing
    version has the same bytes, the dialects go unused. Staging sniffs a file
    that was not sniffed here or whose sniff failed, and so raises that
    sniff's error at the same step as before. A compressed file has no text
    to sniff until it is decompressed into `copies` while it is hashed, so
    staging sniffs it.
    """
    if not all(READERS.get(path.suffix.lower()) == "read_csv" for path in paths):
        return [
            open_source(path, settings.name, settings.encoding, copies)
            for path in paths
        ]
    with ThreadPoolExecutor(1, thread_name_prefix="ingest-hash") as pool:
        opened = pool.submit(
            lambda: [
                open_source(path, settings.name, settings.encoding) for path in paths
            ]
        )
        dialects = _sniff_ahead(catalog, paths, settings, opened)
        sources = opened.result()
    return [
        replace(source, dialect=dialect) for source, dialect in zip(sources, dialects)
    ]


def _sniff_ahead(
    catalog: Catalog, paths: list[Path], settings: DatasetConfig, hashing: Future
) -> list[Dialect | None]:
    """Sniff the CSV files in order until `hashing` is done.

    Returns:
        The dialect of each file; None where the sniff failed or did not run.
    """
    dialects: list[Dialect | None] = [None] * len(paths)
    with catalog.db.cursor() as db:
        for index, path in enumerate(paths):
            if hashing.done():
                break
            try:
                dialects[index] = sniff_dialect(
                    db,
                    InputFile(path, path),
                    settings.delimiter,
                    settings.encoding,
                    settings.name,
                    settings.max_line_bytes,
                )
            except (IngestError, OSError):
                continue
    return dialects


def _unchanged_result(
    catalog: Catalog,
    existing: DatasetVersion,
    latest: DatasetVersion | None,
    sources: list[SourceFile],
    settings: DatasetConfig,
    strict: bool,
    same_paths: bool,
) -> IngestResult:
    """Return the result of an ingest of files that `existing` stored already.

    When `existing` is an ancestor of the latest version, the result names
    the latest version, whose rows include the files', so that the ingest
    does not read as a return to the ancestor. The ingest buffer's segments
    (`same_paths`) keep their own version, which a later flush may follow.
    """
    checked = (
        []
        if same_paths
        else check_unchanged(catalog, existing, sources, settings, strict)
    )
    if same_paths or latest is None or existing.version == latest.version:
        logger.info(
            "ingest unchanged dataset=%s version=%s", settings.name, existing.version
        )
        return IngestResult(existing, created=False, warnings=checked)
    logger.info(
        "ingest unchanged, files stored by an ancestor dataset=%s version=%s "
        "stored_in=%s",
        settings.name,
        latest.version,
        existing.version,
    )
    notes = []
    if find_version(catalog, settings.name, existing.version) is None:
        notes.append(
            f"{settings.name}@{existing.version} was removed by the retention rule, "
            "and the latest version still reads its rows"
        )
    return IngestResult(
        latest,
        created=False,
        warnings=checked,
        notes=notes,
        stored_in=existing.version,
    )


@dataclass(frozen=True)
class _Encryption:
    """The cipher of an ingest's sensitive columns, registered on its cursor."""

    cipher: ColumnCipher
    ciphertext_sources: bool
    """The source files hold the sensitive columns encrypted."""


@dataclass(frozen=True)
class _Checks:
    """Checks an ingest applies beyond the contract."""

    strict: bool
    views: tuple[FeatureViewConfig, ...]
    force: bool


def _check_partition_column(settings: DatasetConfig, staged: Staged) -> None:
    """Raise `IngestError` when the files lack the ``partition_by`` column.

    A contract need not list every column, so the columns are known only
    here, and `load_config` does not check the name. A column that the
    contract adds to the staged rows, as missing, does not count: its rows
    would all go to the partition of missing values.
    """
    name = settings.partition_by
    columns = [n for n in staged.source_types if n not in staged.missing]
    if name is None or name in columns:
        return
    raise IngestError(
        f"partition_by {name!r} of dataset {settings.name!r} is not a column of "
        f"the files; their columns: {', '.join(columns)}. Add the column to the "
        f"files, or correct [datasets.{settings.name}] partition_by in the "
        "configuration file"
    )


def _ingest_new(
    catalog: Catalog,
    db: duckdb.DuckDBPyConnection,
    settings: DatasetConfig,
    sources: list[SourceFile],
    new_version: tuple[str, Path],
    mode: Mode,
    parent: DatasetVersion | None,
    contract: ContractConfig | None,
    checks: _Checks,
    encryption: _Encryption | None = None,
    *,
    pending_quality: bool = False,
) -> IngestResult:
    """Stage, check and write a new version.

    Args:
        new_version: The new version's id and its staging folder, which the
            caller removes afterwards.
        encryption: The cipher of the sensitive columns, None without them.
        pending_quality: The argument of `ingest`.
    """
    dataset = settings.name
    version_id, work = new_version
    target = catalog.lake / dataset / f"version={version_id}"
    parent_scan = scan_sql(parent) if parent and mode == "append" else None
    sensitive = frozenset(settings.sensitive) if encryption else frozenset()
    decrypted = sensitive if encryption and encryption.ciphertext_sources else None
    # NOTE: The typed path stages a CSV file as plaintext Parquet in `work`,
    # sensitive columns included, until the caller removes the folder.
    with timed_step(dataset, "stage"):
        checked = stage_checked(
            db,
            sources,
            settings,
            contract,
            work,
            parent_scan,
            (sensitive, decrypted),
            tuple(parent.schema) if parent else (),
        )
    staged, types, bad = checked.staged, checked.types, checked.bad
    _check_partition_column(settings, staged)
    warnings = list(staged.inference.warnings)
    if contract is not None:
        inferred = {
            name: None if name in staged.inference.empty else t.type
            for name, t in staged.inference.types.items()
        }
        known = None
        if settings.contract is not None or parent is not None:
            # A contract need not name every column, declared or taken from a
            # first version without a later column, so a column is new only
            # when the previous version lacks it too.
            known = {*contract.columns, *(parent.schema if parent else inferred)}
        warnings += schema_changes(contract, inferred, known)
        if parent is not None:
            reference = f"{dataset}@{parent.version}"
            public_types = {n: t for n, t in inferred.items() if n not in sensitive}
            warnings += retyped_columns(
                contract, (reference, parent.schema), public_types, dataset
            )
    if contract is not None and contract.columns:
        warnings += _check_shared_columns(
            sources, dataset, list(contract.columns), staged.missing, checks.force
        )
    unread_by: list[str] = []
    if checks.views:
        warnings += _check_view_keys(
            db, dataset, staged, (contract, parent), mode, checks
        )
        bad, view_warnings, unread_by = _check_view_reads(
            (catalog, db),
            dataset,
            Columns(types, sensitive),
            (staged, bad),
            (parent, mode == "append"),
            checks,
        )
        warnings += view_warnings

    total = sum(staged.records)
    accepted, quarantined = total - bad, bad + staged.malformed
    quarantine = None
    if quarantined:
        with timed_step(dataset, "quarantine"):
            quarantine = quarantine_rows(db, sources, staged, settings.encoding)
            if encryption is not None:
                quarantine = encrypt_quarantine(
                    quarantine, sensitive, encryption.cipher
                )
    if checks.strict and (quarantined or warnings):
        raise IngestError(
            _strict_message(
                dataset,
                quarantined,
                total + staged.malformed,
                warnings,
                quarantine,
                unread_by,
            )
        )
    if accepted == 0 and mode == "replace" and parent and parent.row_count:
        warnings += _check_emptying(sources, parent, quarantined, quarantine, checks)

    partition = settings.partition_by
    with timed_step(dataset, "write"):
        partitioned = write_rows(
            db,
            Columns(types, sensitive),
            staged,
            (work, target),
            partition,
            bad,
            accepted,
        )
    try:
        version = _record_new(
            catalog,
            db,
            _Written(
                version_id,
                target,
                partitioned,
                accepted,
                quarantined,
                _staged_sample(Columns(types, sensitive), staged, bad)
                if partitioned
                else None,
                staged.null_counts,
            ),
            settings,
            sources,
            (mode, parent if parent_scan else None, parent),
            types,
            warnings,
            quarantine,
            (contract, encryption.cipher if encryption else None),
            pending_quality=pending_quality,
        )
    except BaseException:
        _remove_unrecorded(catalog, dataset, version_id, target)
        raise
    mark_committed(target)
    removed = []
    if settings.keep_versions:
        removed = apply_retention(catalog, dataset, settings.keep_versions)
    logger.info(
        "ingest done dataset=%s version=%s mode=%s accepted=%d quarantined=%d files=%d",
        dataset,
        version_id,
        mode,
        accepted,
        quarantined,
        len(sources),
    )
    return IngestResult(version, True, accepted, quarantined, warnings, removed)


def _remove_unrecorded(
    catalog: Catalog, dataset: str, version_id: str, target: Path
) -> None:
    """Delete the folder of a version that failed to record, unless it is read.

    A version that retention removed keeps its folder while an ``append``
    version reads its files, and an ingest that recreates the removed
    version writes the same rows to that folder again. The folder is also
    kept when the catalog query fails. The orphan cleanup deletes a kept
    folder later if no version reads it.
    """
    try:
        in_use = find_version(catalog, dataset, version_id) is not None
        in_use = in_use or read_by_kept(catalog, dataset, target)
    except duckdb.Error as exc:
        logger.warning(
            "ingest failed after writing rows, folder kept because the catalog "
            "cannot tell whether a version reads it dataset=%s version=%s "
            "folder=%s error=%s",
            dataset,
            version_id,
            target,
            short_error(exc),
        )
        return
    if in_use:
        mark_committed(target)
        logger.warning(
            "ingest failed after writing rows, folder kept because a recorded "
            "version reads it dataset=%s version=%s folder=%s",
            dataset,
            version_id,
            target,
        )
        return
    # The catalog is as it was: remove the rows no version points to.
    shutil.rmtree(target, ignore_errors=True)
    logger.warning(
        "ingest failed after writing rows, folder removed dataset=%s "
        "version=%s folder=%s",
        dataset,
        version_id,
        target,
    )


def _check_view_keys(
    db: duckdb.DuckDBPyConnection,
    dataset: str,
    staged: Staged,
    known: tuple[ContractConfig | None, DatasetVersion | None],
    mode: Mode,
    checks: _Checks,
) -> list[str]:
    """Reject files that lack a column the feature views read a key from.

    Such a column is dropped when the contract or the latest version has it,
    also when a declared contract leaves it out. A first version checks the
    key columns that are surely the dataset's (`check_first_keys`).

    Args:
        known: The contract and the latest version, whose columns the files
            should keep.

    Returns:
        Warnings when `checks.force` is set.
    """
    contract, parent = known
    files = [name for name in staged.source_types if name not in staged.missing]
    columns = [
        *(contract.columns if contract else ()),
        *(parent.schema if parent else ()),
    ]
    dropped = list(dict.fromkeys(name for name in columns if name not in files))
    warnings = []
    if dropped:
        warnings += check_dropped_keys(
            db, dataset, dropped, checks.views, checks.force, mode
        )
    if parent is None:
        warnings += check_first_keys(
            db, dataset, [*files, *dropped], checks.views, checks.force
        )
    return warnings


def _check_view_reads(
    connections: tuple[Catalog, duckdb.DuckDBPyConnection],
    dataset: str,
    columns: Columns,
    checked: tuple[Staged, int],
    latest: tuple[DatasetVersion | None, bool],
    checks: _Checks,
) -> tuple[int, list[str], list[str]]:
    """Add the rows a feature view cannot read to the ``violations`` table.

    Args:
        connections: The catalog and the ingest's cursor, with the staged rows.
        checked: The staged rows and the count of rows that break the contract.
        latest: The dataset's latest version and whether the ingest appends.

    Returns:
        The count of rows that break the contract or a view, warnings, and
        the names of the views that fail on some rows.

    Raises:
        IngestError: As `find_unread_rows` raises.
    """
    catalog, db = connections
    staged, bad = checked
    readers = views_reading(db, dataset, checks.views)
    if not readers or sum(staged.records) == bad:
        return bad, [], []
    with timed_step(dataset, "view check"):
        new_rows = db.sql(accepted_sql(columns, staged, bad, row_ids=True))
        reads = find_unread_rows(
            catalog, dataset, new_rows.to_arrow_table(), latest, readers, checks.force
        )
    for row in reads.unread:
        # A sensitive value is ciphertext here, which the quarantine would
        # encrypt again, so only the reason names the row's fault.
        stored_value = None if row.column in columns.sensitive else row.value
        db.execute(
            "INSERT INTO violations (_file, _record, column_name, value, reason) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                row.file,
                row.record,
                row.column,
                stored_value,
                f"feature view {row.view!r} cannot read this row: {row.reason}",
            ],
        )
    if not reads.unread:
        return bad, reads.warnings, []
    counted = db.execute(
        "SELECT count(*) FROM (SELECT DISTINCT _file, _record FROM violations)"
    ).fetchall()
    views = list(dict.fromkeys(repr(row.view) for row in reads.unread))
    return counted[0][0], reads.warnings, views


@dataclass(frozen=True)
class _Written:
    """A new version's rows in the lake, not yet recorded in the catalog."""

    version_id: str
    target: Path
    partitioned: bool
    accepted: int
    quarantined: int
    sample: Callable[[int], str] | None = None
    """Returns a query of about one accepted row in every N, given N, for
    the quality report of a partitioned write. When None, the report takes
    its sample from the lake's files (`sample_sql`)."""
    null_counts: NullCounts = field(default_factory=dict)
    """Per column, the count of each source form read as missing."""


def _check_shared_columns(
    sources: list[SourceFile],
    dataset: str,
    columns: list[str],
    missing: list[str],
    force: bool,
) -> list[str]:
    """Reject files that have none of the contract's `columns`, unless `force`.

    Such files are most likely meant for another dataset: taken as they are,
    every row would be missing every known column.

    Returns:
        A warning when the files share no column and `force` is set.

    Raises:
        IngestError: The files share no column and `force` is not set.
    """
    if len(missing) < len(columns):
        return []
    shown = ", ".join(repr(name) for name in columns[:8])
    more = f" and {len(columns) - 8} more" if len(columns) > 8 else ""
    problem = (
        f"{source_names(sources)} has none of the columns of dataset "
        f"{dataset!r} ({shown}{more})"
    )
    if not force:
        raise IngestError(
            f"{problem}; check the dataset name and the file, or ingest with "
            "--force to store it anyway"
        )
    return [f"{problem}; stored because of --force"]


def _record_new(
    catalog: Catalog,
    db: duckdb.DuckDBPyConnection,
    written: _Written,
    settings: DatasetConfig,
    sources: list[SourceFile],
    lineage: tuple[Mode, DatasetVersion | None, DatasetVersion | None],
    types: dict[str, ColumnType],
    warnings: list[str],
    quarantine: Any,
    rules: tuple[ContractConfig | None, ColumnCipher | None],
    *,
    pending_quality: bool = False,
) -> DatasetVersion:
    """Compute the quality report and record the version in one transaction.

    Args:
        lineage: The mode, the parent whose rows the version also reads
            (appended), and the latest version (its parent in the lineage).
        rules: The contract, and the cipher of the sensitive columns, which
            are stored as text.
        pending_quality: The argument of `ingest`; it applies to appended
            versions only.

    Raises:
        StorageError: The catalog cannot be written; nothing was recorded.
    """
    mode, appended, parent = lineage
    contract, cipher = rules
    dataset, target = settings.name, written.target
    own_glob = str(target) + ("/*/*.parquet" if written.partitioned else "/*.parquet")
    schema = {
        name: "VARCHAR" if cipher and name in settings.sensitive else column.type
        for name, column in types.items()
    }
    own_schema = schema
    if appended is not None and written.accepted:
        schema = {**appended.schema, **schema}
    elif appended is not None:
        # The version reads only the parent's files (`_version_files`), so a
        # column that the quarantined rows added has no values to read.
        schema = dict(appended.schema)
    version = DatasetVersion(
        dataset=dataset,
        version=written.version_id,
        parent=parent.version if parent else None,
        created_at=datetime.now(timezone.utc),
        row_count=written.accepted + (appended.row_count if appended else 0),
        schema=schema,
        sources=[{"path": str(s.path.resolve()), "sha256": s.sha256} for s in sources],
        path=target,
        mode=mode,
        files=_version_files(appended, own_glob, written.accepted),
        partition_by=settings.partition_by if written.partitioned else None,
    )
    own_files = replace(version, files=[own_glob], schema=own_schema)
    with timed_step(dataset, "report"):
        if pending_quality and appended is not None:
            own = own_files if written.accepted else None
            quality = pending_report(
                db, own, appended, catalog, schema, version.row_count
            )
        else:
            quality = _full_quality(db, version, appended, written, own_files)
    add_to_quality(
        quality,
        written.null_counts,
        appended.report.get("quality") if appended else None,
    )
    report = {
        "accepted": written.accepted,
        "quarantined": written.quarantined,
        "warnings": warnings,
        "quality": quality,
        REPORT_KEY: contract_fingerprint(settings.contract),
        **encryption_report(settings, cipher),
    }
    version = replace(version, report=report)
    try:
        with catalog.transaction():
            forget_removed(catalog, dataset, written.version_id)
            record_version(catalog, version)
            if quarantine is not None:
                _store_quarantine(catalog, dataset, written.version_id, quarantine)
            if contract is None and written.accepted > 0:
                _store_contract(catalog, dataset, written.version_id, types)
    except duckdb.Error as exc:
        raise StorageError(
            f"cannot record version {written.version_id} of dataset {dataset!r} in "
            f"the catalog {catalog.path}: {short_error(exc)}; nothing was stored, "
            "check that the catalog is writable and ingest the files again"
        ) from exc
    return version


def _full_quality(
    db: duckdb.DuckDBPyConnection,
    version: DatasetVersion,
    appended: DatasetVersion | None,
    written: _Written,
    own_files: DatasetVersion,
) -> dict[str, Any]:
    """Compute the quality report over every row of the new `version`."""
    sample, basis = _version_sample(version, appended, written, own_files)
    return quality_report(
        db,
        f"({scan_sql(version)})",
        version.schema,
        parquet_sql(version),
        sample,
        version.row_count,
        # Without an appended parent, every file is this ingest's, and it
        # stores NaN as NULL.
        stored_nan=appended is not None,
        sample_basis=basis,
    )


def _rebuild(
    catalog: Catalog,
    lost: list[DatasetVersion],
    sources: list[SourceFile],
    settings: DatasetConfig,
    encryption: tuple[ColumnCipher | None, bool],
) -> IngestResult:
    """Write the lake files of the `lost` versions of `sources` again.

    The ingest then stores no new version, so that a second ingest of the
    files does what it would do had the files not been lost.
    """
    rebuilt = {}
    for version in lost:
        contract = _contract_of(catalog, version, settings)
        rebuilt[version.version] = rebuild_version(
            catalog, version, sources, settings, contract, encryption
        )
    return IngestResult(lost[0], created=False, rebuilt=rebuilt)


def _contract_of(
    catalog: Catalog, version: DatasetVersion, settings: DatasetConfig
) -> ContractConfig | None:
    """Return the contract that the ingest of `version` checked its files against.

    Without a declared contract, an ingest checks the files against the one
    inferred from the dataset's first version with rows (`stored_contract`),
    and that version and the ones before it against none.
    """
    if settings.contract is not None:
        return settings.contract
    row = first_row(
        catalog.db.execute(
            "SELECT from_version FROM dataset_contracts WHERE dataset = ?",
            [version.dataset],
        )
    )
    if row is None or row[0] == version.version:
        return None
    inferred_from = find_version(catalog, version.dataset, row[0])
    if inferred_from is not None and inferred_from.created_at > version.created_at:
        return None
    return stored_contract(catalog, version.dataset)


def stored_contract(catalog: Catalog, dataset: str) -> ContractConfig | None:
    """Return the contract inferred from the dataset's first version, if any."""
    rows = catalog.db.execute(
        "SELECT schema_json FROM dataset_contracts WHERE dataset = ?", [dataset]
    ).fetchall()
    if not rows:
        return None
    columns = json.loads(rows[0][0])
    return ContractConfig(
        columns={
            name: StoredRule(
                type=spec["type"],
                date_format=spec.get("date_format"),
                more_formats=tuple(spec.get("more_formats", ())),
            )
            for name, spec in columns.items()
        }
    )


def _store_contract(
    catalog: Catalog, dataset: str, version: str, types: dict[str, ColumnType]
) -> None:
    columns = {
        name: {"type": t.type, "date_format": t.date_format}
        | ({"more_formats": list(t.more_formats)} if t.more_formats else {})
        for name, t in types.items()
    }
    catalog.db.execute(
        "INSERT OR IGNORE INTO dataset_contracts VALUES (?, ?, ?)",
        [dataset, version, json.dumps(columns)],
    )


def _version_files(
    parent: DatasetVersion | None, own_glob: str, accepted: int
) -> list[str]:
    """Return the file globs a new version reads: the appended parent's and its own.

    An append with no accepted row adds no file, because its empty file is
    not Hive-partitioned and one read over it and a partitioned parent fails.
    """
    if parent is None:
        return [own_glob]
    if accepted == 0:
        return list(parent.files)
    return [*parent.files, own_glob]


def _store_quarantine(catalog: Catalog, dataset: str, version: str, rows: Any) -> None:
    catalog.db.register("quarantine_rows", rows)
    try:
        catalog.db.execute(
            "INSERT INTO quarantine (dataset, version, source, line, column_name, "
            "value, reason, quarantined_at, row_json) SELECT ?, ?, source, line, "
            "column_name, value, reason, ?, row_json FROM quarantine_rows",
            [dataset, version, datetime.now(timezone.utc)],
        )
    finally:
        catalog.db.unregister("quarantine_rows")


def _check_emptying(
    sources: list[SourceFile],
    parent: DatasetVersion,
    quarantined: int,
    quarantine: Any,
    checks: _Checks,
) -> list[str]:
    """Reject a replace that would leave a dataset with no rows, unless `force`.

    Views and training read the latest version, so a header-only file, or
    one whose every row breaks the contract, would empty them.

    Returns:
        A warning when `force` is set.

    Raises:
        IngestError: `force` is not set.
    """
    problem = f"{source_names(sources)} has no row to store"
    if quarantined:
        problem += f": all {quarantined} rows break the contract"
        problem += "".join(f"; {text}" for text in _shown_violations(quarantine))
    problem += (
        f"; as a replace it would empty dataset {parent.dataset!r} "
        f"(version {parent.version} has {parent.row_count} "
        f"row{'s' if parent.row_count != 1 else ''})"
    )
    if not checks.force:
        raise IngestError(
            f"{problem}; fix the file, or ingest with --force to store an empty version"
        )
    return [f"{problem}; stored because of --force"]


def _shown_violations(quarantine: Any) -> list[str]:
    """Return the first quarantined rows as ``PLACE: REASON`` texts."""
    return [
        f"{violation_place(row['source'], row['line'], row['column_name'])}: "
        f"{row['reason']}"
        for row in quarantine.slice(0, _SHOWN_VIOLATIONS).to_pylist()
    ]


def _strict_message(
    dataset: str,
    bad: int,
    total: int,
    warnings: list[str],
    quarantine: Any,
    views: Sequence[str] = (),
) -> str:
    """Return the error of a strict ingest; `views` fail on some of its rows."""
    parts = [f"strict ingest of {dataset!r} rejected"]
    if bad:
        parts.append(
            f"{bad} of {total} rows break the contract"
            + (f" or feature view {', '.join(views)}" if views else "")
        )
        parts += _shown_violations(quarantine)
    parts += warnings
    # Without a quarantined row, an ingest without --strict stores every row.
    after = "to quarantine" if bad else "to store the rows with these warnings"
    return "; ".join(parts) + f"; fix the file or ingest without --strict {after}"


def _staged_sample(columns: Columns, staged: Staged, bad: int) -> Callable[[int], str]:
    """Return the query builder of a sample of the accepted rows by source position.

    DuckDB writes partitioned files in the order its threads finish, so a
    sample by a row's position in the lake's files, as `sample_sql` takes,
    differs between two ingests of the same bytes. A row's position in its
    source file does not. The query reads the ingest's staged rows, so it
    runs on the ingest's cursor while those exist.
    """

    def sample(every: int) -> str:
        chosen = f"hash(_file, _record) % {int(every)} = 0"
        return accepted_sql(columns, staged, bad, chosen)

    return sample


def _version_sample(
    version: DatasetVersion,
    appended: DatasetVersion | None,
    written: _Written,
    own_files: DatasetVersion,
) -> tuple[Callable[[int], str | None], str]:
    """Return the query builder of the quality report's sample of `version`,
    and what it hashes to choose a row.

    A partitioned write samples its rows by source position (`_staged_sample`).
    An appended parent with Hive-partitioned files is sampled by a hash of
    each row's values (`value_sample_sql`), so that two ingests of the same
    bytes give the same report, whatever order DuckDB's threads wrote the
    parent's files in. Other rows are sampled by their position in the
    lake's files (`sample_sql`).

    Args:
        own_files: `version` restricted to the files and columns that this
            ingest wrote.
    """
    if appended is not None and has_partitioned_files(appended):
        own: Callable[[int], str | None] | None = written.sample
        if own is None and written.accepted:
            own = functools.partial(sample_sql, own_files)
        parent = functools.partial(value_sample_sql, appended)
        basis = "the row's position, or of its values for the appended parent's rows"
        return functools.partial(_with_parent_sample, own, parent), basis
    position = "the row's position"
    if written.sample is None:
        return functools.partial(sample_sql, version), position
    parent_sample = None
    if appended is not None:
        parent_sample = functools.partial(sample_sql, appended)
    sample = functools.partial(_with_parent_sample, written.sample, parent_sample)
    return sample, position


def _with_parent_sample(
    own: Callable[[int], str | None] | None,
    parent: Callable[[int], str | None] | None,
    every: int,
) -> str | None:
    """Return the `own` sample, with the appended parent's rows sampled too.

    None when either sample cannot be taken. A missing `own` or `parent`
    stands for no rows.
    """
    samples = [sample(every) for sample in (own, parent) if sample is not None]
    if None in samples:
        return None
    return " UNION ALL BY NAME ".join(f"SELECT * FROM ({query})" for query in samples)


def _check_name(dataset: str) -> None:
    problem = dataset_name_problem(dataset)
    if problem is not None:
        raise IngestError(problem)


def _check_case(catalog: Catalog, dataset: str) -> None:
    """Reject a new dataset whose name differs from another's only in case.

    SQL over datasets, such as a feature view's, names each dataset as a
    DuckDB view, and DuckDB matches names regardless of case.
    """
    other = first_row(
        catalog.db.execute(
            "SELECT dataset FROM dataset_versions WHERE lower(dataset) = lower(?) "
            "AND dataset <> ? LIMIT 1",
            [dataset, dataset],
        )
    )
    if other is not None:
        raise IngestError(
            f"dataset name {dataset!r} differs from the existing dataset "
            f"{other[0]!r} only in case, and SQL over datasets does not tell "
            f"them apart; ingest into {other[0]!r} or choose another name"
        )
