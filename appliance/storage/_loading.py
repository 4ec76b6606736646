"""Loading source files into DuckDB tables ``raw_0``, ``raw_1``, ... for ingest.

CSV files take one of two paths. The typed path reads each column as the
type DuckDB's sniffer guessed (or the contract declares) and records every
value that does not parse. When no value fails, every row was checked
against those types, which is as good as inferring them over the whole file
and much faster. When any value fails, or a guess is not one the appliance's
rules allow (a date in a non-ISO format), the files are read again as text.
Then `_types.infer_types` and the contract checks decide each value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import duckdb

from appliance.config import ContractConfig, DatasetConfig
from appliance.errors import IngestError
from appliance.storage._sources import Dialect, SourceFile, sniff_dialect

logger = logging.getLogger(__name__)

_TYPED = ("BIGINT", "DOUBLE", "BOOLEAN", "DATE", "TIMESTAMP", "TIMESTAMPTZ", "VARCHAR")
_ALIASES = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}


def normalize_type(kind: str) -> str:
    """Return the short name of a DuckDB type, such as TIMESTAMPTZ."""
    return _ALIASES.get(kind, kind)


def load_sources(
    db: duckdb.DuckDBPyConnection,
    sources: list[SourceFile],
    settings: DatasetConfig,
    contract: ContractConfig | None,
) -> list[int]:
    """Create table ``raw_N`` for each source file; return their row counts.

    Raises:
        IngestError: A file cannot be read.
    """
    if sources[0].reader == "read_csv":
        dialects = [
            sniff_dialect(db, s.path, settings.delimiter, settings.encoding)
            for s in sources
        ]
        if _load_typed(db, sources, dialects, settings, contract):
            return _counts(db, len(sources))
        readers = [
            _text_csv_sql(i, s, d, settings)
            for i, (s, d) in enumerate(zip(sources, dialects))
        ]
    else:
        readers = [_other_sql(source) for source in sources]
    for index, (source, reader) in enumerate(zip(sources, readers)):
        try:
            db.execute(f"CREATE TEMP TABLE raw_{index} AS SELECT * FROM {reader}")
        except duckdb.Error as exc:
            raise IngestError(f"{source.path}: cannot read file: {exc}") from None
    return _counts(db, len(sources))


def _load_typed(
    db: duckdb.DuckDBPyConnection,
    sources: list[SourceFile],
    dialects: list[Dialect],
    settings: DatasetConfig,
    contract: ContractConfig | None,
) -> bool:
    """Try the typed path; return False, with no table left, if any value failed."""
    for index, (source, dialect) in enumerate(zip(sources, dialects)):
        types = _typed_columns(dialect, settings, contract)
        reader = _csv_sql(source, dialect, settings, types) + (
            f", ignore_errors=true, store_rejects=true, rejects_table='rejects_{index}'"
            f", rejects_scan='rejects_scan_{index}')"
        )
        try:
            db.execute(f"CREATE TEMP TABLE raw_{index} AS SELECT * FROM {reader}")
            failed = db.execute(f"SELECT count(*) FROM rejects_{index}").fetchall()
        except duckdb.Error as exc:
            logger.debug("typed read failed file=%s error=%s", source.path, exc)
            failed = [(1,)]
        if failed[0][0]:
            logger.debug(
                "typed read rejected values, reading as text file=%s", source.path
            )
            for created in range(index + 1):
                db.execute(f"DROP TABLE IF EXISTS raw_{created}")
            return False
    return True


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

    The rows are ``(_file, line, column_name, csv_line, message)``; None when
    the files were read on the typed path, which has no such records.
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
        f"SELECT {index} AS _file, CAST(line AS BIGINT) AS line, column_name, "
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
    return f"read_json({path}, format='newline_delimited', sample_size=-1)"


def _counts(db: duckdb.DuckDBPyConnection, files: int) -> list[int]:
    return [
        db.execute(f"SELECT count(*) FROM raw_{index}").fetchall()[0][0]
        for index in range(files)
    ]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
