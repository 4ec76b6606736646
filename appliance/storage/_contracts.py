"""Dataset contracts: the rules rows must keep, as SQL that finds the rows that don't.

A contract is declared in the configuration or, when it is not, taken from the
schema of the dataset's first version. `violations_sql` returns one query that
lists every broken rule as ``(_file, _record, column_name, value, reason)``;
`schema_changes` compares a new file's columns with the contract. Besides
the contract's rules, every text value is checked for NUL bytes and every
FLOAT or DOUBLE value for infinity, which is quarantined unless the column's
rule sets ``allow_infinity``. NaN in a numeric column is a missing value
(`_types.stored_sql`), so it passes every rule but ``nullable = false``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from appliance.config import ColumnRule, ContractConfig
from appliance.errors import IngestError
from appliance.storage._sql import ident, literal
from appliance.storage._types import (
    FLOAT_TYPES,
    INTEGER_TYPES,
    ISO_DATE_FORMAT,
    ISO_TIME_FORMATS,
    NUMERIC_TYPES,
    ColumnType,
    iso_formats,
    nan_sql,
    stored_sql,
)

STAGED = "staged_rows"
"""Table or view of the incoming rows with ``_file`` and ``_record`` columns."""
UNIQUE_KEY_REASON = "duplicate unique key"
"""Start of the reason of a row whose unique key another row has."""


@dataclass(frozen=True)
class StoredRule(ColumnRule):
    """Rule of a column of a contract taken from the dataset's first version."""

    more_formats: tuple[str, ...] = ()
    """Further strptime formats of the column, as in `ColumnType.more_formats`."""

    @property
    def date_formats(self) -> tuple[str, ...]:
        """`date_format` and `more_formats`, in the order they are tried.

        The ISO 8601 formats of the column's type follow, because the
        dataset's ``date_formats`` are tried besides ISO 8601, and the files
        of the first version need not have had an ISO 8601 value.
        """
        formats = (*super().date_formats, *self.more_formats)
        if not formats:
            return ()
        iso = iso_formats((self.type or "").upper())
        return tuple(dict.fromkeys((*formats, *iso)))


def contract_from_schema(schema: Mapping[str, str]) -> ContractConfig:
    """Return the contract implied by a version's schema: its column types only."""
    return ContractConfig(
        columns={name: ColumnRule(type=kind) for name, kind in schema.items()}
    )


def column_types(
    contract: ContractConfig, inferred: Mapping[str, ColumnType]
) -> dict[str, ColumnType]:
    """Return the type of every column of the file, then of the contract's others.

    The contract decides the type of its columns; a column it does not name
    keeps its inferred type.
    """
    types: dict[str, ColumnType] = {}
    for name in [*inferred, *(n for n in contract.columns if n not in inferred)]:
        seen = inferred.get(name)
        rule = contract.columns.get(name)
        if rule is None or rule.type is None:
            types[name] = seen or ColumnType("VARCHAR")
            continue
        kind = rule.type.upper()
        decimal_comma = bool(seen and seen.decimal_comma and kind in NUMERIC_TYPES)
        first, *more = rule.date_formats or (None,)
        types[name] = ColumnType(kind, decimal_comma, first, tuple(more))
    return types


def schema_changes(
    contract: ContractConfig,
    source_types: Mapping[str, str | None],
    known: Collection[str] | None = None,
) -> list[str]:
    """List the columns that are new, missing or of another type than the contract.

    A column is new when it is not in `known`, the contract's columns by
    default. A source type of None (a column without values) is not compared.
    """
    known = contract.columns if known is None else known
    changes = []
    for name, kind in source_types.items():
        if name not in known:
            changes.append(f"new column {name!r} of type {kind or 'unknown'}")
    for name, rule in contract.columns.items():
        if name not in source_types:
            changes.append(f"missing column {name!r}; its values are read as missing")
        elif rule.type and not _same_values(source_types[name], rule):
            kind = rule.type.upper()
            changes.append(
                f"column {name!r} is {kind} in the contract and "
                f"{source_types[name]} in the file; values are converted to "
                f"{kind}, and a value that does not convert is quarantined"
            )
    return changes


def retyped_columns(
    contract: ContractConfig,
    latest: tuple[str, Mapping[str, str]],
    stored_types: Mapping[str, str | None],
    dataset: str,
) -> list[str]:
    """List the columns that the new version stores in another type than the
    latest version, among those that the contract does not name.

    Args:
        latest: The latest version's reference (DATASET@VERSION) and schema.
        stored_types: The new version's type of each column of the files,
            None for a column without a value, which is not compared.
    """
    reference, schema = latest
    changes = []
    for name, kind in stored_types.items():
        before = schema.get(name)
        if kind is None or before in (None, kind) or name in contract.columns:
            continue
        changes.append(
            f"column {name!r} is {before} in {reference} and {kind} in these "
            f"files, so the new version stores it as {kind}; declare its type in "
            f"[datasets.{dataset}.contract] to keep {before} and quarantine the "
            "values that do not convert"
        )
    return changes


def _same_values(source: str | None, rule: ColumnRule) -> bool:
    """Tell whether values of type `source` keep their value as the rule's
    type, as whole numbers do as DOUBLE and text does in the rule's
    `date_format`, so no change is reported."""
    kind = (rule.type or "").upper()
    if source in (None, kind):
        return True
    if source == "VARCHAR" and rule.date_format is not None:
        return True
    if source in INTEGER_TYPES:
        wider = kind == "BIGINT" and source not in ("UBIGINT", "HUGEINT")
        return wider or kind in ("FLOAT", "DOUBLE", "HUGEINT")
    return source == "FLOAT" and kind == "DOUBLE"


def violations_sql(
    contract: ContractConfig,
    types: Mapping[str, ColumnType],
    source_types: Mapping[str, str],
    parent_scan: str | None = None,
    fitting: Mapping[str, ColumnType] | None = None,
    dataset: str = "NAME",
    finite: Collection[str] = (),
    nul_free: Collection[str] = (),
) -> str:
    """Return a query listing every broken rule of the rows in `STAGED`.

    Args:
        contract: Rules to check.
        types: Target type of each column.
        source_types: Type of each column in `STAGED` (VARCHAR for CSV text).
        parent_scan: SQL of the parent version's rows; when given, a unique key
            already present there is a violation too (append mode).
        fitting: Types that every value of the staged rows is known to convert
            to (inferred from these rows); their conversion is not checked again.
        dataset: Name of the dataset, for the configuration table that a
            message tells to change.
        finite: Float columns of `STAGED` known to hold no infinity, such as
            from the Parquet statistics of the typed read. A column stored in
            its staged type is not checked for infinities.
        nul_free: Text columns of `STAGED` known to hold no NUL byte, such
            as those read from CSV files without a 0x00 byte. They are not
            checked for one.
    """
    parts = []
    for name, column in types.items():
        source = source_types.get(name, "VARCHAR")
        value = stored_sql(name, column, source)
        nan = nan_sql(name, column, source)
        raw = ident(name)
        # A typed column's text is DuckDB's print of the value, such as -0.5
        # for "-0.50". CSV and JSON-lines files are staged with the columns
        # that a regex matches or the quarantine shows read as text as written
        # (`_staging.stage_checked`). A Parquet file stores no text, so its
        # values show, and match a regex, as printed.
        text = f"CAST({raw} AS VARCHAR)"
        if fitting is None or fitting.get(name) != column:
            invalid = f"{raw} IS NOT NULL AND ({value}) IS NULL"
            parts.append(
                _select(
                    name,
                    text,
                    f"'value \"' || {text} || '\" is not a valid {column.type}"
                    f"{_conversion_hint(name, column, dataset)}'",
                    invalid if nan is None else f"{invalid} AND NOT ({nan})",
                )
            )
        if source == "VARCHAR" and name not in nul_free:
            parts.append(_nul_check(name))
        rule = contract.columns.get(name)
        checks_finite = column.type in FLOAT_TYPES and not (
            rule and rule.allow_infinity
        )
        unchanged_finite = name in finite and source == column.type
        if checks_finite and not unchanged_finite:
            parts.append(_infinity_check(name, value, text, dataset))
        if rule is not None:
            parts += _rule_checks(name, rule, value, text, nan, checks_finite)
    if contract.unique_key:
        _check_key_columns(contract.unique_key, types, dataset)
        broken = "\nUNION ALL\n".join(parts) if parts else None
        parts.append(
            _unique_check(contract.unique_key, types, source_types, parent_scan, broken)
        )
    if not parts:
        return _EMPTY
    return "\nUNION ALL\n".join(parts)


_EMPTY = (
    "SELECT NULL::BIGINT AS _file, NULL::BIGINT AS _record, NULL::VARCHAR AS "
    "column_name, NULL::VARCHAR AS value, NULL::VARCHAR AS reason WHERE false"
)


def _nul_check(name: str) -> str:
    """Return the check that finds text values holding a NUL byte.

    DuckDB reads a NUL byte in a CSV or JSON string as part of the value,
    and tools that treat text as C strings cut the value there. Such a row
    is quarantined, with the value shown as ``\\0`` at the NUL.
    """
    raw = ident(name)
    shown = f"replace({raw}, chr(0), '\\0')"
    return _select(
        name,
        shown,
        "'value \"' || "
        + shown
        + " || '\" contains a NUL byte (0x00) at character ' || "
        + f"instr({raw}, chr(0)) || '; remove NUL bytes from the source'",
        f"contains({raw}, chr(0))",
    )


def _conversion_hint(name: str, column: ColumnType, dataset: str) -> str:
    """Return how to write a value of `column`'s type, escaped for SQL."""
    if column.type == "BOOLEAN":
        # The forms that `_types.exact_text_sql` passes.
        return "; write it as true or false (in any case), 0 or 1"
    return _date_hint(name, column, dataset)


def _date_hint(name: str, column: ColumnType, dataset: str) -> str:
    """Return how to read a date or time column's other format, escaped for SQL."""
    if not column.type.startswith(("DATE", "TIMESTAMP")):
        return ""
    where = f"[datasets.{dataset}.contract.columns.{name}]"
    if column.date_format is not None:
        return _escape(_format_hint(column.date_formats, where))
    if column.type == "DATE":
        return _escape(
            f"; write it as an ISO 8601 date without a time, such as 2024-01-31, "
            f"or declare its strptime format, such as date_format = '%m/%d/%Y', "
            f"in {where}"
        )
    if column.type == "TIMESTAMP":
        return _escape(
            f"; write it in ISO 8601 without a UTC offset or time zone name, "
            f"such as 2024-01-31 09:00:00, or declare type = 'TIMESTAMPTZ' or "
            f"its strptime format, such as date_format = '%m/%d/%Y %H:%M', in "
            f"{where}"
        )
    return _escape(
        f"; write it in ISO 8601, such as 2024-01-31 or 2024-01-31 09:00:00, or "
        f"declare its strptime format, such as date_format = '%m/%d/%Y %H:%M', in "
        f"{where}"
    )


def _format_hint(formats: tuple[str, ...], where: str) -> str:
    """Return how to write a value of a column of strptime `formats`.

    The ISO 8601 formats are named as ISO 8601 before the others.
    """
    iso = (ISO_DATE_FORMAT, *ISO_TIME_FORMATS)
    others = tuple(fmt for fmt in formats if fmt not in iso)
    listed = " or ".join(f"'{fmt}'" for fmt in others or formats)
    hint = f"; write it in the date format {listed}"
    if others and len(others) < len(formats):
        hint = f"; write it in ISO 8601 or in the date format {listed}"
    formats = others or formats
    long_years = [fmt for fmt in formats if "%Y" in fmt]
    if not long_years:
        return hint
    short = long_years[0].replace("%Y", "%y")
    hint += ", whose %Y is a year of four digits, or "
    if len(formats) == 1:
        return (
            hint + f"declare date_format = '{short}' in {where} for years of two digits"
        )
    return hint + f"add '{short}' to date_format in {where} for years of two digits"


def _infinity_check(name: str, value: str, text: str, dataset: str) -> str:
    """Return the check that finds infinite values.

    The predict route rejects an infinite input, so a model should not be
    trained on one either.
    """
    return _select(
        name,
        text,
        f"'value \"' || {text} || '\" is not a finite number; fix it, or set "
        f"allow_infinity = true in "
        f"[datasets.{_escape(dataset)}.contract.columns.{_escape(name)}]'",
        f"isinf({value})",
    )


def _rule_checks(
    name: str,
    rule: ColumnRule,
    value: str,
    text: str,
    nan: str | None,
    finite: bool = False,
) -> list[str]:
    """Return the SQL checks of `rule`.

    When `finite` is true, `_infinity_check` already rejects an infinite value,
    so the range checks skip it and the row gets one reason, not two.
    """
    raw = ident(name)
    checks = []
    finite_only = f"NOT isinf({value}) AND " if finite else ""
    if not rule.nullable:
        missing = f"{raw} IS NULL" if nan is None else f"{raw} IS NULL OR ({nan})"
        checks.append(
            _select(
                name,
                f"CAST({raw} AS VARCHAR)",
                f"CASE WHEN {raw} IS NULL THEN 'missing value in a column that is "
                "not nullable' ELSE 'missing value (NaN) in a column that is not "
                "nullable' END",
                missing,
            )
        )
    if rule.min is not None:
        checks.append(
            _select(
                name,
                text,
                f"'value \"' || {text} || '\" is below the minimum {rule.min:g}'",
                f"{finite_only}({value}) < {rule.min!r}",
            )
        )
    if rule.max is not None:
        checks.append(
            _select(
                name,
                text,
                f"'value \"' || {text} || '\" is above the maximum {rule.max:g}'",
                f"{finite_only}({value}) > {rule.max!r}",
            )
        )
    if rule.allowed is not None:
        allowed = ", ".join(literal(item) for item in rule.allowed)
        checks.append(
            _select(
                name,
                text,
                f"'value \"' || {text} || '\" is not an allowed category; allowed "
                f"values: {_escape(_allowed_list(rule.allowed))}'",
                f"{raw} IS NOT NULL AND CAST(({value}) AS VARCHAR) NOT IN ({allowed})",
            )
        )
    if rule.regex is not None:
        checks.append(
            _select(
                name,
                text,
                f"'value \"' || {text} || '\" does not match {_escape(rule.regex)}'",
                f"{raw} IS NOT NULL AND NOT regexp_full_match({text}, "
                f"{literal(rule.regex)})",
            )
        )
    return checks


def _check_key_columns(
    key: tuple[str, ...], types: Mapping[str, ColumnType], dataset: str
) -> None:
    """Raise `IngestError` when a unique key column is not among the rows' columns."""
    for name in key:
        if name not in types:
            raise IngestError(
                f"unique_key column {name!r} of [datasets.{dataset}.contract] is "
                f"not a column of the ingested rows; columns: {', '.join(types)}. "
                "Fix unique_key or add the column to the files"
            )


def _unique_check(
    key: tuple[str, ...],
    types: Mapping[str, ColumnType],
    source_types: Mapping[str, str],
    parent_scan: str | None,
    broken: str | None = None,
) -> str:
    """Return the check that finds rows repeating an earlier row's key.

    Rows that break another rule are quarantined for it and keep no key, so
    the first valid row of a key is stored. `broken` is the query of the
    other rules' violations.
    """
    values = [
        f"({stored_sql(name, types[name], source_types.get(name, 'VARCHAR'))}) AS "
        f"{ident(name)}"
        for name in key
    ]
    names = ", ".join(ident(name) for name in key)
    shown = " || ', ' || ".join(
        f"{literal(name + '=')} || coalesce(CAST({ident(name)} AS VARCHAR), 'NULL')"
        for name in key
    )
    # Like SQL's UNIQUE, a key with a missing value repeats no other key. An
    # invalid value, which reads as missing here, is quarantined for itself,
    # and `nullable = false` is the rule that rejects a missing one.
    present = " AND ".join(f"{ident(name)} IS NOT NULL" for name in key)
    keyed = f"SELECT _file, _record, {', '.join(values)} FROM {STAGED}"
    if broken is not None:
        keyed = (
            f"SELECT * FROM ({keyed}) ANTI JOIN ({broken}) AS _broken "
            "USING (_file, _record)"
        )
    repeated = (
        f"SELECT _file, _record, {names}, row_number() OVER (PARTITION BY {names} "
        f"ORDER BY _file, _record) AS _seen FROM ({keyed}) WHERE {present}"
    )
    condition = "_seen > 1"
    if parent_scan:
        condition += (
            f" OR ({names}) IN (SELECT ({names}) FROM ({parent_scan}))"
            if len(key) > 1
            else f" OR {names} IN (SELECT {names} FROM ({parent_scan}))"
        )
    label = literal(", ".join(key))
    return (
        f"SELECT _file, _record, {label} AS column_name, {shown} AS value, "
        f"'{UNIQUE_KEY_REASON} (' || {shown} || ')' AS reason "
        f"FROM ({repeated}) WHERE {condition}"
    )


def _select(name: str, value: str, reason: str, condition: str) -> str:
    return (
        f"SELECT _file, _record, {literal(name)} AS column_name, {value} AS value, "
        f"{reason} AS reason FROM {STAGED} WHERE {condition}"
    )


_SHOWN_CATEGORIES = 10
"""Maximum allowed values that a quarantine reason lists."""


def _allowed_list(allowed: tuple[str, ...]) -> str:
    listed = ", ".join(allowed[:_SHOWN_CATEGORIES])
    if len(allowed) > _SHOWN_CATEGORIES:
        listed += f", ... ({len(allowed)} values)"
    return listed


def _escape(text: str) -> str:
    return text.replace("'", "''")
