"""Staging: source files loaded into DuckDB and their broken rules numbered by line.

`stage_files` loads the files of an ingest into the `STAGED` view, with the
types inferred over every row, and `stage_checked` also fills the
``violations`` table (see `_contracts.violations_sql`). `quarantine_rows`
returns the rows of that table with each row's file, line and fields, as the
quarantine table stores them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from appliance.config import ContractConfig, DatasetConfig
from appliance.errors import IngestError
from appliance.storage._column_names import ascii_lower, check_spellings
from appliance.storage._contracts import (
    STAGED,
    UNIQUE_KEY_REASON,
    column_types,
    violations_sql,
)
from appliance.storage._durations import duration_warnings
from appliance.storage._encoding_hint import utf8_warning
from appliance.storage._first_types import (
    iso_sniffed_types,
    json_first_types,
    mostly_numbers,
    written_booleans,
)
from appliance.storage._lines import line_sql
from appliance.storage._loading import (
    Loaded,
    load_sources,
    malformed_records,
    normalize_type,
)
from appliance.storage._null_sources import NullCounts
from appliance.storage._quarantine import raw_line_field
from appliance.storage._quote_errors import split_quote_errors
from appliance.storage._sources import Dialect, SourceFile
from appliance.storage._sql import ident, literal
from appliance.storage._types import (
    ColumnType,
    Inference,
    infer_types,
    invalid_date_warnings,
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
    """Rows of the ``malformed`` table: each record the CSV reader could not
    split into the header's columns, or each non-blank line of such a record
    when a quote error spans several lines (see `_quote_errors`)."""
    missing: list[str] = field(default_factory=list)
    """Contract columns that no file has, staged as NULL text."""
    typed_columns: frozenset[str] = frozenset()
    """CSV and JSON-lines columns whose text is DuckDB's print of a typed value."""
    nan_columns: frozenset[str] = frozenset()
    """Columns with a NaN in the typed path's Parquet files."""
    repeated_keys: tuple[str, ...] = ()
    """Tables of the rows whose JSON objects repeat a key, as violations."""
    finite_columns: frozenset[str] = frozenset()
    """DOUBLE columns of the typed path without an infinity."""
    null_counts: NullCounts = field(default_factory=dict)
    """Per column with a NULL, the count of each source form read as missing."""
    token_columns: frozenset[str] = frozenset()
    """Text columns whose typed path Parquet files contain null tokens as text."""


@dataclass(frozen=True)
class Checked:
    """Staged files with their broken rules in the ``violations`` table."""

    staged: Staged
    types: dict[str, ColumnType]
    """Type each column is stored as."""
    bad: int
    """Rows with at least one broken rule."""


def stage_checked(
    db: duckdb.DuckDBPyConnection,
    sources: list[SourceFile],
    settings: DatasetConfig,
    contract: ContractConfig | None,
    work: Path,
    parent_scan: str | None = None,
    sensitive: tuple[frozenset[str], frozenset[str] | None] = (frozenset(), None),
    known: tuple[str, ...] = (),
) -> Checked:
    """Stage the files and create the ``violations`` table of their broken rules.

    A rejected value of a typed CSV or JSON-lines column shows as DuckDB
    prints it, such as ``-0.5`` for ``-0.50``. When there is one, the files
    are staged and checked again with those columns read as text, so the
    quarantine shows each value as written in the file. Only an ingest that
    quarantines such a value pays for the second pass.

    Args:
        parent_scan: SQL of the parent version's rows in append mode, whose
            unique keys the new rows must not repeat.
        sensitive: The sensitive columns, whose values no warning shows, and
            those of them that the files hold encrypted, which are decrypted
            as they are read (None when the files hold plaintext).
        known: Column names of the dataset's latest version, whose spelling
            the files must keep, as they must the contract's.
    """
    staged = stage_files(
        db, sources, settings, contract, work, sensitive=sensitive, known=known
    )
    nul_free = _nul_free_columns(sources, staged, sensitive[1])
    types, bad = _check(db, staged, contract, parent_scan, settings.name, nul_free)
    printed = _printed_rejections(db, staged) if bad else frozenset()
    if printed:
        _drop_temporary(db)
        staged = stage_files(
            db,
            sources,
            settings,
            contract,
            work,
            printed,
            sensitive=sensitive,
            known=known,
        )
        nul_free = _nul_free_columns(sources, staged, sensitive[1])
        types, bad = _check(db, staged, contract, parent_scan, settings.name, nul_free)
    return Checked(staged, types, bad)


def _nul_free_columns(
    sources: list[SourceFile], staged: Staged, decrypted: frozenset[str] | None
) -> frozenset[str]:
    """Return the staged columns that surely hold no NUL byte.

    That is every column when each file is a CSV file without a 0x00 byte,
    except the decrypted ones, whose plaintext is not in the files.
    """
    if not all(source.nul_free for source in sources):
        return frozenset()
    columns = {*staged.source_types, *staged.missing}
    return frozenset(columns - (decrypted or frozenset()))


def _check(
    db: duckdb.DuckDBPyConnection,
    staged: Staged,
    contract: ContractConfig | None,
    parent_scan: str | None,
    dataset: str,
    nul_free: frozenset[str],
) -> tuple[dict[str, ColumnType], int]:
    """Create the ``violations`` table and return the stored types and bad rows.

    Columns in `nul_free` are not checked for NUL bytes (`_nul_free_columns`).
    """
    active = contract or ContractConfig()
    types = column_types(active, staged.inference.types)
    db.execute(
        "CREATE TEMP TABLE violations AS "
        + violations_sql(
            active,
            types,
            staged.source_types,
            parent_scan,
            staged.inference.types,
            dataset,
            staged.finite_columns,
            nul_free,
        )
    )
    for table in staged.repeated_keys:
        db.execute(f"INSERT INTO violations SELECT * FROM {table}")
    bad = db.execute(
        "SELECT count(*) FROM (SELECT DISTINCT _file, _record FROM violations)"
    ).fetchall()[0][0]
    return types, bad


def _printed_rejections(
    db: duckdb.DuckDBPyConnection, staged: Staged
) -> frozenset[str]:
    """Return the typed columns whose rejected values ``violations`` shows printed.

    A duplicate unique key shows the stored key, whatever the source's text,
    so it is left out.
    """
    if not staged.typed_columns:
        return frozenset()
    rows = db.execute(
        "SELECT DISTINCT column_name FROM violations WHERE value IS NOT NULL "
        "AND NOT starts_with(reason, ?)",
        [UNIQUE_KEY_REASON],
    ).fetchall()
    return frozenset(name for (name,) in rows if name in staged.typed_columns)


def _drop_temporary(db: duckdb.DuckDBPyConnection) -> None:
    """Drop every temporary view and table of the ingest's own connection."""
    views = db.execute(
        "SELECT view_name FROM duckdb_views() WHERE temporary AND NOT internal"
    ).fetchall()
    for (name,) in views:
        db.execute(f"DROP VIEW {ident(name)}")
    tables = db.execute(
        "SELECT table_name FROM duckdb_tables() WHERE temporary"
    ).fetchall()
    for (name,) in tables:
        db.execute(f"DROP TABLE {ident(name)}")


def stage_files(
    db: duckdb.DuckDBPyConnection,
    sources: list[SourceFile],
    settings: DatasetConfig,
    contract: ContractConfig | None,
    work: Path,
    as_text: frozenset[str] = frozenset(),
    *,
    sensitive: tuple[frozenset[str], frozenset[str] | None] = (frozenset(), None),
    known: tuple[str, ...] = (),
) -> Staged:
    """Load every file into ``raw_N`` views and the `STAGED` view over them.

    The columns in `as_text` are read as text as written (see
    `_loading.load_sources`), and their types inferred from that text.
    `sensitive` and `known` are as `stage_checked` takes them.

    Raises:
        IngestError: A file cannot be read, or spells a column otherwise than
            the contract, `known` or another file does.
    """
    hidden, decrypted = sensitive
    loaded = load_sources(db, sources, settings, contract, work, as_text, decrypted)
    check_spellings(
        [(s.path, _file_columns(db, i)) for i, s in enumerate(sources)],
        [*(contract.columns if contract else ()), *known],
        settings.name,
    )
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
    reserved = [n for n in source_types if ascii_lower(n) == RESERVED_COLUMN]
    if reserved:
        # Hive-partitioned reads take `version` from the folder name, and
        # DuckDB matches names regardless of case, so a column of that name
        # in any case would be replaced by the version id on read.
        raise IngestError(
            f"{source_names(sources)}: column {reserved[0]!r} is reserved by "
            "the lake layout (lake/DATASET/version=ID), in any case; rename it "
            "before ingesting"
        )
    missing = [
        n for n in (contract.columns if contract else {}) if n not in source_types
    ]
    extra = "".join(f", NULL::VARCHAR AS {ident(name)}" for name in missing)
    db.execute(f"CREATE TEMP VIEW {STAGED} AS SELECT *{extra} FROM ({union})")

    malformed = 0
    # Only the text read stores malformed records; the typed read has none.
    typed = loaded.typed_files is not None
    malformed_sql = None if typed else malformed_records(db, len(sources))
    if malformed_sql is not None:
        db.execute(f"CREATE TEMP TABLE malformed AS {malformed_sql}")
        # JSON-lines files have no dialect and no quote errors.
        if loaded.dialects is not None:
            split_quote_errors(
                db, sources, loaded.dialects, loaded.records, settings.encoding
            )
        malformed = db.execute("SELECT count(*) FROM malformed").fetchall()[0][0]

    inference = Inference({n: ColumnType(k) for n, k in source_types.items()})
    text = []
    if sources[0].reader == "read_csv":
        # Text columns get the appliance's rules: decimal commas, allowed date
        # formats, ambiguous dates. Typed columns were read without an error.
        text = [n for n, kind in source_types.items() if kind == "VARCHAR"]
    elif loaded.text_columns:
        # JSON-lines columns of mixed JSON types, or read as written, are text.
        text = [n for n in source_types if n in loaded.text_columns]
    if text:
        found = infer_types(
            db,
            STAGED,
            text,
            settings.date_formats,
            settings.decimal_separator,
            dataset=settings.name,
        )
        inference.types.update(found.types)
        inference.warnings, inference.empty = found.warnings, found.empty
        inference.warned = found.warned
        inference.invalid_dates = found.invalid_dates
    if sources[0].reader == "read_json":
        # DuckDB types ISO dates and times of JSON strings; other strings get
        # the allowed date formats and the warnings of CSV text.
        strings = [
            n
            for n, kind in source_types.items()
            if kind == "VARCHAR" and n not in loaded.text_columns
        ]
        found = infer_types(
            db,
            STAGED,
            strings,
            settings.date_formats,
            None,
            True,
            dataset=settings.name,
        )
        inference.types.update(found.types)
        inference.warnings += found.warnings
        inference.warned.update(found.warned)
        inference.empty |= found.empty
        inference.invalid_dates |= found.invalid_dates
    for name in missing:
        source_types[name] = "VARCHAR"
    # A warning of a text column names a value, so sensitive columns get none.
    shown = {n: t for n, t in inference.types.items() if n not in hidden}
    invalid_dates = sorted(inference.invalid_dates - hidden)
    fallback = _fallback_warnings(
        db, sources, loaded, (shown, invalid_dates), (malformed, settings)
    )
    # A value named by its line explains a column better than the first rows'
    # formats do, so it replaces that column's inference warning.
    replaced = {inference.warned[n] for n in fallback if n in inference.warned}
    inference.warnings = [w for w in inference.warnings if w not in replaced]
    inference.warnings += fallback.values()
    inference.warnings += [
        f"column {name!r} has spaces around its name, and it is stored with "
        f"them, so queries, views and requests must name it so; remove them "
        f"from the header to store {name.strip()!r}"
        for name in source_types
        if name != name.strip()
    ]
    for source in sources:
        hint = utf8_warning(source, settings.name, settings.encoding)
        if hint is not None:
            inference.warnings.append(hint)
        if source.reader == "read_parquet":
            inference.warnings += duration_warnings(source)
    # The contract's type decides a declared column, so advice on how its
    # text would be inferred does not apply.
    declared = [
        n for n, rule in (contract.columns if contract else {}).items() if rule.type
    ]
    advice = {fallback.get(n) for n in declared} | {
        inference.warned.get(n) for n in declared
    }
    inference.warnings = [w for w in inference.warnings if w not in advice]
    return Staged(
        source_types,
        inference,
        loaded.records,
        loaded.typed_files,
        loaded.dialects,
        malformed,
        missing,
        loaded.typed_columns,
        loaded.nan_columns,
        loaded.repeated_keys,
        loaded.finite_columns,
        loaded.null_counts,
        loaded.token_columns,
    )


def _file_columns(db: duckdb.DuckDBPyConnection, index: int) -> list[str]:
    """Return the column names of source file `index`, as view ``raw_N`` has them."""
    described = db.execute(f"DESCRIBE raw_{index}").fetchall()
    return [name for name, *_ in described if name != "_record"]


def _fallback_warnings(
    db: duckdb.DuckDBPyConnection,
    sources: list[SourceFile],
    loaded: Loaded,
    columns: tuple[dict[str, ColumnType], list[str]],
    numbering: tuple[int, DatasetConfig],
) -> dict[str, str]:
    """Warn of text columns that look typed, naming a value with its line.

    Those are the columns whose first rows look numeric, boolean or timed,
    and those of ISO 8601 dates with an invalid one.

    Args:
        columns: The type of each staged column, and the columns of ISO 8601
            dates with an invalid one.
        numbering: The count of malformed records and the dataset's settings,
            whose encoding the line numbers of the named values need.
    """
    types, invalid_dates = columns
    text = [name for name, column in types.items() if column.type == "VARCHAR"]
    if not text or sources[0].reader == "read_parquet":
        return {}
    if loaded.dialects is not None:
        first_types = [iso_sniffed_types(dialect) for dialect in loaded.dialects]
        first_types = written_booleans(db, first_types, text)
        first_types = mostly_numbers(db, first_types, text)
    else:
        first_types = json_first_types(db, len(sources), text)
    malformed, settings = numbering
    paths = [s.path for s in sources]
    line_of = _line_finder(db, sources, loaded, malformed, settings.encoding)
    warnings = invalid_date_warnings(
        db, STAGED, paths, invalid_dates, line_of, settings.name
    )
    warnings |= text_fallback_warnings(
        db,
        STAGED,
        paths,
        first_types,
        types,
        line_of,
        settings.name,
        null_values=loaded.dialects is not None,
    )
    return warnings


def _line_finder(
    db: duckdb.DuckDBPyConnection,
    sources: list[SourceFile],
    loaded: Loaded,
    malformed: int,
    encoding: str,
) -> Callable[[int, int], int]:
    """Return a function from a row's ``_file`` and ``_record`` to its line.

    Each call numbers the lines of the row's whole file, so it suits a few
    rows, such as those named in warnings.
    """

    def line_of(file: int, record: int) -> int:
        dialect = loaded.dialects[file] if loaded.dialects else None
        numbered = line_sql(
            db,
            file,
            sources[file],
            loaded.records[file],
            dialect,
            malformed,
            encoding,
        )
        row = db.execute(
            f"SELECT line FROM ({numbered}) WHERE _record = ?", [record]
        ).fetchall()
        return row[0][0]

    return line_of


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
        # A record that no row was read from keeps only its text.
        field = raw_line_field(sources[0].reader)
        query += f"""
        UNION ALL
        SELECT m._file, s.path, m.line, m.column_name, m.csv_line, m.message,
               to_json(struct_pack({field} := m.csv_line))
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
