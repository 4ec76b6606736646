"""Dataset versions: files ingested into the Parquet lake, named by content.

A version id is a hash of the bytes of its source files, so ingesting the same
files again finds the existing version and writes nothing. Each version is one
Parquet file under ``lake/DATASET/version=ID/`` and a row in the catalog.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from appliance.errors import IngestError, NotFoundError
from appliance.storage._catalog import Catalog

logger = logging.getLogger(__name__)

_READERS = {
    ".csv": "read_csv",
    ".tsv": "read_csv",
    ".txt": "read_csv",
    ".parquet": "read_parquet",
    ".pq": "read_parquet",
    ".jsonl": "read_json",
    ".ndjson": "read_json",
    ".json": "read_json",
}
_HASH_CHUNK = 1 << 20


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
    path: Path


@dataclass(frozen=True)
class IngestResult:
    """Outcome of one ingest."""

    version: DatasetVersion
    created: bool
    """False when the same bytes were ingested before and nothing was written."""


def ingest(catalog: Catalog, dataset: str, paths: list[Path]) -> IngestResult:
    """Load files into a new version of `dataset`, or find the existing one.

    Raises:
        IngestError: A file is missing, empty, unreadable or of an unknown format.
    """
    _check_name(dataset)
    if not paths:
        raise IngestError("no input files given; name at least one file")
    readers = [_reader_for(path) for path in paths]
    if len(set(readers)) > 1:
        raise IngestError(
            f"{_names(paths)}: input files mix formats; ingest CSV, Parquet and "
            "JSON-lines files in separate commands"
        )
    hashes = [_hash_file(path) for path in paths]
    version_id = _version_id(hashes)

    existing = _find(catalog, dataset, version_id)
    if existing is not None:
        logger.info("ingest unchanged dataset=%s version=%s", dataset, version_id)
        return IngestResult(existing, created=False)

    target = catalog.lake / dataset / f"version={version_id}"
    row_count, schema = _write_parquet(catalog, readers[0], paths, target)
    parent = latest_version(catalog, dataset, missing_ok=True)
    version = DatasetVersion(
        dataset=dataset,
        version=version_id,
        parent=parent.version if parent else None,
        created_at=datetime.now(timezone.utc),
        row_count=row_count,
        schema=schema,
        sources=[
            {"path": str(path.resolve()), "sha256": digest}
            for path, digest in zip(paths, hashes)
        ],
        path=target / "data.parquet",
    )
    catalog.db.execute(
        "INSERT INTO dataset_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            version.dataset,
            version.version,
            version.parent,
            version.created_at,
            version.row_count,
            json.dumps(version.schema),
            json.dumps(version.sources),
            str(version.path),
        ],
    )
    logger.info(
        "ingest done dataset=%s version=%s rows=%d files=%d",
        dataset,
        version_id,
        row_count,
        len(paths),
    )
    return IngestResult(version, created=True)


def latest_version(
    catalog: Catalog, dataset: str, missing_ok: bool = False
) -> DatasetVersion | None:
    """Return the newest version of `dataset`.

    Raises:
        NotFoundError: The dataset has no version and `missing_ok` is false.
    """
    row = catalog.db.execute(
        "SELECT * FROM dataset_versions WHERE dataset = ? "
        "ORDER BY created_at DESC LIMIT 1",
        [dataset],
    ).fetchone()
    if row is None:
        if missing_ok:
            return None
        raise NotFoundError(
            f"dataset {dataset!r} has no version; run 'appliance ingest {dataset} "
            "FILE' first"
        )
    return _from_row(row)


def list_versions(catalog: Catalog) -> list[DatasetVersion]:
    """Return every dataset version, newest first."""
    rows = catalog.db.execute(
        "SELECT * FROM dataset_versions ORDER BY dataset, created_at DESC"
    ).fetchall()
    return [_from_row(row) for row in rows]


def _find(catalog: Catalog, dataset: str, version: str) -> DatasetVersion | None:
    row = catalog.db.execute(
        "SELECT * FROM dataset_versions WHERE dataset = ? AND version = ?",
        [dataset, version],
    ).fetchone()
    return _from_row(row) if row else None


def _from_row(row: tuple) -> DatasetVersion:
    dataset, version, parent, created, count, schema, sources, path = row
    return DatasetVersion(
        dataset,
        version,
        parent,
        created,
        count,
        json.loads(schema),
        json.loads(sources),
        Path(path),
    )


def _check_name(dataset: str) -> None:
    if not dataset or not all(c.isalnum() or c in "_-" for c in dataset):
        raise IngestError(
            f"invalid dataset name {dataset!r}; use letters, digits, '_' and '-'"
        )


def _reader_for(path: Path) -> str:
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        known = ", ".join(sorted(_READERS))
        raise IngestError(
            f"{path}: unsupported format {path.suffix or '(no extension)'!r}; "
            f"use a file ending in one of {known}"
        )
    if not path.exists():
        raise IngestError(f"{path}: file not found")
    if not path.is_file():
        raise IngestError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise IngestError(f"{path}: file is empty (0 bytes); nothing to ingest")
    return reader


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise IngestError(f"{path}: cannot read file: {exc.strerror}") from exc
    return digest.hexdigest()


def _version_id(hashes: list[str]) -> str:
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:16]


def _source_sql(reader: str, paths: list[Path]) -> str:
    files = "[" + ", ".join(_quote(str(path)) for path in paths) + "]"
    if reader == "read_csv":
        # sample_size=-1 reads every row before choosing column types, so a
        # column that turns to text after many numeric rows is typed correctly.
        return f"read_csv({files}, sample_size=-1, union_by_name=true)"
    if reader == "read_json":
        return f"read_json({files}, format='newline_delimited', sample_size=-1)"
    return f"read_parquet({files}, union_by_name=true)"


def _write_parquet(
    catalog: Catalog, reader: str, paths: list[Path], target: Path
) -> tuple[int, dict[str, str]]:
    """Copy the files into ``target/data.parquet`` through a temporary folder."""
    source = _source_sql(reader, paths)
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        schema = _describe(catalog, source, paths)
        out = staging / "data.parquet"
        catalog.db.execute(
            f"COPY (SELECT * FROM {source}) TO {_quote(str(out))} "
            "(FORMAT parquet, COMPRESSION zstd)"
        )
        row_count = catalog.db.execute(
            f"SELECT count(*) FROM read_parquet({_quote(str(out))})"
        ).fetchone()[0]
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    except duckdb.Error as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise IngestError(f"{_names(paths)}: cannot read file: {exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return row_count, schema


def _describe(catalog: Catalog, source: str, paths: list[Path]) -> dict[str, str]:
    rows = catalog.db.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    schema = {name: kind for name, kind, *_ in rows}
    if not schema:
        raise IngestError(f"{_names(paths)}: no columns found")
    return schema


def _names(paths: list[Path]) -> str:
    return ", ".join(str(path) for path in paths)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
