"""Checks of the dataset settings and contracts declared in the configuration.

Ingest hands these values to DuckDB: a contract's types to ``CAST``, its
``min`` and ``max`` to comparisons and the date formats to ``strptime``. A
value DuckDB rejects would fail every ingest with a raw DuckDB error, and a
``partition_by`` that names no column would leave the files unpartitioned.
So `load_config`, and with it a SIGHUP reload, rejects such values first and
names the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from appliance.errors import ConfigError
from appliance.sqltypes import INTEGER_TYPES

NUMERIC_TYPES = (*INTEGER_TYPES, "FLOAT", "DOUBLE", "DECIMAL")
"""Contract types that ``min`` and ``max`` apply to. The bounds are numbers,
and DuckDB 2.0.1 rejects comparing a number with a VARCHAR, BOOLEAN, DATE or
TIMESTAMP value."""
CONTRACT_TYPES = (
    *NUMERIC_TYPES,
    "BOOLEAN",
    "VARCHAR",
    "DATE",
    "TIME",
    "TIMESTAMP",
    "TIMESTAMPTZ",
    "INTERVAL",
    "UUID",
    "BLOB",
)
"""DuckDB types a contract column may declare, by their DuckDB names.

Ingest converts text to each of them, and `appliance.storage._types` handles
the integer, float, DECIMAL, BOOLEAN, DATE and TIMESTAMP ones with exact
conversions. DuckDB's other names for these types, such as ``INT`` or
``TEXT``, are accepted, and DECIMAL takes a width and scale, such as
``DECIMAL(10,2)``."""
MAX_LINE_BYTES = 1 << 40
"""Largest ``max_line_bytes`` accepted, 1 TiB. DuckDB 2.0.1 reads a whole
record into memory, and rejects a ``max_line_size`` above about 2**60 only
when it reads a file."""
_TYPE_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9_ ]*(\(\s*[0-9]+\s*(,\s*[0-9]+\s*)?\))?")
_LONG_NAMES = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}
"""DuckDB's names of resolved types that differ from those in `CONTRACT_TYPES`."""


def check_datasets(datasets: Mapping[str, Any], source: Path) -> None:
    """Reject dataset settings and contract values that ingest cannot apply.

    Args:
        datasets: `DatasetConfig` of each dataset, by name.
        source: The configuration file, named in the message.

    Raises:
        ConfigError: Naming the key, the value and what to write instead.
    """
    for dataset in datasets.values():
        _check_csv_settings(dataset, source)
    checked = [d for d in datasets.values() if d.date_formats or d.contract]
    if not checked:
        return
    # Imported here, so that a configuration without these values loads
    # without importing DuckDB.
    import duckdb

    with duckdb.connect() as db:
        for dataset in checked:
            for date_format in dataset.date_formats:
                where = f"[datasets.{dataset.name}] date_formats"
                _check_date_format(db, date_format, where, source)
            columns = dataset.contract.columns if dataset.contract else {}
            for column, rule in columns.items():
                where = f"[datasets.{dataset.name}.contract.columns.{column}]"
                _check_rule(db, rule, where, source)


def _check_csv_settings(dataset: Any, source: Path) -> None:
    limit = dataset.max_line_bytes
    if limit is not None and not 1 <= limit <= MAX_LINE_BYTES:
        raise ConfigError(
            f"[datasets.{dataset.name}] max_line_bytes = {limit} in {source} is "
            f"out of range; set a number of bytes from 1 to {MAX_LINE_BYTES}, "
            "at least the size of the longest record in the dataset's CSV files"
        )
    separator = dataset.decimal_separator
    if separator is not None and dataset.delimiter == separator:
        raise ConfigError(
            f"[datasets.{dataset.name}] delimiter = {dataset.delimiter!r} and "
            f"decimal_separator = {separator!r} in {source} are the same "
            "character, so a number such as 1,5 would read as two fields; set "
            "delimiter = ';' for files with decimal commas"
        )


def _check_rule(db: Any, rule: Any, where: str, source: Path) -> None:
    kind = None if rule.type is None else _contract_type(db, rule.type, where, source)
    for bound in ("min", "max"):
        value = getattr(rule, bound)
        if value is None or kind is None or kind in NUMERIC_TYPES:
            continue
        raise ConfigError(
            f"{where} {bound} = {value:g} in {source} applies only to the "
            f"numeric types ({', '.join(NUMERIC_TYPES)}), and the column's type "
            f"is {rule.type}; remove {bound}, or use allowed or regex to check "
            "its values"
        )
    for date_format in rule.date_formats:
        _check_date_format(db, date_format, f"{where} date_format", source)


def _contract_type(db: Any, text: str, where: str, source: Path) -> str:
    """Return the `CONTRACT_TYPES` name of DuckDB type `text`.

    DuckDB resolves the name, so each of its names of a type is accepted.

    Raises:
        ConfigError: DuckDB does not know the type, or contracts do not
            support it.
    """
    import duckdb

    reason = ""
    resolved = ""
    if _TYPE_TEXT.fullmatch(text.strip()):
        try:
            rows = db.execute(f"SELECT typeof(CAST(NULL AS {text}))").fetchall()
            resolved = str(rows[0][0])
        except duckdb.Error as exc:
            reason = f" ({str(exc).splitlines()[0]})"
    name = _LONG_NAMES.get(resolved, resolved.partition("(")[0])
    if name in CONTRACT_TYPES:
        return name
    raise ConfigError(
        f"{where} type = {text!r} in {source} is not a type that contracts "
        f"support{reason}; use one of {', '.join(CONTRACT_TYPES)}, or another "
        "DuckDB name of one of them, such as INT or TEXT"
    )


def _check_date_format(db: Any, date_format: str, where: str, source: Path) -> None:
    """Reject a format that DuckDB's ``strptime``, which ingest runs, rejects.

    DuckDB parses the format before any value, so an empty text is enough.
    """
    import duckdb

    try:
        db.execute("SELECT try_strptime('', $1)", [date_format])
    except duckdb.Error as exc:
        reason = str(exc).splitlines()[0].removeprefix("Invalid Input Error: ")
        raise ConfigError(
            f"{where} {date_format!r} in {source} is not a valid strptime format: "
            f"{reason}; use directives such as %Y, %m, %d, %H, %M and %S, as in "
            "'%d.%m.%Y'"
        ) from None
