"""Dataset versions in the catalog: lookup, lineage, reading and diff.

A version is immutable. Its own rows are Parquet files under
``lake/DATASET/version=ID/`` (Hive-partitioned when the dataset declares
``partition_by``); an ``append`` version also reads the files of its parent
chain, so appended rows are stored once. `scan_sql` returns the query that
reads a version with its recorded column order and types. A version lists
the registered models trained on it (`DatasetVersion.used_by`), which
`_retention.apply_retention` keeps.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import duckdb

from appliance.config import dataset_name_problem
from appliance.dbrows import first_row
from appliance.errors import NotFoundError
from appliance.storage._catalog import Catalog
from appliance.storage._gate import unaliased_rejections
from appliance.storage._sql import ident, literal
from appliance.storage._types import FLOAT_TYPES

logger = logging.getLogger(__name__)

Mode = Literal["append", "replace"]

VERSION_COLUMNS = (
    "dataset, version, parent, created_at, row_count, schema_json, sources_json, "
    "path, mode, files_json, partition_by, report_json"
)
"""Columns of ``dataset_versions`` in the order `version_from_row` reads them."""
REDACTED = ".redacted-"
"""Part of the folder name of a version whose rows an erasure rewrote."""
_ROW_NUMBER = "file_row_number"
"""Column that ``read_parquet(..., file_row_number=true)`` adds."""


@dataclass(frozen=True)
class DatasetVersion:
    """One immutable version of a dataset as recorded in the catalog."""

    dataset: str
    version: str
    parent: str | None
    created_at: datetime
    row_count: int
    schema: dict[str, str]
    sources: list[dict[str, str]]
    """Source files with their ``path`` and ``sha256``."""
    path: Path
    """Folder of the version's own Parquet files."""
    mode: Mode = "replace"
    """``replace``: the version holds only its sources' rows; ``append``: its
    parent's rows too."""
    files: list[str] = field(default_factory=list)
    """Parquet globs of every row of the version, the parent chain's included."""
    partition_by: str | None = None
    """Hive partition column of the version's own files."""
    report: dict[str, Any] = field(default_factory=dict)
    """Validation counts, warnings and the data quality report."""
    used_by: list[str] = field(default_factory=list)
    """Registered model versions trained on this version, as ``MODEL vN``.
    Retention keeps the version while any is listed outside `rejected_users`."""
    rejected_users: list[str] = field(default_factory=list)
    """Entries of `used_by` that the retraining gate rejected and that never
    held an alias. Retention does not keep the version for them."""
    redactions: list[dict[str, Any]] = field(default_factory=list)
    """Erasures that removed rows of this version, oldest first: ``erasure_id``,
    ``redacted_at``, ``rows_removed`` and the ``content_sha256`` of its files
    after the erasure. The version keeps its id."""


def latest_version(
    catalog: Catalog, dataset: str, missing_ok: bool = False
) -> DatasetVersion | None:
    """Return the newest version of `dataset`.

    Raises:
        NotFoundError: The dataset has no version and `missing_ok` is false.
    """
    rows = catalog.db.execute(
        f"SELECT {VERSION_COLUMNS} FROM dataset_versions WHERE dataset = ? "
        "ORDER BY created_at DESC LIMIT 1",
        [dataset],
    ).fetchall()
    row = rows[0] if rows else None
    if row is None:
        if missing_ok:
            return None
        # No ingest can create a dataset of an invalid name, so the error gives
        # the name rule rather than an ingest command.
        problem = dataset_name_problem(dataset)
        if problem is not None:
            raise NotFoundError(problem)
        raise NotFoundError(
            f"dataset {dataset!r} has no version; run 'appliance ingest {dataset} "
            "FILE' first"
        )
    return _with_uses(catalog, [version_from_row(row)])[0]


def get_dataset_version(catalog: Catalog, reference: str) -> DatasetVersion:
    """Return the version named by ``DATASET`` (latest) or ``DATASET@VERSION``.

    A version may be given by a unique prefix of its id.

    Raises:
        NotFoundError: No such dataset or version.
    """
    dataset, at, version = reference.partition("@")
    if not dataset:
        # Raises the error for the empty name, which `list_versions` below
        # would read as every dataset.
        latest_version(catalog, dataset)
    if at and not version:
        raise NotFoundError(
            f"{reference!r} names no version after '@'; give {dataset}@VERSION, "
            f"or {dataset} for the latest version"
        )
    if not version:
        found = latest_version(catalog, dataset)
        assert found is not None
        return found
    rows = catalog.db.execute(
        f"SELECT {VERSION_COLUMNS} FROM dataset_versions WHERE dataset = ? "
        "AND starts_with(version, ?)",
        [dataset, version],
    ).fetchall()
    if len(rows) != 1:
        versions = list_versions(catalog, dataset)
        if not versions:
            # Raises the error for a dataset without versions.
            latest_version(catalog, dataset)
        known = ", ".join(v.version for v in versions)
        problem = "matches several versions" if rows else "is not a version"
        removed = None if rows else _removed_at(catalog, dataset, version)
        if removed is not None:
            raise NotFoundError(
                f"version {removed[0]} of dataset {dataset!r} was removed by the "
                f"retention rule ([datasets.{dataset}] keep_versions) at "
                f"{removed[1].isoformat()}; versions: {known}"
            )
        raise NotFoundError(
            f"{version!r} {problem} of dataset {dataset!r}; versions: {known}"
        )
    return _with_uses(catalog, [version_from_row(rows[0])])[0]


def _removed_at(catalog: Catalog, dataset: str, prefix: str) -> tuple | None:
    """Return the id and removal time of the one removed version `prefix` names."""
    try:
        rows = catalog.db.execute(
            "SELECT version, removed_at FROM removed_versions WHERE dataset = ? "
            "AND starts_with(version, ?)",
            [dataset, prefix],
        ).fetchall()
    except duckdb.CatalogException:
        # A catalog written before removed versions were recorded, read-only.
        return None
    return rows[0] if len(rows) == 1 else None


def list_versions(
    catalog: Catalog, dataset: str | None = None, sources: Sequence[str] = ()
) -> list[DatasetVersion]:
    """Return the versions of every dataset, or of one, newest first.

    Args:
        sources: When given, only versions whose source files include
            files of each of these SHA-256 hashes, and maybe others.
    """
    where, params = ("WHERE dataset = ?", [dataset]) if dataset else ("WHERE true", [])
    conditions, hashes = sources_filter(sources)
    rows = catalog.db.execute(
        f"SELECT {VERSION_COLUMNS} FROM dataset_versions {where}{conditions} "
        "ORDER BY dataset, created_at DESC",
        [*params, *hashes],
    ).fetchall()
    return _with_uses(catalog, [version_from_row(row) for row in rows])


def sources_filter(hashes: Sequence[str]) -> tuple[str, list[str]]:
    """Return SQL conditions that keep versions with a source of each of `hashes`,
    and their parameters.

    They test the ``sources_json`` text, so a version found still needs its
    parsed sources checked. Filtering in SQL spares parsing every version's
    file list, which grows with an append chain.
    """
    conditions = "".join(" AND contains(sources_json, ?)" for _ in hashes)
    return conditions, [json.dumps(sha256) for sha256 in hashes]


def read_by_kept(catalog: Catalog, dataset: str, folder: Path) -> bool:
    """Tell whether a version of `dataset` in the catalog reads files of `folder`."""
    prefix = json.dumps(f"{folder}/")[:-1]
    row = first_row(
        catalog.db.execute(
            "SELECT count(*) FROM dataset_versions WHERE dataset = ? "
            "AND contains(files_json, ?)",
            [dataset, prefix],
        )
    )
    return row is not None and row[0] > 0


def find_version(catalog: Catalog, dataset: str, version: str) -> DatasetVersion | None:
    """Return version `version` of `dataset`, or None."""
    rows = catalog.db.execute(
        f"SELECT {VERSION_COLUMNS} FROM dataset_versions WHERE dataset = ? "
        "AND version = ?",
        [dataset, version],
    ).fetchall()
    return _with_uses(catalog, [version_from_row(rows[0])])[0] if rows else None


def find_by_sources(
    catalog: Catalog,
    dataset: str,
    hashes: list[str],
    paths: list[str] | None = None,
    accept: Callable[[DatasetVersion], bool] | None = None,
) -> DatasetVersion | None:
    """Return a version of `dataset` built from exactly the files of `hashes`.

    Args:
        paths: When given, the version must also have read the files from
            these paths, in the order of `hashes`.
        accept: When given, the version must also pass this test.
    """
    if paths is None:
        wanted = sorted(hashes)
        for version in list_versions(catalog, dataset, hashes):
            if sorted(s["sha256"] for s in version.sources) == wanted and (
                accept is None or accept(version)
            ):
                return version
        return None
    pairs = sorted(zip(hashes, paths))
    for version in list_versions(catalog, dataset, hashes):
        if sorted((s["sha256"], s["path"]) for s in version.sources) == pairs and (
            accept is None or accept(version)
        ):
            return version
    return None


def record_version(catalog: Catalog, version: DatasetVersion) -> None:
    """Insert `version` into the catalog."""
    catalog.db.execute(
        f"INSERT INTO dataset_versions ({VERSION_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            version.dataset,
            version.version,
            version.parent,
            version.created_at,
            version.row_count,
            json.dumps(version.schema),
            json.dumps(version.sources),
            str(version.path),
            version.mode,
            json.dumps(version.files),
            version.partition_by,
            json.dumps(version.report, default=str),
        ],
    )


def lost_files_message(version: DatasetVersion) -> str:
    """Return the error text for a version whose Parquet files are gone.

    An ingest of the version's source files writes its folder again, except
    for a folder that an erasure rewrote (`_rebuild`).
    """
    lost = (
        f"dataset {version.dataset!r} version {version.version} has no readable "
        f"files in {version.path}"
    )
    return f"{lost}; {_restore_text(version)}"


def incomplete_files_message(
    db: duckdb.DuckDBPyConnection, version: DatasetVersion
) -> str | None:
    """Return the error text when the version's files contain another count of
    rows than it recorded.

    The row counts come from the Parquet footers, so no row is read. A lost
    partition folder or file leaves fewer rows than ``row_count``, which
    an erasure keeps up to date. Missing or unreadable files give the text
    of `lost_files_message`.

    Returns:
        None when the files contain exactly the recorded count of rows.
    """
    files = "[" + ", ".join(literal(glob) for glob in version.files) + "]"
    try:
        found, count = db.execute(
            f"SELECT coalesce(sum(num_rows), 0), count(*) "
            f"FROM parquet_file_metadata({files})"
        ).fetchall()[0]
    except (duckdb.IOException, duckdb.InvalidInputException):
        return lost_files_message(version)
    if int(found) == version.row_count:
        return None
    folders = sorted({glob.split("/*")[0] for glob in version.files})
    return (
        f"dataset {version.dataset!r} version {version.version} recorded "
        f"{version.row_count} rows, but its {count} files in {', '.join(folders)} "
        f"contain {found}, so a partition folder or file is missing; "
        f"{_restore_text(version)}"
    )


def _restore_text(version: DatasetVersion) -> str:
    """Return how to get the lost files of `version` back."""
    if REDACTED in version.path.name:
        return "restore that folder from a backup"
    if not version.sources and "compacted" in version.report:
        # A compaction copied its parent's rows and read no source file.
        return (
            "restore that folder from a backup; the version is a compaction of "
            f"{version.dataset}@{version.parent}, whose folders retention may "
            "have deleted"
        )
    files = ", ".join(source["path"] for source in version.sources)
    return (
        f"ingest its source files ({files}) again, which rebuilds the folder, or "
        "restore that folder from a backup"
    )


def scan_sql(version: DatasetVersion) -> str:
    """Return a SELECT that reads every row of `version` in its recorded schema.

    The lake is Hive-partitioned, so the folder names ``version=ID`` and, when
    partitioned, ``COLUMN=VALUE`` become columns on read; the SELECT keeps only
    the recorded columns, in order, cast to their recorded types. A NaN in a
    FLOAT or DOUBLE column reads as NULL, because NaN is a missing value and
    versions written before the ingest stored it as NULL still contain NaN.
    """
    return f"SELECT {_scan_columns(version)} FROM {parquet_sql(version)}"


def sample_sql(version: DatasetVersion, every: int) -> str | None:
    """Return a SELECT of about one row in `every` of `version`, read as `scan_sql`.

    A row is taken when a hash of its position in its file is a multiple of
    `every`, so a version always gives the same sample. Rows that repeat
    with a period in the file, such as one row per hour, are therefore not
    taken or left out together. None when a column is named ``file_row_number``,
    which DuckDB's reader uses for the position.
    """
    if _ROW_NUMBER in version.schema:
        return None
    return (
        f"SELECT {_scan_columns(version)} FROM {parquet_sql(version, True)} "
        f"WHERE hash({_ROW_NUMBER}) % {int(every)} = 0"
    )


def value_sample_sql(version: DatasetVersion, every: int) -> str:
    """Return a SELECT of about one row in `every` of `version`, read as `scan_sql`.

    A row is taken when a hash of its values is a multiple of `every`. So
    the sample does not depend on the order of the rows in the files. In
    Hive-partitioned files that is the order DuckDB's threads wrote them in.
    Equal rows are taken or left out together.
    """
    values = ", ".join(ident(name) for name in version.schema)
    return (
        f"SELECT * FROM ({scan_sql(version)}) WHERE hash({values}) % {int(every)} = 0"
    )


def has_partitioned_files(version: DatasetVersion) -> bool:
    """Tell whether any of the files `version` reads are Hive-partitioned."""
    return any(glob.endswith("/*/*.parquet") for glob in version.files)


def _scan_columns(version: DatasetVersion) -> str:
    return ", ".join(
        f"{_read_sql(name, kind)} AS {ident(name)}"
        for name, kind in version.schema.items()
    )


def parquet_sql(version: DatasetVersion, row_numbers: bool = False) -> str:
    """Return the ``read_parquet`` call over the files of `version`, as stored.

    Its columns keep the types of the files, and a NaN stays NaN. It also has
    the ``version`` column of the folder names, and with `row_numbers` the
    ``file_row_number`` column, each row's position in its file from 0.
    `scan_sql` reads it in the recorded schema.
    """
    files = "[" + ", ".join(literal(glob) for glob in version.files) + "]"
    partitions = {
        name: kind
        for name, kind in version.schema.items()
        if name == version.partition_by
    }
    hive_types = ""
    if partitions:
        pairs = ", ".join(f"{literal(n)}: {literal(k)}" for n, k in partitions.items())
        hive_types = f", hive_types={{{pairs}}}"
    numbered = ", file_row_number=true" if row_numbers else ""
    return (
        f"read_parquet({files}, hive_partitioning=true, union_by_name=true"
        f"{hive_types}{numbered})"
    )


def diff_versions(a: DatasetVersion, b: DatasetVersion) -> dict[str, Any]:
    """Compare two versions: schema changes, row counts and column statistics."""
    added = [n for n in b.schema if n not in a.schema]
    removed = [n for n in a.schema if n not in b.schema]
    retyped = {
        n: [a.schema[n], b.schema[n]]
        for n in a.schema
        if n in b.schema and a.schema[n] != b.schema[n]
    }
    stats_a = a.report.get("quality", {}).get("columns", {})
    stats_b = b.report.get("quality", {}).get("columns", {})
    moved = {}
    for name in a.schema:
        if name not in b.schema:
            continue
        changes = _stat_changes(stats_a.get(name, {}), stats_b.get(name, {}))
        if changes:
            moved[name] = changes
    return {
        "a": f"{a.dataset}@{a.version}",
        "b": f"{b.dataset}@{b.version}",
        "rows": [a.row_count, b.row_count],
        "added_columns": added,
        "removed_columns": removed,
        "retyped_columns": retyped,
        "statistics": moved,
    }


def _stat_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    changes = {}
    keys = ("null_rate", "null_sources", "distinct", "min", "max", "outliers_iqr")
    for key in keys:
        if old.get(key) != new.get(key):
            changes[key] = [old.get(key), new.get(key)]
    old_q, new_q = old.get("quantiles") or {}, new.get("quantiles") or {}
    if old_q.get("p50") != new_q.get("p50"):
        changes["median"] = [old_q.get("p50"), new_q.get("p50")]
    return changes


def _with_uses(
    catalog: Catalog, versions: list[DatasetVersion]
) -> list[DatasetVersion]:
    """Return `versions` with `DatasetVersion.used_by` filled in."""
    if not versions:
        return versions
    rows = catalog.db.execute(
        "SELECT r.dataset, r.dataset_version, r.feature_views_json, m.model, "
        "m.version FROM model_versions m JOIN runs r ON r.run_id = m.run_id "
        "ORDER BY m.model, m.version"
    ).fetchall()
    uses: dict[tuple[str, str], list[str]] = {}
    rejected: dict[tuple[str, str], list[str]] = {}
    unaliased = unaliased_rejections(catalog)
    for dataset, version, views_json, model, number in rows:
        # A model with feature views records the version of each dataset its
        # views read, so those are kept too. Runs recorded before that rule
        # named every dataset of the catalog, and keep them all.
        read = set(json.loads(views_json or "{}").items())
        read.add((dataset, version))
        for pair in sorted(read, key=str):
            uses.setdefault(pair, []).append(f"{model} v{number}")
            if (model, number) in unaliased:
                rejected.setdefault(pair, []).append(f"{model} v{number}")
    redactions = _redactions(catalog, {v.dataset for v in versions})
    return [
        replace(
            v,
            used_by=uses.get((v.dataset, v.version), []),
            rejected_users=rejected.get((v.dataset, v.version), []),
            redactions=redactions.get((v.dataset, v.version), []),
        )
        for v in versions
    ]


def _redactions(
    catalog: Catalog, datasets: set[str]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Return the recorded redactions of the datasets' versions."""
    try:
        rows = catalog.db.execute(
            "SELECT dataset, version, erasure_id, redacted_at, rows_removed, "
            "content_sha256 FROM dataset_redactions WHERE list_contains(?, dataset) "
            "ORDER BY redacted_at",
            [sorted(datasets)],
        ).fetchall()
    except duckdb.CatalogException:
        # A catalog written before erasures existed, opened read-only.
        return {}
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for dataset, version, erasure, at, count, digest in rows:
        found.setdefault((dataset, version), []).append(
            {
                "erasure_id": erasure,
                "redacted_at": at.isoformat(),
                "rows_removed": count,
                "content_sha256": digest,
            }
        )
    return found


def version_from_row(row: tuple[Any, ...]) -> DatasetVersion:
    (
        dataset,
        version,
        parent,
        created,
        count,
        schema,
        sources,
        path,
        mode,
        files,
        partition_by,
        report,
    ) = row
    return DatasetVersion(
        dataset=dataset,
        version=version,
        parent=parent,
        created_at=created,
        row_count=count,
        schema=json.loads(schema),
        sources=json.loads(sources),
        path=Path(path),
        mode=mode or "replace",
        # Versions written before files were recorded are one Parquet file.
        files=json.loads(files) if files else [path],
        partition_by=partition_by,
        report=json.loads(report) if report else {},
    )


def _read_sql(name: str, kind: str) -> str:
    value = f"CAST({ident(name)} AS {kind})"
    if kind.upper() not in FLOAT_TYPES:
        return value
    return f"CASE WHEN isnan({value}) THEN NULL ELSE {value} END"
