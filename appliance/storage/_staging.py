"""Staging: source files loaded into DuckDB and their broken rules numbered by line.

`stage_files` loads the files of an ingest into the `STAGED` view, with the
types inferred over every row. `quarantine_rows` returns the rows of the
``violations`` table (see `_contracts.violations_sql`) with each row's file,
line and fields, as the quarantine table stores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from appliance.config import ContractConfig, DatasetConfig
from appliance.errors import IngestError
from appliance.storage._contracts import STAGED
from appliance.storage._lines import line_sql
from appliance.storage._loading import (
    load_sources,
    malformed_records,
    normalize_type,
)
from appliance.storage._sources import Dialect, SourceFile
from appliance.storage._sql import ident, literal
from appliance.storage._types import (
    ColumnType,
    Inference,
    infer_types,
    text_fallback_warnings,
)

RESERVED_COLUMN = "version"
"""Column name taken by the lake's ``version=ID`` partition folders."""


@dataclass
class Staged:
    """Source files loaded into the `STAGED` view of an ingest's connection."""

    source_types: dict[str, str]
    inference: Inference
    records: list[int]
    """Row count of each source file."""
    typed_files: list[Path] | None
    """Parquet file of each source when the typed path read it, else None."""
    dialects: list[Dialect] | None
    """CSV dialect of each source; None for other formats."""
    malformed: int = 0
    """Records the CSV reader could not split into the header's columns."""
    missing: list[str] = field(default_factory=list)
    """Contract columns that no file has, staged as NULL text."""


def stage_files(
    db: duckdb.DuckDBPyConnection,
    sources: list[SourceFile],
    settings: DatasetConfig,
    contract: ContractConfig | None,
    work: Path,
) -> Staged:
    """Load every file into ``raw_N`` views and the `STAGED` view over them."""
    loaded = load_sources(db, sources, settings, contract, work)
    union = " UNION ALL BY NAME ".join(
        f"SELECT {i} AS _file, * FROM raw_{i}" for i in range(len(sources))
    )
    described = db.execute(f"DESCRIBE {union}").fetchall()
    source_types = {
        name: normalize_type(kind)
        for name, kind, *_ in described
        if name not in ("_file", "_record")
    }
    if not source_types:
        raise IngestError(f"{source_names(sources)}: no columns found")
    if RESERVED_COLUMN in source_types:
        # Hive-partitioned reads take `version` from the folder name, so a
        # column of that name would be replaced by the version id on read.
        raise IngestError(
            f"{source_names(sources)}: column {RESERVED_COLUMN!r} is reserved by "
            "the lake layout (lake/DATASET/version=ID); rename it before ingesting"
        )
    missing = [
        n for n in (contract.columns if contract else {}) if n not in source_types
    ]
    extra = "".join(f", NULL::VARCHAR AS {ident(name)}" for name in missing)
    db.execute(f"CREATE TEMP VIEW {STAGED} AS SELECT *{extra} FROM ({union})")

    inference = Inference({n: ColumnType(k) for n, k in source_types.items()})
    text = []
    if sources[0].reader == "read_csv":
        # Text columns get the appliance's rules: decimal commas, allowed date
        # formats, ambiguous dates. Typed columns were read without an error.
        text = [n for n, kind in source_types.items() if kind == "VARCHAR"]
    elif loaded.mixed_columns:
        # JSON-lines columns of mixed JSON types were loaded as text.
        text = [n for n in source_types if n in loaded.mixed_columns]
    if text:
        found = infer_types(
            db, STAGED, text, settings.date_formats, settings.decimal_separator
        )
        inference.types.update(found.types)
        inference.warnings, inference.empty = found.warnings, found.empty
        if loaded.dialects is not None:
            inference.warnings += text_fallback_warnings(
                db, STAGED, [s.path for s in sources], loaded.dialects, found.types
            )
    for name in missing:
        source_types[name] = "VARCHAR"
    malformed = 0
    # Only the text read stores malformed records; the typed read has none.
    typed = loaded.typed_files is not None
    malformed_sql = None if typed else malformed_records(db, len(sources))
    if malformed_sql is not None:
        db.execute(f"CREATE TEMP TABLE malformed AS {malformed_sql}")
        malformed = db.execute("SELECT count(*) FROM malformed").fetchall()[0][0]
    return Staged(
        source_types,
        inference,
        loaded.records,
        loaded.typed_files,
        loaded.dialects,
        malformed,
        missing,
    )


def quarantine_rows(
    db: duckdb.DuckDBPyConnection,
    sources: list[SourceFile],
    staged: Staged,
    encoding: str,
) -> Any:
    """Return the violations as an Arrow table with source, line and whole row."""
    lines = []
    for index, source in enumerate(sources):
        dialect = staged.dialects[index] if staged.dialects else None
        records = staged.records[index]
        lines.append(
            line_sql(db, index, source, records, dialect, staged.malformed, encoding)
        )
    numbered = " UNION ALL ".join(lines)
    fields = ", ".join(
        f"{ident(name)} := r.{ident(name)}" for name in staged.source_types
    )
    paths = f"(SELECT * FROM (VALUES {_paths_values(sources)}) t(_file, path))"
    query = f"""
        SELECT v._file, s.path AS source, l.line, v.column_name, v.value, v.reason,
               to_json(struct_pack({fields})) AS row_json
        FROM violations v
        JOIN ({numbered}) l USING (_file, _record)
        JOIN {paths} s USING (_file)
        JOIN {STAGED} r USING (_file, _record)
    """
    if staged.malformed:
        query += f"""
        UNION ALL
        SELECT m._file, s.path, m.line, m.column_name, m.csv_line, m.message,
               to_json(struct_pack(csv_line := m.csv_line))
        FROM malformed m JOIN {paths} s USING (_file)
        """
    query = (
        "SELECT source, line, column_name, value, reason, row_json FROM "
        f"({query}) ORDER BY _file, line, column_name"
    )
    return db.sql(query).to_arrow_table()


def _paths_values(sources: list[SourceFile]) -> str:
    return ", ".join(
        f"({index}, {literal(str(source.path.resolve()))})"
        for index, source in enumerate(sources)
    )


def source_names(sources: list[SourceFile]) -> str:
    """Return the paths of `sources`, comma-separated, for messages."""
    return ", ".join(str(source.path) for source in sources)
