"""Loading source files into DuckDB views ``raw_0``, ``raw_1``, ... for ingest.

Each view has the file's columns and ``_record``, the row's position in the
file from 0. CSV files take one of two paths. The typed path reads each
column as the type DuckDB's sniffer guessed (or the contract declares)
straight into a zstd Parquet file in the staging folder, in one pass that
fails on the first value that does not parse. When it succeeds, every row was
checked against those types, which is as good as inferring them over the
whole file and much faster, and the Parquet file can become the version's
data file unchanged. When any value fails, or a guess is not one the
appliance's rules allow (a date in a non-ISO format), the files are read
again as text into temporary tables. Then `_types.infer_types` and the
contract checks decide each value.

A typed value prints as DuckDB writes it, such as ``-0.5`` for ``-0.50`` in
the file. A column whose values must keep their text as written, because a
contract ``regex`` matches it or the quarantine shows it, is named in
`load_sources`'s ``as_text``: a CSV file reads it as VARCHAR, and a
JSON-lines file has its text parsed again from the file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NoReturn

import duckdb
import pyarrow as pa

from appliance.config import ContractConfig, DatasetConfig
from appliance.errors import IngestError
from appliance.storage._column_names import (
    check_internal_names,
    check_json_key_case,
    check_parquet_names,
)
from appliance.storage._encrypted import DECRYPT
from appliance.storage._json_lines import count_empty_objects, set_aside_malformed
from appliance.storage._lines import non_blank_lines
from appliance.storage._null_sources import (
    UNUSED_NULL,
    NullCounts,
    add_counts,
    guard_sql,
    in_order,
    json_null_counts,
    null_columns,
    null_token_sql,
    parquet_null_counts,
    parquet_token_counts,
    raised_token,
    split_tokens,
    token_columns,
    token_counts,
)
from appliance.storage._repeated_keys import (
    REPEATED_KEY_ERROR,
    store_repeats,
    write_without_repeats,
)
from appliance.storage._sources import (
    SNIFF_ROWS,
    Dialect,
    InputFile,
    SourceFile,
    check_line_breaks,
    check_utf8,
    file_error,
    line_size_option,
    only_blank_lines,
    sniff_dialect,
)
from appliance.storage._sql import ident, literal
from appliance.storage._types import INTEGER_TYPES, exact_text_sql

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
    text_columns: frozenset[str] = frozenset()
    """JSON-lines columns loaded as text, whose type `infer_types` decides:
    those whose values have several JSON types, and those read as written."""
    typed_columns: frozenset[str] = frozenset()
    """CSV and JSON-lines columns of scalar values read typed, whose text is
    DuckDB's print of each value; ``as_text`` reads them as written."""
    nan_columns: frozenset[str] = frozenset()
    """Columns with a NaN in the typed path's Parquet files, from the
    statistics that the Parquet writer returns."""
    repeated_keys: tuple[str, ...] = ()
    """Tables of the rows whose JSON objects repeat a key, as violations."""
    finite_columns: frozenset[str] = frozenset()
    """DOUBLE columns of the typed path without an infinity, from the
    statistics that the Parquet writer returns."""
    null_counts: NullCounts = field(default_factory=dict)
    """Per column with a NULL, the count of each source form read as missing
    (see `_null_sources`), over every file."""
    token_columns: frozenset[str] = frozenset()
    """Text columns whose typed path Parquet files contain null tokens as text,
    which the ``raw_N`` views read as NULL."""


def load_sources(
    db: duckdb.DuckDBPyConnection,
    sources: list[SourceFile],
    settings: DatasetConfig,
    contract: ContractConfig | None,
    staging: Path,
    as_text: frozenset[str] = frozenset(),
    decrypted: frozenset[str] | None = None,
) -> Loaded:
    """Create view ``raw_N`` for each source file.

    Args:
        db: The ingest's own DuckDB connection.
        sources: Files of one format.
        settings: The dataset's configuration.
        contract: The contract whose types the typed path reads CSV columns as.
            Its columns with a ``regex`` rule are read as text as written.
        staging: Existing folder for the typed path's Parquet files.
        as_text: Further columns to read as text as written, such as typed
            columns with a value that the quarantine shows. Parquet files have
            no text, so they ignore it.
        decrypted: JSON-lines columns that the files hold encrypted, as the
            ingest buffer writes them. They are decrypted with the `DECRYPT`
            function into text, whose type is then inferred.

    Raises:
        IngestError: A file cannot be read.
    """
    as_text = as_text | _regex_columns(contract)
    if sources[0].reader == "read_csv":
        dialects = [
            s.dialect
            or sniff_dialect(
                db,
                s,
                settings.delimiter,
                settings.encoding,
                settings.name,
                settings.max_line_bytes,
            )
            for s in sources
        ]
        for source, dialect in zip(sources, dialects):
            check_internal_names(source.path, dialect.columns)
        typed = _load_typed(db, sources, dialects, settings, contract, staging, as_text)
        if typed is not None:
            return typed
        if settings.encoding == "utf-8":
            # The text read would quarantine a record with a non-UTF-8 byte,
            # so the whole file is rejected first, naming the byte's line.
            for source in sources:
                check_utf8(source, settings.name)
        readers = [
            _text_csv_sql(i, s, d, settings)
            for i, (s, d) in enumerate(zip(sources, dialects))
        ]
    else:
        dialects = None
        readers = [_other_sql(source) for source in sources]
        for source in sources:
            if source.reader == "read_parquet":
                check_parquet_names(source.path)
    text: set[str] = set()
    typed_columns: set[str] = set()
    repeated: list[str] = []
    null_counts: NullCounts = {}
    for index, (source, reader) in enumerate(zip(sources, readers)):
        try:
            read, repeats = _load_rows(db, index, (source, reader), staging, contract)
        except duckdb.Error as exc:
            dialect = dialects[index] if dialects else None
            _raise_unreadable(source, exc, dialect, settings.encoding)
        if repeats:
            repeated.append(f"repeated_keys_{index}")
        written: list[str] = []
        if source.reader == "read_json":
            _check_json_objects(db, index, read)
            described = db.execute(f"DESCRIBE rows_{index}").fetchall()
            check_internal_names(source.path, [row[0] for row in described])
            check_json_key_case(source, [row[0] for row in described])
            written = _read_as_written(db, index, read, as_text)
        columns, mixed = _json_as_text(db, index, written, decrypted)
        text.update(mixed + written)
        text.update(decrypted or ())
        if source.reader == "read_json":
            scalars = _scalar_columns(db, f"rows_{index}")
            typed_columns.update(set(scalars + mixed) - set(written))
        null_counts = add_counts(
            null_counts, _file_null_counts(db, index, read, dialects, settings)
        )
        joined = f" POSITIONAL JOIN written_{index}" if written else ""
        db.execute(
            f"CREATE TEMP VIEW raw_{index} AS SELECT rows_{index}.rowid AS _record, "
            f"{columns} FROM rows_{index}{joined}"
        )
    return Loaded(
        _counts(db, len(sources)),
        None,
        dialects,
        frozenset(text),
        frozenset(typed_columns),
        repeated_keys=tuple(repeated),
        null_counts=null_counts,
    )


def _load_rows(
    db: duckdb.DuckDBPyConnection,
    index: int,
    read: tuple[SourceFile, str],
    staging: Path,
    contract: ContractConfig | None,
) -> tuple[SourceFile, bool]:
    """Create table ``rows_N`` of a source file, setting aside malformed lines.

    A JSON-lines file that DuckDB cannot read as objects alone has its
    malformed lines stored for the quarantine (see `_json_lines`), and a
    copy without them is read instead.

    Args:
        read: The file and the SQL of its read.
        contract: The contract, whose columns a JSON-lines file without a
            single object is given.

    Returns:
        The file read, which is the copy when a line was malformed, and
        whether table ``repeated_keys_N`` was created.

    Raises:
        duckdb.Error: DuckDB cannot read the file, or its copy.
        IngestError: No line of a JSON-lines file is an object, and the
            contract names no column.
    """
    source, reader = read
    try:
        repeats = _create_rows(db, index, read, staging)
    except duckdb.Error:
        if source.reader != "read_json":
            raise
        found = _read_without_malformed(db, index, source, (staging, contract))
        if found is None:
            raise
        _replace_keyless_rows(db, index, found[0], contract)
        return found
    if source.reader != "read_json" or not _maybe_malformed(db, index):
        return source, repeats
    found = _read_without_malformed(db, index, source, (staging, contract))
    read_file, repeats = (source, repeats) if found is None else found
    _replace_keyless_rows(db, index, read_file, contract)
    return read_file, repeats


def _read_without_malformed(
    db: duckdb.DuckDBPyConnection,
    index: int,
    source: SourceFile,
    rules: tuple[Path, ContractConfig | None],
) -> tuple[SourceFile, bool] | None:
    """Create ``rows_N`` from a copy of a JSON-lines file without malformed lines.

    Returns None, creating nothing, when no line is malformed.
    """
    staging, contract = rules
    copy = replace(source, read_path=staging / f"valid_lines_{index}.jsonl")
    objects = set_aside_malformed(db, index, source.read_path, copy.read_path)
    if objects is None:
        return None
    db.execute(f"DROP TABLE IF EXISTS rows_{index}")
    # A first read that found repeated keys counted the malformed lines.
    db.execute(f"DROP TABLE IF EXISTS repeated_keys_{index}")
    if objects == 0:
        _create_contract_rows(db, index, source.path, contract)
        return copy, False
    return copy, _create_rows(db, index, (copy, _copy_sql(copy)), staging)


def _create_contract_rows(
    db: duckdb.DuckDBPyConnection,
    index: int,
    path: Path,
    contract: ContractConfig | None,
) -> None:
    """Create an empty ``rows_N`` with the contract's columns, for a file of no object.

    DuckDB reads such a file as one column named ``json``, which is not a
    column of the file. A CSV file whose every record is malformed keeps its
    header's columns, and this file keeps the contract's.

    Raises:
        IngestError: The contract names no column.
    """
    if not (contract and contract.columns):
        line, reason = db.execute(
            f"SELECT line, message FROM json_rejects_{index} ORDER BY line LIMIT 1"
        ).fetchall()[0]
        raise IngestError(
            f"{path}: no line is a JSON object, so the file has no columns; line "
            f"{line}: {reason}; write one object per line (JSON Lines), or declare "
            "the dataset's columns in its contract to quarantine every line"
        )
    _create_missing_rows(db, index, contract, 0)


def _replace_keyless_rows(
    db: duckdb.DuckDBPyConnection,
    index: int,
    file: SourceFile,
    contract: ContractConfig | None,
) -> None:
    """Give ``rows_N`` the contract's columns when no object of `file` has a key.

    Such a file contains only blank lines and ``{}`` lines, which DuckDB reads
    as one column named ``json``. Each ``{}`` is a row with every column
    missing, as it is in a file with keys, and a file of blank lines alone
    gets no row.

    Raises:
        IngestError: The contract names no column, so the file has none.
    """
    names = [row[0] for row in db.execute(f"DESCRIBE rows_{index}").fetchall()]
    if names != ["json"]:
        return
    objects = count_empty_objects(file.read_path)
    if objects is None:
        return
    if not (contract and contract.columns) and objects:
        raise IngestError(
            f"{file.path}: every JSON object of the file is empty ({{}}), so it "
            "has no columns; write each row's values as keys of its object, or "
            "declare the dataset's columns in its contract to store each {} as "
            "a row of missing values"
        )
    if not (contract and contract.columns):
        raise IngestError(
            f"{file.path}: the file has only blank lines and no JSON object, so "
            "it has no columns; write one object per line (JSON Lines), or "
            "declare the dataset's columns in its contract to store an empty "
            "version"
        )
    db.execute(f"DROP TABLE rows_{index}")
    _create_missing_rows(db, index, contract, objects)


def _create_missing_rows(
    db: duckdb.DuckDBPyConnection, index: int, contract: ContractConfig, count: int
) -> None:
    """Create ``rows_N`` of `count` rows with every contract column missing."""
    columns = ", ".join(
        f"NULL::{'VARCHAR' if rule.date_format else (rule.type or 'VARCHAR')} "
        f"AS {ident(name)}"
        for name, rule in contract.columns.items()
    )
    db.execute(
        f"CREATE TEMP TABLE rows_{index} AS SELECT {columns} FROM range({int(count)})"
    )


def _create_rows(
    db: duckdb.DuckDBPyConnection,
    index: int,
    read: tuple[SourceFile, str],
    staging: Path,
) -> bool:
    """Create table ``rows_N``; return whether table ``repeated_keys_N`` was too."""
    source, reader = read
    try:
        db.execute(f"CREATE TEMP TABLE rows_{index} AS SELECT * FROM {reader}")
    except duckdb.Error as exc:
        if REPEATED_KEY_ERROR not in str(exc):
            raise
        reader = _read_without_repeats(db, index, source, staging)
        db.execute(f"CREATE TEMP TABLE rows_{index} AS SELECT * FROM {reader}")
        return True
    return False


def _maybe_malformed(db: duckdb.DuckDBPyConnection, index: int) -> bool:
    """Return whether ``rows_N`` of a JSON-lines file may come from malformed lines.

    DuckDB reads the whole file as one column named ``json`` when a line
    contains an array or a single value, and a line of ``null`` as a row of
    NULLs, as it does ``{}``.
    """
    names = [row[0] for row in db.execute(f"DESCRIBE rows_{index}").fetchall()]
    if names == ["json"]:
        return True
    row = db.execute(
        f"SELECT EXISTS (FROM rows_{index} WHERE COLUMNS(*) IS NULL)"
    ).fetchall()
    return bool(row[0][0])


def _copy_sql(copy: SourceFile) -> str:
    # The copy's folder is named like a Hive partition (version=ID.tmp).
    return _other_sql(copy, hive_partitioning=False)


def _raise_unreadable(
    source: SourceFile, exc: duckdb.Error, dialect: Dialect | None, encoding: str
) -> NoReturn:
    """Raise an `IngestError` that names what makes DuckDB fail to read `source`."""
    if source.reader == "read_json":
        _raise_malformed_line(source)
    if source.reader == "read_csv" and only_blank_lines(source.read_path):
        raise IngestError(
            f"{source.path}: the file contains only blank lines; nothing to ingest"
        ) from None
    if source.reader == "read_csv" and _first_line_blank(source.read_path):
        raise IngestError(
            f"{source.path}, line 1: the line is empty, and the header "
            "must be the first line; remove the blank lines above it"
        ) from None
    if source.reader == "read_csv":
        assert dialect is not None
        check_line_breaks(source, encoding, dialect.quote)
    raise IngestError(
        f"{source.path}: cannot read file: {file_error(exc, source)}; "
        f"check that it is a complete {_FORMATS[source.reader]} file"
    ) from None


def _file_null_counts(
    db: duckdb.DuckDBPyConnection,
    index: int,
    source: SourceFile,
    dialects: list[Dialect] | None,
    settings: DatasetConfig,
) -> NullCounts:
    """Return the null counts of the columns of ``rows_N`` with a NULL.

    A CSV file's counts come from a read as text that skips malformed
    records, as the text read does. A Parquet file has no null tokens.
    """
    if source.reader == "read_parquet":
        return {}
    columns = null_columns(db, f"rows_{index}")
    if source.reader == "read_json":
        return json_null_counts(db, str(source.read_path), columns)
    assert dialects is not None
    return _csv_token_counts(
        db, source, dialects[index], settings, columns, ", ignore_errors=true"
    )


def _read_without_repeats(
    db: duckdb.DuckDBPyConnection, index: int, source: SourceFile, staging: Path
) -> str:
    """Return the read of a copy of a JSON-lines file without repeated keys.

    The repeated keys are stored in table ``repeated_keys_N`` (see
    `_repeated_keys`), so that their rows are quarantined.
    """
    copy = staging / f"without_repeats_{index}.jsonl"
    # A second read of the same ingest, as for printed rejections, finds the
    # copy of the first and logs nothing more.
    first = not copy.exists()
    repeats = write_without_repeats(source.read_path, copy)
    store_repeats(db, index, repeats)
    if first:
        logger.info(
            "JSON-lines objects repeat keys, rows quarantined file=%s keys=%d",
            source.path,
            len(repeats),
        )
    # The copy's folder is named like a Hive partition (version=ID.tmp).
    return _other_sql(replace(source, read_path=copy), hive_partitioning=False)


def _regex_columns(contract: ContractConfig | None) -> frozenset[str]:
    """Return the columns whose contract rule has a regex, which matches text."""
    if contract is None:
        return frozenset()
    return frozenset(n for n, rule in contract.columns.items() if rule.regex)


def _json_as_text(
    db: duckdb.DuckDBPyConnection,
    index: int,
    written: list[str],
    decrypted: frozenset[str] | None = None,
) -> tuple[str, list[str]]:
    """Return the select list of ``rows_N`` with JSON-typed columns as plain text.

    DuckDB's ``read_json`` types a column as JSON when its values have several
    JSON types, such as a number in one line and a string in the next. Cast
    to VARCHAR, a JSON string keeps its quotes, so each string value is
    unwrapped instead and any other value becomes its JSON text. A column in
    `written` takes its text from table ``written_N`` (`_read_as_written`),
    joined by position. A column in `decrypted` is decrypted to its text.
    Returns the select list and the names of the JSON-typed columns.
    """
    table = f"rows_{index}"
    described = db.execute(f"DESCRIBE {table}").fetchall()
    selects, mixed = [], []
    for name, kind, *_ in described:
        column = f"{table}.{ident(name)}"
        if decrypted and name in decrypted:
            selects.append(f"{DECRYPT}(CAST({column} AS VARCHAR)) AS {ident(name)}")
            continue
        text = f"CAST({column} AS VARCHAR)"
        if kind == "JSON":
            mixed.append(name)
            text = (
                f"CASE WHEN json_type({column}) = 'VARCHAR' "
                f"THEN json_extract_string({column}, '$') ELSE {text} END"
            )
        elif name not in written:
            selects.append(column)
            continue
        if name in written:
            # A nested value has no text in written_N, so it keeps DuckDB's.
            text = f"coalesce(written_{index}.{ident(name)}, {text})"
        selects.append(f"{text} AS {ident(name)}")
    return ", ".join(selects), mixed


def _scalar_columns(db: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """Return the columns of `table` typed as a scalar other than text."""
    return [
        name
        for name, kind, *_ in db.execute(f"DESCRIBE {table}").fetchall()
        if kind not in ("VARCHAR", "JSON")
        and not kind.endswith("]")
        and not kind.startswith(("STRUCT", "MAP", "UNION"))
    ]


def _read_as_written(
    db: duckdb.DuckDBPyConnection,
    index: int,
    source: SourceFile,
    as_text: frozenset[str],
) -> list[str]:
    """Store the text as written of `as_text` columns of ``rows_N`` in ``written_N``.

    DuckDB parses a JSON number and prints it back in its own form, such as
    ``-0.5`` for ``-0.50``, even in a column read as JSON. Python's parser
    returns each number's text unchanged, so the file is parsed again here,
    for the columns in `as_text` that are typed or of mixed JSON types. A
    text column already contains its strings as written. ``written_N`` has one
    row per object, in file order: a string as itself, a number as written,
    true and false as such, and NULL for null, a missing key or a nested
    value. Returns the columns stored.
    """
    table = f"rows_{index}"
    candidates = set(_scalar_columns(db, table))
    candidates |= {
        name
        for name, kind, *_ in db.execute(f"DESCRIBE {table}").fetchall()
        if kind == "JSON"
    }
    columns = sorted(candidates & as_text)
    if not columns:
        return []
    try:
        written = _parse_texts(source.read_path, columns)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        # NOTE: DuckDB read a line that Python's parser rejects, so the
        # values keep DuckDB's print.
        logger.warning(
            "JSON-lines file not parsed again, values shown as DuckDB prints "
            "them file=%s error=%s",
            source.path,
            exc,
        )
        return []
    rows = db.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    if written.num_rows != rows:
        # Rows paired by position with other lines would show other values.
        logger.warning(
            "JSON-lines rows differ from the parsed lines, values shown as "
            "DuckDB prints them file=%s rows=%d lines=%d",
            source.path,
            rows,
            written.num_rows,
        )
        return []
    db.register("written_texts", written)
    try:
        db.execute(f"CREATE TEMP TABLE written_{index} AS FROM written_texts")
    finally:
        db.unregister("written_texts")
    return columns


def _parse_texts(path: Path, columns: list[str]) -> pa.Table:
    """Parse each non-blank line of `path`, keeping `columns` as text as written."""
    texts: dict[str, list[str | None]] = {name: [] for name in columns}
    for _, line in non_blank_lines(path):
        row = json.loads(line, parse_float=str, parse_int=str, parse_constant=str)
        for name, values in texts.items():
            values.append(_written_text(row.get(name)))
    return pa.table({name: pa.array(v, pa.string()) for name, v in texts.items()})


def _written_text(value: object) -> str | None:
    """Return the text of a value that `json.loads` parsed with numbers as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return None


def _load_typed(
    db: duckdb.DuckDBPyConnection,
    sources: list[SourceFile],
    dialects: list[Dialect],
    settings: DatasetConfig,
    contract: ContractConfig | None,
    staging: Path,
    as_text: frozenset[str],
) -> Loaded | None:
    """Try the typed path; return None, with no file or view left, if a value failed."""
    files = []
    typed: set[str] = set()
    nan: set[str] = set()
    infinite: set[str] = set()
    doubles: set[str] | None = None
    null_counts: NullCounts = {}
    token_text: set[str] = set()
    for index, (source, dialect) in enumerate(zip(sources, dialects)):
        types = _typed_columns(dialect, settings, contract, as_text)
        types |= _worded_booleans(db, (source, dialect), settings, types, contract)
        if _ROW_NUMBER in types:
            _drop_typed(db, files)
            return None
        out = staging / f"raw_{index}.parquet"
        files.append(out)
        copied = _copy_typed(db, (source, dialect), settings, types, out)
        if copied is None:
            _drop_typed(db, files)
            return None
        written = copied.written
        null_counts = add_counts(null_counts, copied.null_counts)
        token_text.update(copied.kept_tokens)
        typed.update(name for name, kind in types.items() if kind != "VARCHAR")
        nan.update(_nan_columns(written, types))
        infinite.update(_unbounded_columns(written, types))
        double = {name for name, kind in types.items() if kind == "DOUBLE"}
        doubles = double if doubles is None else doubles & double
        # NOTE: Rows converted through this view cost more than rows with
        # NULLs: about 0.1 CPU s on a flights copy with NA for every missing
        # value (one-off runs on a shared 2-core machine, DuckDB 2.0.1).
        replaced = ", ".join(
            null_token_sql(name, [token for token, count in found.items() if count])
            for name, found in copied.kept_tokens.items()
        )
        db.execute(
            f"CREATE TEMP VIEW raw_{index} AS SELECT {_ROW_NUMBER} AS _record, "
            f"* EXCLUDE ({_ROW_NUMBER}){f' REPLACE ({replaced})' if replaced else ''} "
            f"FROM read_parquet({literal(str(out))}, file_row_number=true, "
            "hive_partitioning=false)"
        )
    return Loaded(
        _counts(db, len(sources)),
        files,
        dialects,
        typed_columns=frozenset(typed),
        nan_columns=frozenset(nan),
        finite_columns=frozenset((doubles or set()) - infinite),
        null_counts=null_counts,
        token_columns=frozenset(token_text),
    )


_NATIVE_ATTEMPTS = 2
"""Typed reads with one native null token before a read with every token.
Each failed read costs the part of the file read before the failure."""


@dataclass(frozen=True)
class _TypedCopy:
    """One CSV file written to Parquet by the typed read."""

    written: list[tuple]
    """The rows of ``COPY ... RETURN_STATS``."""
    null_counts: NullCounts
    kept_tokens: NullCounts = field(default_factory=dict)
    """Per text column that contains null tokens as text, their counts."""


def _copy_typed(
    db: duckdb.DuckDBPyConnection,
    read: tuple[SourceFile, Dialect],
    settings: DatasetConfig,
    types: Mapping[str, str],
    out: Path,
) -> _TypedCopy | None:
    """Write a CSV file's typed rows to `out`, counting its null tokens.

    The first read gives DuckDB only the native null token (see
    `_null_sources`). When a typed column contains another token, the file
    is read again with that token as the native one. When a typed column
    contains that one's native token too, the file is read with every
    token, and a read as text counts them.

    Returns:
        None when a value does not parse as its column's type.
    """
    source, dialect = read
    read_types, columns = _exact_columns(types)
    native, others = split_tokens(settings.null_values)
    tried = []
    while others and native not in tried and len(tried) < _NATIVE_ATTEMPTS:
        tried.append(native)
        guarded = (
            f"(SELECT {guard_sql(read_types, types, others)} FROM "
            f"{_csv_sql(source, dialect, settings, read_types, [native])}))"
        )
        try:
            written = _copy_rows(db, columns, guarded, out)
        except duckdb.Error as exc:
            token = raised_token(exc, others)
            if token is None:
                _log_typed_failure(source, exc)
                return None
            # A file whose typed columns write missing values as NA, say,
            # reads with that token given to DuckDB.
            native, others = split_tokens(settings.null_values, token)
        else:
            counted = _native_counts(db, written, types, (native, others), out)
            order = settings.null_values
            return replace(counted, null_counts=in_order(counted.null_counts, order))
    native, others = split_tokens(settings.null_values)
    try:
        every = _csv_sql(source, dialect, settings, read_types) + ")"
        written = _copy_rows(db, columns, every, out)
    except duckdb.Error as exc:
        _log_typed_failure(source, exc)
        return None
    nulls = parquet_null_counts(written, types)
    if not others:
        return _TypedCopy(written, {n: {native: c} for n, c in nulls.items() if c})
    found = [name for name, count in nulls.items() if count]
    counts = _csv_token_counts(db, source, dialect, settings, found)
    return _TypedCopy(written, counts)


def _native_counts(
    db: duckdb.DuckDBPyConnection,
    written: list[tuple],
    types: Mapping[str, str],
    tokens: tuple[str, tuple[str, ...]],
    out: Path,
) -> _TypedCopy:
    """Return the counts of a file that the first typed read wrote.

    Each NULL is the native token. Only the text columns whose range
    includes another token are read again to count them.
    """
    native, others = tokens
    text = [name for name, kind in types.items() if kind == "VARCHAR"]
    candidates = token_columns(written, text, others)
    kept_counts = parquet_token_counts(db, str(out), candidates, others)
    nulls = parquet_null_counts(written, types)
    counts: NullCounts = {}
    for name, native_count in nulls.items():
        other_counts = kept_counts.get(name, dict.fromkeys(others, 0))
        if native_count or any(other_counts.values()):
            counts[name] = {native: native_count, **other_counts}
    return _TypedCopy(written, counts, kept_counts)


def _copy_rows(
    db: duckdb.DuckDBPyConnection, columns: str, rows: str, out: Path
) -> list[tuple]:
    return db.execute(
        f"COPY (SELECT {columns} FROM {rows}) "
        f"TO {literal(str(out))} ({PARQUET_OPTIONS}, RETURN_STATS)"
    ).fetchall()


def _log_typed_failure(source: SourceFile, exc: duckdb.Error) -> None:
    # The read stops at the first value that does not parse as its column's
    # type, or at a record with the wrong number of fields.
    logger.debug(
        "typed read failed, reading as text file=%s error=%s",
        source.path,
        file_error(exc, source),
    )


def _csv_token_counts(
    db: duckdb.DuckDBPyConnection,
    source: SourceFile,
    dialect: Dialect,
    settings: DatasetConfig,
    columns: list[str],
    options: str = "",
) -> NullCounts:
    """Count each null token of `columns` in a read of the CSV file as text.

    Args:
        options: Further ``read_csv`` options, such as the text path's
            ``ignore_errors``.
    """
    text = {name: "VARCHAR" for name in dialect.columns}
    read = _csv_sql(source, dialect, settings, text, [UNUSED_NULL]) + options + ")"
    tokens = tuple(dict.fromkeys(settings.null_values))
    return token_counts(db, read, tokens, columns)


_EXACT_DOUBLE_LIMIT = 2**53
"""Magnitude from which a DOUBLE no longer represents every whole number exactly."""


def _first_line_blank(path: Path) -> bool:
    """Return whether the first line of `path`, after a UTF-8 BOM, is blank."""
    with path.open("rb") as handle:
        start = handle.read(4096).removeprefix(b"\xef\xbb\xbf")
    return not start.split(b"\n", 1)[0].strip()


def _exact_columns(types: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """Return the types to read a CSV file as and the SELECT list that converts them.

    DuckDB's CSV reader converts a value to BIGINT, BOOLEAN, DATE or TIMESTAMP
    as leniently as its casts (see `_types.exact_text_sql`), such as ``2.5``
    to 3 and ``yes`` to true. Integer columns are read as DOUBLE, and BOOLEAN,
    DATE and TIMESTAMP columns as text. A value that the cast would change
    raises an error, which sends the file to the text path: a fraction, or a
    number beyond 2**53 that a DOUBLE cannot hold exactly. A whole number
    written as ``1e3`` or ``1_000`` is stored as 1000, while the text path
    rejects it.
    """
    read_types = dict(types)
    columns = []
    for name, kind in types.items():
        v = ident(name)
        message = literal(f"a value of column {name!r} changes in a cast to {kind}")
        if kind in INTEGER_TYPES:
            # A one-off probe on the flights file (an estimate): these checks
            # added 0.07 s of CPU to a 0.50 s read, a pattern per value 0.18 s.
            read_types[name] = "DOUBLE"
            columns.append(_exact_integer_sql(v, kind, message))
            continue
        exact = exact_text_sql(v, kind)
        if exact is None:
            columns.append(v)
            continue
        read_types[name] = "VARCHAR"
        columns.append(
            f"CASE WHEN {v} IS NULL OR {exact} THEN CAST({v} AS {kind}) "
            f"ELSE error({message}) END AS {v}"
        )
    return read_types, ", ".join(columns)


def _exact_integer_sql(v: str, kind: str, message: str) -> str:
    """Return the cast of DOUBLE `v` to `kind`, which raises `message` on a change.

    A NULL makes the condition NULL, so it takes the cast. The infinities
    fail the bound, and so does NaN, because DuckDB orders NaN above every
    number. The error is the condition's branch rather than the cast. That way
    the typed read of the flights file took 0.01 to 0.02 CPU s less, in
    medians of 9 and 15 one-off alternated runs at a load of 7 to 10.
    """
    changed = f"{v} <> trunc({v}) OR abs({v}) >= {_EXACT_DOUBLE_LIMIT}"
    return (
        f"CASE WHEN {changed} THEN error({message}) ELSE CAST({v} AS {kind}) END AS {v}"
    )


def _unbounded_columns(written: list[tuple], types: Mapping[str, str]) -> list[str]:
    """Return the columns whose statistics do not bound them by finite numbers.

    Those are the columns with an infinity as min or max in the rows of
    ``COPY ... RETURN_STATS``, or whose min or max is not exact.
    """
    names = {ident(name): name for name in types} | {name: name for name in types}
    found = []
    for row in written:
        for key, stats in row[4].items():
            bounds = (stats.get("min"), stats.get("max"))
            exact = (stats.get("min_is_exact"), stats.get("max_is_exact"))
            if any(b in ("inf", "-inf") for b in bounds) or "false" in exact:
                found.append(names.get(key, key))
    return found


def _nan_columns(written: list[tuple], types: Mapping[str, str]) -> list[str]:
    """Return the columns with a NaN, from the rows of ``COPY ... RETURN_STATS``.

    DuckDB 2.0.1 returns a row per file written, whose ``column_statistics``
    maps each quoted column name to its statistics, with ``has_nan`` for a
    float column.
    """
    names = {ident(name): name for name in types} | {name: name for name in types}
    found = []
    for row in written:
        for key, stats in row[4].items():
            if stats.get("has_nan") == "true":
                found.append(names.get(key, key))
    return found


def _drop_typed(db: duckdb.DuckDBPyConnection, files: list[Path]) -> None:
    for index, path in enumerate(files):
        db.execute(f"DROP VIEW IF EXISTS raw_{index}")
        path.unlink(missing_ok=True)


def _typed_columns(
    dialect: Dialect,
    settings: DatasetConfig,
    contract: ContractConfig | None,
    as_text: frozenset[str],
) -> dict[str, str]:
    """Return the type to read each column as on the typed path."""
    types = {}
    rules = contract.columns if contract else {}
    for name in dialect.columns:
        kind = normalize_type(dialect.sniffed_types.get(name, "VARCHAR"))
        rule = rules.get(name)
        if rule is not None and rule.type is not None:
            kind = "VARCHAR" if rule.date_format else rule.type.upper()
        if kind not in _TYPED or name in as_text:
            kind = "VARCHAR"
        if kind == "DATE" and dialect.date_format not in (None, "%Y-%m-%d"):
            kind = "VARCHAR"
        if kind.startswith("TIMESTAMP") and not _iso(dialect.timestamp_format):
            kind = "VARCHAR"
        if kind == "DOUBLE" and settings.decimal_separator == ",":
            kind = "VARCHAR"
        types[name] = kind
    return types


def _worded_booleans(
    db: duckdb.DuckDBPyConnection,
    read: tuple[SourceFile, Dialect],
    settings: DatasetConfig,
    types: Mapping[str, str],
    contract: ContractConfig | None,
) -> dict[str, str]:
    """Return VARCHAR for sniffed BOOLEAN columns written with other words.

    DuckDB's sniffer also takes ``yes``, ``no``, ``t`` and ``f`` for
    BOOLEAN, which `exact_text_sql` does not. Such a column would fail the
    typed read at its first value and send the whole file to the slower text
    path, so a column whose sniffed rows are not all written as BOOLEAN is
    read as text here. A declared type is left as it is.
    """
    rules = contract.columns if contract else {}
    declared = {name for name, rule in rules.items() if rule.type is not None}
    sniffed = [
        name
        for name, kind in types.items()
        if kind == "BOOLEAN" and name not in declared
    ]
    if not sniffed:
        return {}
    source, dialect = read
    text = {name: "VARCHAR" for name in dialect.columns}
    checks = ", ".join(
        f"bool_and({exact_text_sql(ident(name), 'BOOLEAN')})" for name in sniffed
    )
    try:
        row = db.execute(
            f"SELECT {checks} FROM (SELECT * FROM "
            f"{_csv_sql(source, dialect, settings, text)}) LIMIT {SNIFF_ROWS})"
        ).fetchall()[0]
    except duckdb.Error:
        # The typed read reports what is wrong with the file.
        return {}
    return {name: "VARCHAR" for name, written in zip(sniffed, row) if not written}


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


_FIELD_COUNTS = (
    "' (' || regexp_extract(error_message, 'Found: ([0-9]+)', 1) || '; the "
    "header has ' || regexp_extract(error_message, 'Columns: ([0-9]+)', 1) || "
    "' columns)'"
)
STRAY_QUOTE_REASON = (
    "stray quote: the quoted field has text after its closing quote; write a "
    'quote inside a quoted value twice (""), or remove the quotes around the field'
)
"""Reason of a record whose quoted field goes on after its closing quote, as
in ``"x"y``. DuckDB 2.0.1 reports it as an unterminated quote, as it does a
quote that no later quote closes (see `_quote_errors`)."""
_LONG_RECORD = (
    "'record too long: ' || regexp_extract(error_message, 'Actual Size: ?([0-9]+)', "
    "1) || ' bytes, more than the maximum of ' || "
    "(CAST(regexp_extract(error_message, 'line size of ([0-9]+)', 1) AS BIGINT) - 1)"
    " || ' bytes; shorten the record, or raise the dataset''s max_line_bytes "
    "to its size or more'"
)
"""SQL of the reason of a record longer than ``max_line_size``, which names
the largest size read (see `line_size_option`)."""
_REJECT_MESSAGE = (
    "CASE CAST(error_type AS VARCHAR) "
    f"WHEN 'TOO MANY COLUMNS' THEN 'too many fields' || {_FIELD_COUNTS} "
    f"WHEN 'MISSING COLUMNS' THEN 'too few fields' || {_FIELD_COUNTS} "
    f"WHEN 'UNQUOTED VALUE' THEN {literal(STRAY_QUOTE_REASON)} "
    f"WHEN 'LINE SIZE OVER MAXIMUM' THEN {_LONG_RECORD} "
    "ELSE CAST(error_type AS VARCHAR) || ': ' || error_message END"
)
"""SQL of a rejected record's reason: field counts in words for a record of
too many or too few fields, `STRAY_QUOTE_REASON` for a quote error, the size
and limit of a record longer than ``max_line_size``, DuckDB's type and
message for the rest."""
_REJECT_ORDER = (
    "CASE CAST(error_type AS VARCHAR) WHEN 'UNQUOTED VALUE' THEN 0 "
    "WHEN 'TOO MANY COLUMNS' THEN 1 WHEN 'MISSING COLUMNS' THEN 1 ELSE 2 END, "
    "CASE CAST(error_type AS VARCHAR) WHEN 'TOO MANY COLUMNS' "
    "THEN -CAST(column_idx AS BIGINT) ELSE CAST(column_idx AS BIGINT) END"
)
"""SQL ordering the rejects of one record so that the first one is kept.

DuckDB 2.0.1 stores a reject per missing field and per extra field, each
with a field count, so the kept one has the fewest fields found of a short
record and the most of a long record. A quote error comes first, because
the wrong field counts stored with it follow from it."""


def malformed_records(db: duckdb.DuckDBPyConnection, files: int) -> str | None:
    """Return SQL of the records that no row could be read from.

    Those are the CSV records that the text read could not split into the
    columns, and the malformed lines of JSON-lines files (see `_json_lines`).
    The rows are ``(_file, line, line_position, column_name, csv_line,
    message, error_type)``, one per record, where ``csv_line`` is the
    record's text. For a CSV record, ``line`` is DuckDB's count of records and
    line breaks before the record (the record's line when every record is
    one line) and ``line_position`` a byte offset within the record or the
    blank lines before it. A JSON-lines line has its own line and no
    position or error type. None when there are no such records, or the CSV
    files were read on the typed path.
    """
    present = {
        row[0]
        for row in db.execute(
            "SELECT table_name FROM duckdb_tables() WHERE temporary"
        ).fetchall()
    }
    selects = []
    for index in range(files):
        if f"text_rejects_{index}" in present:
            # The rejects of one record share their line_byte_position.
            selects.append(
                f"SELECT {index} AS _file, CAST(line AS BIGINT) AS line, "
                "CAST(line_byte_position AS BIGINT) AS line_position, column_name, "
                f"csv_line, {_REJECT_MESSAGE} AS message, "
                "CAST(error_type AS VARCHAR) AS error_type "
                f"FROM text_rejects_{index} "
                "QUALIFY row_number() OVER (PARTITION BY line_byte_position "
                f"ORDER BY {_REJECT_ORDER}) = 1"
            )
        elif f"json_rejects_{index}" in present:
            selects.append(
                f"SELECT {index} AS _file, line, NULL::BIGINT AS line_position, "
                "NULL::VARCHAR AS column_name, text AS csv_line, message, "
                f"NULL::VARCHAR AS error_type FROM json_rejects_{index}"
            )
    return " UNION ALL ".join(selects) or None


def _csv_sql(
    source: SourceFile,
    dialect: Dialect,
    settings: DatasetConfig,
    types: Mapping[str, str],
    null_values: Sequence[str] | None = None,
) -> str:
    """Return ``read_csv(...`` without its closing parenthesis.

    Args:
        null_values: The null strings; the dataset's `null_values` when None.
    """
    if null_values is None:
        null_values = settings.null_values
    nulls = "[" + ", ".join(literal(v) for v in null_values) + "]"
    columns = (
        "{" + ", ".join(f"{literal(n)}: {literal(t)}" for n, t in types.items()) + "}"
    )
    limit = settings.max_line_bytes
    return (
        f"read_csv({literal(str(source.read_path))}, header=true, auto_detect=false, "
        f"delim={literal(dialect.delimiter)}, quote={literal(dialect.quote)}, "
        f"escape={literal(dialect.escape)}, nullstr={nulls}, "
        f"encoding={literal(settings.encoding)}, columns={columns}"
        + (f", max_line_size={line_size_option(limit)}" if limit is not None else "")
    )


def _other_sql(source: SourceFile, hive_partitioning: bool = True) -> str:
    path = literal(str(source.read_path))
    if source.reader == "read_parquet":
        return f"read_parquet({path})"
    hive = "" if hive_partitioning else ", hive_partitioning=false"
    # Without map_inference_threshold=-1, DuckDB 2.0.1 reads a file whose
    # objects have 200 or more distinct keys as one MAP column.
    return (
        f"read_json({path}, format='newline_delimited', sample_size=-1, "
        f"map_inference_threshold=-1{hive})"
    )


def _check_json_objects(
    db: duckdb.DuckDBPyConnection, index: int, file: InputFile
) -> None:
    """Raise for the first object of a JSON-lines file with an empty key or NUL.

    When any object has an empty key, DuckDB reads the whole file as one
    column named ``json`` with each line as one value. Only a table of that
    one column is scanned again in Python. Lines that contain no object were
    set aside before (see `_json_lines`), so `file` may be read from a copy
    without them, at the same line numbers.
    """
    names = [row[0] for row in db.execute(f"DESCRIBE rows_{index}").fetchall()]
    if any("\0" in name for name in names):
        _raise_nul_key(file)
    if names != ["json"]:
        return
    path = file.path
    for number, line in non_blank_lines(file.read_path):
        value = json.loads(line)
        if isinstance(value, dict) and "" in value:
            raise IngestError(
                f'{path}, line {number}: the key "" is an empty column name; '
                "name the column, or remove the key from that object"
            )


def _raise_nul_key(file: InputFile) -> None:
    """Raise for the first line of a JSON-lines file with a NUL byte in a key."""
    path = file.path
    for number, line in non_blank_lines(file.read_path):
        value = json.loads(line)
        if not isinstance(value, dict):
            continue
        for key in value:
            if "\0" in key:
                shown = key.replace("\0", "\\0")
                raise IngestError(
                    f"{path}, line {number}: the key '{shown}' contains a NUL "
                    "byte (0x00); remove NUL bytes from the file"
                )


def _raise_malformed_line(file: InputFile) -> None:
    """Raise for the first line of a JSON-lines file that is not valid JSON.

    DuckDB 2.0's reader error names the line after the malformed one, so the file
    is scanned again here. Returns when every line parses, and the caller
    then reports DuckDB's error.
    """
    path = file.path
    for number, line in non_blank_lines(file.read_path):
        try:
            # Without its line break, an object cut short at the end of the
            # line has its error at the line's last column.
            json.loads(line.rstrip(b"\r\n"))
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
