"""Loading source files into DuckDB views ``raw_0``, ``raw_1``, ... for ingest.

Each view has the file's columns and ``_record``, the row's position in the
file from 0. CSV files take one of two paths. The typed path reads each
column as the type DuckDB's sniffer guessed (or the contract declares)
straight into a zstd Parquet file in the staging folder, in one pass that
fails on the first value that does not parse. When it succeeds, every row was
checked against those types, which is as good as inferring them over the
whole file and much faster, and the Parquet file can become the version's
data file unchanged. When any value fails, a guess is not one the
appliance's rules allow (a date in a non-ISO format), or a DOUBLE column
holds an infinity that the quarantine must show as written (``1e309``), the
files are read again as text into temporary tables. Then `_types.infer_types` and the
contract checks decide each value.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb

from appliance.config import ContractConfig, DatasetConfig
from appliance.errors import IngestError
from appliance.storage._errors import short_error
from appliance.storage._sources import (
    Dialect,
    SourceFile,
    check_utf8,
    only_blank_lines,
    sniff_dialect,
)

logger = logging.getLogger(__name__)

_FORMATS = {"read_csv": "CSV", "read_parquet": "Parquet", "read_json": "JSON-lines"}
PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd"
"""Options of every Parquet file the ingest writes to the lake."""
_ROW_NUMBER = "file_row_number"
"""Column that ``read_parquet(..., file_row_number=true)`` adds."""
_TYPED = ("BIGINT", "DOUBLE", "BOOLEAN", "DATE", "TIMESTAMP", "TIMESTAMPTZ", "VARCHAR")
_ALIASES = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}


def normalize_type(kind: str) -> str:
    """Return the short name of a DuckDB type, such as TIMESTAMPTZ."""
    return _ALIASES.get(kind, kind)


@dataclass(frozen=True)
class Loaded:
    """Row counts of the loaded files and, on the typed path, their Parquet copies."""

    records: list[int]
    """Row count of each source file."""
    typed_files: list[Path] | None
    """Parquet file of each source written by the typed path; None otherwise."""
    dialects: list[Dialect] | None = None
    """CSV dialect of each source; None for other formats."""
    mixed_columns: frozenset[str] = frozenset()
    """JSON-lines columns whose values have several JSON types, loaded as text."""


def load_sources(
    db: duckdb.DuckDBPyConnection,
    sources: list[SourceFile],
    settings: DatasetConfig,
    contract: ContractConfig | None,
    staging: Path,
) -> Loaded:
    """Create view ``raw_N`` for each source file.

    Args:
        db: The ingest's own DuckDB connection.
        sources: Files of one format.
        settings: The dataset's configuration.
        contract: The contract whose types the typed path reads CSV columns as.
        staging: Existing folder for the typed path's Parquet files.

    Raises:
        IngestError: A file cannot be read.
    """
    if sources[0].reader == "read_csv":
        dialects = [
            sniff_dialect(db, s.path, settings.delimiter, settings.encoding)
            for s in sources
        ]
        typed = _load_typed(db, sources, dialects, settings, contract, staging)
        if typed is not None:
            return Loaded(_counts(db, len(sources)), typed, dialects)
        if settings.encoding == "utf-8":
            # The text read would quarantine a record with a non-UTF-8 byte,
            # so the whole file is rejected first, naming the byte's line.
            for source in sources:
                check_utf8(source.path)
        readers = [
            _text_csv_sql(i, s, d, settings)
            for i, (s, d) in enumerate(zip(sources, dialects))
        ]
    else:
        dialects = None
        readers = [_other_sql(source) for source in sources]
    mixed: set[str] = set()
    for index, (source, reader) in enumerate(zip(sources, readers)):
        try:
            db.execute(f"CREATE TEMP TABLE rows_{index} AS SELECT * FROM {reader}")
        except duckdb.Error as exc:
            if source.reader == "read_json":
                _raise_malformed_line(source.path)
            if source.reader == "read_csv" and only_blank_lines(source.path):
                raise IngestError(
                    f"{source.path}: the file contains only blank lines; nothing "
                    "to ingest"
                ) from None
            raise IngestError(
                f"{source.path}: cannot read file: {short_error(exc)}; check that "
                f"it is a complete {_FORMATS[source.reader]} file"
            ) from None
        if source.reader == "read_json":
            _check_json_objects(db, index, source.path)
            _reread_infinities_as_json(db, index, source, contract)
        columns, found = _json_as_text(db, f"rows_{index}")
        mixed.update(found)
        db.execute(
            f"CREATE TEMP VIEW raw_{index} AS SELECT rowid AS _record, {columns} "
            f"FROM rows_{index}"
        )
    return Loaded(_counts(db, len(sources)), None, dialects, frozenset(mixed))


def _json_as_text(db: duckdb.DuckDBPyConnection, table: str) -> tuple[str, list[str]]:
    """Return the select list of `table` with JSON-typed columns as plain text.

    DuckDB's ``read_json`` types a column as JSON when its values have several
    JSON types, such as a number in one line and a string in the next. Cast
    to VARCHAR, a JSON string keeps its quotes, so each string value is
    unwrapped instead and any other value becomes its JSON text. Returns the
    select list and the names of the JSON-typed columns.
    """
    described = db.execute(f"DESCRIBE {table}").fetchall()
    selects, mixed = [], []
    for name, kind, *_ in described:
        column = _ident(name)
        if kind != "JSON":
            selects.append(column)
            continue
        mixed.append(name)
        selects.append(
            f"CASE WHEN json_type({column}) = 'VARCHAR' "
            f"THEN json_extract_string({column}, '$') "
            f"ELSE CAST({column} AS VARCHAR) END AS {column}"
        )
    return ", ".join(selects), mixed


def _load_typed(
    db: duckdb.DuckDBPyConnection,
    sources: list[SourceFile],
    dialects: list[Dialect],
    settings: DatasetConfig,
    contract: ContractConfig | None,
    staging: Path,
) -> list[Path] | None:
    """Try the typed path; return None, with no file or view left, if a value failed."""
    files = []
    for index, (source, dialect) in enumerate(zip(sources, dialects)):
        types = _typed_columns(dialect, settings, contract)
        if _ROW_NUMBER in types:
            _drop_typed(db, files)
            return None
        out = staging / f"raw_{index}.parquet"
        files.append(out)
        try:
            db.execute(
                f"COPY (SELECT * FROM {_csv_sql(source, dialect, settings, types)})) "
                f"TO {_literal(str(out))} ({PARQUET_OPTIONS})"
            )
        except duckdb.Error as exc:
            # The read stops at the first value that does not parse as its
            # column's type, or at a record with the wrong number of fields.
            logger.debug(
                "typed read failed, reading as text file=%s error=%s",
                source.path,
                short_error(exc),
            )
            _drop_typed(db, files)
            return None
        infinite = _infinite_columns(
            db, f"read_parquet({_literal(str(out))})", types, contract
        )
        if infinite:
            # The typed read turns "1e309" into inf, and the quarantine would
            # show "inf". The text read keeps the value as written in the file.
            logger.debug(
                "typed read found infinities, reading as text file=%s columns=%s",
                source.path,
                ",".join(infinite),
            )
            _drop_typed(db, files)
            return None
        db.execute(
            f"CREATE TEMP VIEW raw_{index} AS SELECT {_ROW_NUMBER} AS _record, "
            f"* EXCLUDE ({_ROW_NUMBER}) FROM read_parquet({_literal(str(out))}, "
            "file_row_number=true, hive_partitioning=false)"
        )
    return files


def _infinite_columns(
    db: duckdb.DuckDBPyConnection,
    relation: str,
    types: Mapping[str, str],
    contract: ContractConfig | None,
) -> list[str]:
    """Return the DOUBLE columns of `relation` with an infinity to quarantine.

    A column whose contract rule sets ``allow_infinity`` keeps its infinities,
    so it is left out.
    """
    rules = contract.columns if contract else {}
    names = [
        name
        for name, kind in types.items()
        if kind == "DOUBLE" and not (name in rules and rules[name].allow_infinity)
    ]
    if not names:
        return []
    counts = ", ".join(f"count(*) FILTER (isinf({_ident(n)}))" for n in names)
    row = db.execute(f"SELECT {counts} FROM {relation}").fetchone() or ()
    return [name for name, count in zip(names, row) if count]


def _reread_infinities_as_json(
    db: duckdb.DuckDBPyConnection,
    index: int,
    source: SourceFile,
    contract: ContractConfig | None,
) -> None:
    """Read the DOUBLE columns of ``rows_N`` with an infinity again as JSON.

    ``read_json`` turns ``1e309`` into inf, and the quarantine would show
    "inf". Read as JSON, each value keeps its text as written in the file,
    and `_json_as_text` then loads the column as text, like a column of mixed
    JSON types, whose type `_types.infer_types` decides.
    """
    table = f"rows_{index}"
    types = {
        name: kind for name, kind, *_ in db.execute(f"DESCRIBE {table}").fetchall()
    }
    infinite = _infinite_columns(db, table, types, contract)
    if not infinite:
        return
    columns = {
        name: "JSON" if name in infinite else kind for name, kind in types.items()
    }
    listed = ", ".join(f"{_literal(n)}: {_literal(k)}" for n, k in columns.items())
    reader = (
        f"read_json({_literal(str(source.path))}, format='newline_delimited', "
        f"columns={{{listed}}})"
    )
    db.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM {reader}")


def _drop_typed(db: duckdb.DuckDBPyConnection, files: list[Path]) -> None:
    for index, path in enumerate(files):
        db.execute(f"DROP VIEW IF EXISTS raw_{index}")
        path.unlink(missing_ok=True)


def _typed_columns(
    dialect: Dialect, settings: DatasetConfig, contract: ContractConfig | None
) -> dict[str, str]:
    """Return the type to read each column as on the typed path."""
    types = {}
    rules = contract.columns if contract else {}
    for name in dialect.columns:
        kind = normalize_type(dialect.sniffed_types.get(name, "VARCHAR"))
        rule = rules.get(name)
        if rule is not None and rule.type is not None:
            kind = "VARCHAR" if rule.date_format else rule.type.upper()
        if kind not in _TYPED:
            kind = "VARCHAR"
        if kind == "DATE" and dialect.date_format not in (None, "%Y-%m-%d"):
            kind = "VARCHAR"
        if kind.startswith("TIMESTAMP") and not _iso(dialect.timestamp_format):
            kind = "VARCHAR"
        if kind == "DOUBLE" and settings.decimal_separator == ",":
            kind = "VARCHAR"
        types[name] = kind
    return types


def _iso(fmt: str | None) -> bool:
    return fmt is None or fmt.startswith("%Y-%m-%d")


def _text_csv_sql(
    index: int, source: SourceFile, dialect: Dialect, settings: DatasetConfig
) -> str:
    """Return a text read that stores malformed records in ``text_rejects_N``."""
    types = {name: "VARCHAR" for name in dialect.columns}
    return _csv_sql(source, dialect, settings, types) + (
        f", ignore_errors=true, store_rejects=true, "
        f"rejects_table='text_rejects_{index}', rejects_scan='text_scan_{index}')"
    )


def malformed_records(db: duckdb.DuckDBPyConnection, files: int) -> str | None:
    """Return SQL of the records the text read could not split into the columns.

    The rows are ``(_file, line, line_position, column_name, csv_line,
    message)``, where ``line`` is DuckDB's count of records and line breaks
    before the record (the record's line when every record is one line) and
    ``line_position`` a byte offset within the record or the blank lines
    before it. None when the files were read on the typed path, which has no
    such records.
    """
    tables = [f"text_rejects_{index}" for index in range(files)]
    present = {
        row[0]
        for row in db.execute(
            "SELECT table_name FROM duckdb_tables() WHERE temporary"
        ).fetchall()
    }
    if not all(table in present for table in tables):
        return None
    return " UNION ALL ".join(
        f"SELECT {index} AS _file, CAST(line AS BIGINT) AS line, "
        "CAST(line_byte_position AS BIGINT) AS line_position, column_name, "
        f"csv_line, CAST(error_type AS VARCHAR) || ': ' || error_message AS message "
        f"FROM {table}"
        for index, table in enumerate(tables)
    )


def _csv_sql(
    source: SourceFile,
    dialect: Dialect,
    settings: DatasetConfig,
    types: Mapping[str, str],
) -> str:
    """Return ``read_csv(...`` without its closing parenthesis."""
    nulls = "[" + ", ".join(_literal(v) for v in settings.null_values) + "]"
    columns = (
        "{" + ", ".join(f"{_literal(n)}: {_literal(t)}" for n, t in types.items()) + "}"
    )
    return (
        f"read_csv({_literal(str(source.path))}, header=true, auto_detect=false, "
        f"delim={_literal(dialect.delimiter)}, quote={_literal(dialect.quote)}, "
        f"escape={_literal(dialect.escape)}, nullstr={nulls}, "
        f"encoding={_literal(settings.encoding)}, columns={columns}"
    )


def _other_sql(source: SourceFile) -> str:
    path = _literal(str(source.path))
    if source.reader == "read_parquet":
        return f"read_parquet({path})"
    # Without map_inference_threshold=-1, DuckDB 2.0.1 reads a file whose
    # objects have 200 or more distinct keys as one MAP column.
    return (
        f"read_json({path}, format='newline_delimited', sample_size=-1, "
        "map_inference_threshold=-1)"
    )


def _check_json_objects(db: duckdb.DuckDBPyConnection, index: int, path: Path) -> None:
    """Raise for the first line of a JSON-lines file that is not a JSON object.

    When any line contains an array, a number or a string, or an object with
    an empty key, DuckDB reads the whole file as one column named ``json``
    with each line as one value. Only a table of that one column is scanned
    again in Python.
    """
    names = [row[0] for row in db.execute(f"DESCRIBE rows_{index}").fetchall()]
    if any("\0" in name for name in names):
        _raise_nul_key(path)
    if names != ["json"]:
        return
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            value = json.loads(line)
            if not isinstance(value, dict):
                kind = "an array" if isinstance(value, list) else "a single value"
                raise IngestError(
                    f"{path}, line {number}: {kind} where a JSON object was "
                    "expected; write one object per line (JSON Lines), such as "
                    '{"id": 1, "name": "a"}'
                )
            if "" in value:
                raise IngestError(
                    f'{path}, line {number}: the key "" is an empty column name; '
                    "name the column, or remove the key from that object"
                )


def _raise_nul_key(path: Path) -> None:
    """Raise for the first line of a JSON-lines file with a NUL byte in a key."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            value = json.loads(line) if line.strip() else None
            if not isinstance(value, dict):
                continue
            for key in value:
                if "\0" in key:
                    shown = key.replace("\0", "\\0")
                    raise IngestError(
                        f"{path}, line {number}: the key '{shown}' contains a NUL "
                        "byte (0x00); remove NUL bytes from the file"
                    )


def _raise_malformed_line(path: Path) -> None:
    """Raise for the first line of a JSON-lines file that is not valid JSON.

    DuckDB 2.0's reader error names the line after the malformed one, so the file
    is scanned again here. Returns when every line parses, and the caller
    then reports DuckDB's error.
    """
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except json.JSONDecodeError as exc:
                if line.strip() in (b"[", b"{"):
                    raise IngestError(
                        f"{path}, line {number}: a JSON value spread over several "
                        "lines; write one object per line (JSON Lines), such as "
                        '{"id": 1, "name": "a"}'
                    ) from None
                raise IngestError(
                    f"{path}, line {number}: invalid JSON: {exc.msg} at column "
                    f"{exc.colno}; fix or remove that line and ingest the file again"
                ) from None
            except UnicodeDecodeError as exc:
                raise IngestError(
                    f"{path}, line {number}: invalid JSON: not UTF-8 text "
                    f"({exc.reason}); fix or remove that line and ingest the "
                    "file again"
                ) from None


def _counts(db: duckdb.DuckDBPyConnection, files: int) -> list[int]:
    return [
        db.execute(f"SELECT count(*) FROM raw_{index}").fetchall()[0][0]
        for index in range(files)
    ]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
