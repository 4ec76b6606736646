"""Column types of CSV text: inference over every row and checked conversion.

CSV columns are loaded as text first. `infer_types` then tries each candidate
type on every value of a column in one aggregate query, so a column that turns
to text after thousands of numeric rows is typed as text, never guessed from a
sample. `text_fallback_warnings` reports when that happened to a column whose
first rows are numbers, such as one the CSV sniffer took for numbers.
`cast_sql` converts a text column to its type; a value that does not convert
becomes NULL, which the contract checks report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from appliance.dbrows import first_row
from appliance.sqltypes import INTEGER_TYPES
from appliance.storage._sql import ident, literal

NUMERIC_TYPES = (*INTEGER_TYPES, "FLOAT", "DOUBLE")

_SAMPLE_ROWS = 2048
_VALUE = "_value"
"""Column of the unpivoted sample's values, which the type tests read."""
_ANY_TESTS = (
    "present",
    "zoned",
    "day_first_only",
    "month_first_only",
    "some_iso",
    "twelve_hour",
    "short_year",
    "format_clash",
)
"""Tests that are true when any value fits, as are the ``some_format`` tests;
all the others need every value."""
_SOME_FORMAT = "some_format"
"""Name prefix of the tests that a value matches allowed date format i, or
an ISO 8601 date (``some_format_iso_date``) or time (``some_format_iso_time``)."""
ISO_DATE_FORMAT = "%Y-%m-%d"
"""strptime format of an ISO 8601 date, which a column may mix with the
allowed date formats."""
ISO_TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
)
"""strptime formats of the ISO 8601 times without a UTC offset, which a
column may mix with the allowed date formats."""
_FOUR_DIGIT_YEAR = 1000
"""Smallest year that a value parsed with ``%Y`` may have. DuckDB 2.0.1's
strptime reads ``%Y`` from one to four digits, so with ``%d.%m.%Y`` it reads
``05.01.24`` as the year 24. A year before 1000 is taken for one written short."""
_NON_DATE_TESTS = ("bigint", "double", "comma", "boolean", "grouped", "grouped_dots")
"""Tests of the candidates other than dates and times."""
_DECIMAL_COMMA = r"^[+-]?[0-9]+(,[0-9]+)?([eE][+-]?[0-9]+)?$"
_ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_DATE_TEXT = r"\s*[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}\s*"
"""A date as year-month-day, with the spaces around it and the one-digit month
or day that DuckDB's cast to DATE accepts without changing the date."""
_INTEGER = r"\s*[+-]?[0-9]+\s*"
"""Matched in full: ``regexp_full_match`` took 0.72 s on 5,000,000 values
and ``regexp_matches`` with ``^...$`` 1.09 s (DuckDB 2.0.1, shared 2-core box)."""
_OFFSET_AFTER_TIME = (
    r"[0-9]:[0-9]{2}(:[0-9]{2})?(\.[0-9]+)?\s*[+-][0-9]{2}(:?[0-9]{2})?$"
)
"""A time of day followed by a UTC offset, such as ``10:00:00+05``."""
_WORD_AFTER_TIME = r"[0-9]\s+[A-Za-z]"
"""A time of day followed by a word, such as a time zone name in
``10:00 Europe/Paris`` or ``PM`` in ``10:00 PM``. DuckDB 2.0.1's cast to
TIMESTAMP drops that word, while its cast to TIMESTAMPTZ reads a time zone
name (with the ICU extension) and rejects any other word."""
_ZONE_NAME_AFTER_TIME = _WORD_AFTER_TIME + r"[A-Za-z0-9_/+-]*$"
_TIME_ZONE = r"([0-9]Z$|" + _OFFSET_AFTER_TIME + "|" + _ZONE_NAME_AFTER_TIME + ")"
"""A time with ``Z``, a UTC offset or a time zone name. A date alone, such as
``2024-01-01``, does not match, although it ends in what reads like the
offset ``-01``."""
_ISO_START = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}|$)"
_TWELVE_HOUR = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{1,2}:[0-9]{2}(:[0-9]{2})?"
    r"\s*[AaPp]\.?[Mm]\.?$"
)
"""An ISO 8601 date and a time on a 12-hour clock, such as ``2024-01-01 10:00 PM``."""
_DATE_LIKE = r"^[0-9]{1,4}[-/. ]([0-9]{1,2}|[A-Za-z]{3,9})[-/. ][0-9]{1,4}$"
_DATE_TIME_LIKE = (
    r"^[0-9]{1,4}[-/. ]([0-9]{1,2}|[A-Za-z]{3,9})[-/. ][0-9]{1,4}"
    r"([T ][0-9]{1,2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(\s*[AaPp]\.?[Mm]\.?)?)?$"
)
"""A date as `_DATE_LIKE` reads it, with or without a time of day after it,
such as ``01/05/2024 10:30`` or ``01/05/2024 10:30 PM``."""
_DAY_MONTH = r"^[0-9]{1,2}[-/.][0-9]{1,2}[-/.][0-9]{4}$"
_SHORT_YEAR = r"^[0-9]{1,2}[-/. ]([0-9]{1,2}|[A-Za-z]{3,9})[-/. ][0-9]{2}$"
"""A date that ends in a year of two digits, such as ``05.01.24``."""
_GROUPED = r"^[+-]?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?$"
"""A number with commas between groups of thousands, such as 1,234.5."""
_GROUPED_DOTS = r"^[+-]?[0-9]{1,3}(\.[0-9]{3})+(,[0-9]+)?$"
"""A number with dots between groups of thousands, such as 1.234,5."""


@dataclass(frozen=True)
class ColumnType:
    """The type a text column converts to, and how."""

    type: str
    """DuckDB type name."""
    decimal_comma: bool = False
    """Numbers are written with a decimal comma, such as ``123,5``."""
    date_format: str | None = None
    """strptime format of a DATE or TIMESTAMP written in a non-ISO form."""
    more_formats: tuple[str, ...] = ()
    """Further strptime formats of a column whose values mix allowed formats,
    ISO 8601 ones included.
    Each value is read in the first of `date_format` and these that it matches."""

    @property
    def date_formats(self) -> tuple[str, ...]:
        """`date_format` and `more_formats`, or none for an ISO 8601 column."""
        if self.date_format is None:
            return ()
        return (self.date_format, *self.more_formats)


@dataclass
class Inference:
    """Types inferred for the columns of a text table, with warnings."""

    types: dict[str, ColumnType] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    warned: dict[str, str] = field(default_factory=dict)
    """The warning in `warnings` of each column that got one."""
    empty: set[str] = field(default_factory=set)
    """Columns without a single value, so their inferred type means nothing."""
    invalid_dates: set[str] = field(default_factory=set)
    """Columns of ISO 8601 dates (YYYY-MM-DD) left as text because some are not
    valid dates, such as ``2024-02-30``. `invalid_date_warnings` names one."""


@dataclass(frozen=True)
class _TextWarning:
    """The warning of a column left as text, as `_text_warning` returns it."""

    message: str
    invalid_dates: bool = False
    """The column has ISO 8601 dates only, and some are not valid dates."""


def infer_types(
    db: duckdb.DuckDBPyConnection,
    table: str,
    columns: list[str],
    date_formats: tuple[str, ...] = (),
    decimal_separator: str | None = None,
    dates_only: bool = False,
    *,
    dataset: str,
) -> Inference:
    """Infer the narrowest type that every non-missing value of each column fits.

    Candidates in order: BIGINT, DOUBLE (decimal comma too unless the separator
    is declared as ``.``), BOOLEAN, DATE and TIMESTAMP in ISO 8601, then one of
    the allowed `date_formats`, then several of them and ISO 8601, each value
    read in the one it matches; else VARCHAR. A column of dates that every value reads
    both day-first and month-first stays text with a warning, when the
    allowed formats that fit it include both orders. So does a column with a
    value that two allowed formats read as different dates. With
    `dates_only`, as for JSON strings, numbers and booleans are no candidates.
    A warning names the settings of `dataset` to change.
    """
    if not columns:
        return Inference()
    tests = {name: _tests(name, date_formats) for name in columns}
    known = _sample_outcomes(db, table, columns, date_formats)
    if dates_only:
        for outcome in known.values():
            outcome.update(dict.fromkeys(_NON_DATE_TESTS, False))
    inference = Inference()
    pending = list(columns)
    while pending:
        requests: dict[str, str] = {}
        for name in pending:
            try:
                column = _choose(known[name], date_formats, decimal_separator)
                warning = _text_warning(
                    name,
                    known[name],
                    column,
                    (date_formats, decimal_separator),
                    dataset,
                )
            except _Unknown as unknown:
                requests[name] = unknown.test
                continue
            inference.types[name] = column
            if warning:
                inference.warnings.append(warning.message)
                inference.warned[name] = warning.message
            if warning and warning.invalid_dates:
                inference.invalid_dates.add(name)
            if not known[name]["present"]:
                inference.empty.add(name)
        _run_full(db, table, tests, requests, known)
        pending = list(requests)
    inference.types = {name: inference.types[name] for name in columns}
    return inference


class _Unknown(Exception):
    """A test whose result over the whole column is needed to decide."""

    def __init__(self, test: str) -> None:
        super().__init__(test)
        self.test = test


class _Outcome(dict[str, bool | None]):
    """Test results of one column; None where only the whole column can tell."""

    def __getitem__(self, test: str) -> bool:
        value = super().__getitem__(test)
        if value is None:
            raise _Unknown(test)
        return value


def _sample_outcomes(
    db: duckdb.DuckDBPyConnection,
    table: str,
    columns: list[str],
    date_formats: tuple[str, ...],
) -> dict[str, _Outcome]:
    """Run every test on the first rows, keeping only the results they settle.

    A value that breaks an all-values test settles it as false for the whole
    column, and one that fits an any-value test settles it as true; other
    results are left unknown, so no type is ever chosen from a sample.

    The sample is unpivoted to one column of values, grouped by column, so
    DuckDB plans each test once rather than once per column. On the 4 text
    columns of the flights file, planning took most of the query's CPU time,
    and the query took 0.015 CPU s against 0.024 (medians of one-off runs,
    DuckDB 2.0.1, shared 2-core machine).

    Each distinct value of a column is tested once, because every test is a
    ``bool_and``, a ``bool_or`` or ``count(...) > 0``, which a repeated value
    does not change. The flights sample has 1,254 distinct values of 8,192,
    and the query took 0.012 CPU s against 0.019 (medians of 8 runs,
    alternated, same machine).
    """
    positions = {f"c{index}": name for index, name in enumerate(columns)}
    selects = ", ".join(
        f"CAST({ident(name)} AS VARCHAR) AS {alias}"
        for alias, name in positions.items()
    )
    generic = _tests(_VALUE, date_formats)
    rows = db.execute(
        f"WITH _sample AS (SELECT {selects} FROM {table} LIMIT {_SAMPLE_ROWS}), "
        f"_values AS (SELECT DISTINCT _column, {_VALUE} FROM _sample "
        f"UNPIVOT INCLUDE NULLS ({_VALUE} FOR _column IN ({', '.join(positions)}))) "
        f"SELECT _column, {', '.join(generic.values())} FROM _values GROUP BY _column"
    ).fetchall()
    found = {positions[row[0]]: row[1:] for row in rows}
    outcomes = {}
    for name in columns:
        # An empty table has no group: each test is NULL, as it was in a
        # query of the aggregates over no rows.
        values = found.get(name, [None] * len(generic))
        outcome = _Outcome()
        for test, value in zip(generic, values):
            value = bool(value)
            any_test = test in _ANY_TESTS or test.startswith(_SOME_FORMAT)
            settled = value if any_test else not value
            outcome[test] = value if settled else None
        outcomes[name] = outcome
    return outcomes


def _run_full(
    db: duckdb.DuckDBPyConnection,
    table: str,
    tests: dict[str, dict[str, str]],
    requests: dict[str, str],
    known: dict[str, _Outcome],
) -> None:
    if not requests:
        return
    checks = [tests[name][test] for name, test in requests.items()]
    row = db.execute(f"SELECT {', '.join(checks)} FROM {table}").fetchall()[0]
    for (name, test), value in zip(requests.items(), row):
        known[name][test] = bool(value)


def _tests(name: str, date_formats: tuple[str, ...]) -> dict[str, str]:
    """Return SQL aggregates that are true when every value fits a candidate."""
    v = ident(name)

    def every(condition: str) -> str:
        # A value with a NUL byte is quarantined whatever the type, so it
        # does not turn a numeric column into text.
        return f"bool_and({v} IS NULL OR contains({v}, chr(0)) OR ({condition}))"

    tests = {
        "present": f"count({v}) > 0",
        "bigint": every(
            f"TRY_CAST({v} AS BIGINT) IS NOT NULL AND {exact_text_sql(v, 'BIGINT')}"
        ),
        "double": every(f"TRY_CAST({v} AS DOUBLE) IS NOT NULL"),
        "comma": every(f"regexp_matches({v}, '{_DECIMAL_COMMA}')"),
        "boolean": every(exact_text_sql(v, "BOOLEAN")),
        # Each CASE casts only the values that match the pattern. An AND of
        # the two took twice as long on the flights sample (DuckDB 2.0.1).
        "date": every(_cast_if_matches(v, _ISO_DATE, "DATE")),
        "timestamp": every(_timestamp_test(v)),
        "zoned": f"bool_or(regexp_matches({v}, '{_TIME_ZONE}'))",
        "some_iso": f"bool_or(regexp_matches({v}, '{_ISO_START}'))",
        "twelve_hour": f"bool_or(regexp_matches({v}, '{_TWELVE_HOUR}'))",
        "short_year": f"bool_or(regexp_matches({v}, '{_SHORT_YEAR}'))",
        "date_like": every(f"regexp_matches({v}, '{_DATE_LIKE}')"),
        "date_time_like": every(f"regexp_matches({v}, '{_DATE_TIME_LIKE}')"),
        "iso_shaped": every(f"regexp_matches({v}, '{_ISO_DATE}')"),
        "day_month": every(f"regexp_matches({v}, '{_DAY_MONTH}')"),
        "grouped": every(
            f"regexp_matches({v}, '{_GROUPED}') OR TRY_CAST({v} AS DOUBLE) IS NOT NULL"
        ),
        "grouped_dots": every(
            f"regexp_matches({v}, '{_GROUPED_DOTS}') OR "
            f"regexp_matches({v}, '{_DECIMAL_COMMA}')"
        ),
        # Only `_ambiguous` reads these two, and only when every value matches
        # _DAY_MONTH, so their CASE parses only the values that match it.
        "day_first_only": _only_one_order(v, "%m/%d/%Y", "%d/%m/%Y"),
        "month_first_only": _only_one_order(v, "%d/%m/%Y", "%m/%d/%Y"),
    }
    return tests | _format_tests(v, date_formats, every)


def _format_tests(
    v: str, date_formats: tuple[str, ...], every: Callable[[str], str]
) -> dict[str, str]:
    """Return the tests of the allowed `date_formats` on text `v`.

    ``format{i}`` is true when every value matches format i, ``any_format``
    when every value matches one of them or is an ISO 8601 date or time,
    ``some_format{i}`` when a value matches format i, and ``format_clash``
    when two formats, or one and ISO 8601, read a value as different dates.
    """
    if not date_formats:
        return {}
    parsed = [strptime_sql(v, (fmt,)) for fmt in date_formats]
    iso_date = strptime_sql(v, (ISO_DATE_FORMAT,))
    iso_time = strptime_sql(v, ISO_TIME_FORMATS)
    tests = {
        f"format{index}": every(f"{value} IS NOT NULL")
        for index, value in enumerate(parsed)
    }
    every_format = (*date_formats, ISO_DATE_FORMAT, *ISO_TIME_FORMATS)
    tests["any_format"] = every(f"{strptime_sql(v, every_format)} IS NOT NULL")
    for index, value in enumerate(parsed):
        tests[f"{_SOME_FORMAT}{index}"] = f"bool_or({value} IS NOT NULL)"
    tests[f"{_SOME_FORMAT}_iso_date"] = f"bool_or({iso_date} IS NOT NULL)"
    tests[f"{_SOME_FORMAT}_iso_time"] = f"bool_or({iso_time} IS NOT NULL)"
    iso = f"coalesce({iso_date}, {iso_time})"
    clashes = [
        f"coalesce({first} <> {second}, false)"
        for index, first in enumerate(parsed)
        for second in [*parsed[index + 1 :], iso]
    ]
    tests["format_clash"] = f"bool_or({' OR '.join(clashes) or 'false'})"
    return tests


def strptime_sql(v: str, formats: tuple[str, ...]) -> str:
    """Return SQL of text `v` parsed in the first of `formats` it matches, or NULL.

    A format with ``%Y`` matches only a value with a year from 1000 on, so a
    two-digit year does not pass for the first century (`_FOUR_DIGIT_YEAR`).
    """
    parsed = []
    for fmt in formats:
        value = f"TRY_STRPTIME({v}, {literal(fmt)})"
        if "%Y" in fmt.replace("%%", ""):
            value = f"CASE WHEN year({value}) >= {_FOUR_DIGIT_YEAR} THEN {value} END"
        parsed.append(value)
    return parsed[0] if len(parsed) == 1 else f"coalesce({', '.join(parsed)})"


def _cast_if_matches(v: str, pattern: str, kind: str) -> str:
    """Return the condition that `v` matches `pattern` and casts to `kind`."""
    return (
        f"CASE WHEN regexp_matches({v}, '{pattern}') THEN "
        f"TRY_CAST({v} AS {kind}) IS NOT NULL ELSE false END"
    )


def _timestamp_test(v: str) -> str:
    """Return the condition that `v` is an ISO 8601 time that no cast changes.

    A value with a UTC offset or a time zone name must cast to TIMESTAMPTZ,
    so a word that is no time zone name, such as ``PM``, fails. Only the
    values that `exact_text_sql` does not pass take that slower cast: about
    0.3 against 0.1 s for TIMESTAMP on 2,000,000 values (an estimate from
    two runs with DuckDB 2.0.1 on a shared 2-core machine).
    """
    lenient = _cast_if_matches(v, "^[0-9]{4}-", "TIMESTAMP")
    exact = exact_text_sql(v, "TIMESTAMP")
    return f"({lenient}) AND (({exact}) OR TRY_CAST({v} AS TIMESTAMPTZ) IS NOT NULL)"


def _only_one_order(v: str, other: str, fmt: str) -> str:
    """Return the aggregate true when a day-month value parses as `fmt` only.

    The value's separators (``.``, ``-`` or ``/``) are read as ``/``, the
    separator of `fmt` and `other`.
    """
    slashed = f"regexp_replace({v}, '[-.]', '/', 'g')"
    return (
        f"bool_or(CASE WHEN regexp_matches({v}, '{_DAY_MONTH}') THEN "
        f"TRY_STRPTIME({slashed}, '{other}') IS NULL AND "
        f"TRY_STRPTIME({slashed}, '{fmt}') IS NOT NULL ELSE false END)"
    )


def _choose(
    outcome: _Outcome,
    date_formats: tuple[str, ...],
    decimal_separator: str | None,
) -> ColumnType:
    if not outcome["present"]:
        return ColumnType("VARCHAR")
    if outcome["bigint"]:
        return ColumnType("BIGINT")
    if outcome["double"] and decimal_separator != ",":
        return ColumnType("DOUBLE")
    if outcome["comma"] and decimal_separator != ".":
        return ColumnType("DOUBLE", decimal_comma=True)
    if outcome["boolean"]:
        return ColumnType("BOOLEAN")
    if outcome["date"]:
        return ColumnType("DATE")
    if outcome["timestamp"]:
        return ColumnType("TIMESTAMPTZ" if outcome["zoned"] else "TIMESTAMP")
    fitting = [
        fmt for index, fmt in enumerate(date_formats) if outcome[f"format{index}"]
    ]
    if fitting and not (_mixed_orders(fitting) and _ambiguous(outcome)):
        return ColumnType(_format_type(fitting[:1]), date_format=fitting[0])
    if date_formats and outcome["any_format"] and not outcome["format_clash"]:
        used = _used_formats(outcome, date_formats)
        return ColumnType(
            _format_type(used), date_format=used[0], more_formats=tuple(used[1:])
        )
    return ColumnType("VARCHAR")


def _used_formats(outcome: _Outcome, date_formats: tuple[str, ...]) -> list[str]:
    """Return the allowed `date_formats` that a value matches, then the ISO
    8601 formats when a value is an ISO 8601 date or time."""
    used = [
        fmt
        for index, fmt in enumerate(date_formats)
        if outcome[f"{_SOME_FORMAT}{index}"]
    ]
    if outcome[f"{_SOME_FORMAT}_iso_date"]:
        used.append(ISO_DATE_FORMAT)
    if outcome[f"{_SOME_FORMAT}_iso_time"]:
        used += ISO_TIME_FORMATS
    return list(dict.fromkeys(used))


def iso_formats(kind: str) -> tuple[str, ...]:
    """Return the ISO 8601 strptime formats that a column of type `kind` with
    allowed date formats also reads: dates for DATE, dates and times for
    TIMESTAMP, none for other types."""
    if kind == "DATE":
        return (ISO_DATE_FORMAT,)
    if kind == "TIMESTAMP":
        return (ISO_DATE_FORMAT, *ISO_TIME_FORMATS)
    return ()


def _format_type(formats: list[str]) -> str:
    """Return TIMESTAMP when one of strptime `formats` reads a time, else DATE."""
    codes = ("%H", "%M", "%S", "%I")
    timed = any(code in fmt for fmt in formats for code in codes)
    return "TIMESTAMP" if timed else "DATE"


def _mixed_orders(formats: list[str] | tuple[str, ...]) -> bool:
    """Tell whether `formats` put the day first in some and the month first in
    others; a format without both ``%d`` and ``%m`` counts as neither."""
    return len(_orders(formats)) > 1


def _orders(formats: list[str] | tuple[str, ...]) -> set[bool]:
    """Return whether each of `formats` with ``%d`` and ``%m`` puts the day first."""
    return {
        fmt.index("%d") < fmt.index("%m")
        for fmt in formats
        if "%d" in fmt and "%m" in fmt
    }


def _ambiguous(outcome: dict[str, bool]) -> bool:
    """Tell whether every value reads as both day-first and month-first."""
    return (
        outcome["day_month"]
        and not outcome["day_first_only"]
        and not outcome["month_first_only"]
    )


def _text_warning(
    name: str,
    outcome: _Outcome,
    chosen: ColumnType,
    settings: tuple[tuple[str, ...], str | None],
    dataset: str,
) -> _TextWarning | None:
    """Return the warning of a column left as text that looks typed, if any.

    `settings` are the allowed date formats and decimal separator of `dataset`.
    """
    if chosen.type != "VARCHAR" or not outcome["present"]:
        return None
    # Allowed formats of one order settle it, so a column of day-month
    # values that none of them match is in a format that is not allowed.
    settled = len(_orders(settings[0])) == 1
    if outcome["day_month"] and _ambiguous(outcome) and not settled:
        allowed = ", ".join(settings[0]) or "none"
        return _TextWarning(
            f"column {name!r} holds ambiguous dates: every value reads as both "
            "day-first and month-first, and the allowed date_formats "
            f"({allowed}) do not settle which, so it stays text; declare its "
            "date_format in the dataset contract"
        )
    if settings[0] and outcome["any_format"] and outcome["format_clash"]:
        return _TextWarning(
            f"column {name!r} has values that two allowed date_formats "
            f"({', '.join(settings[0])}), or one of them and ISO 8601, read as "
            "different dates, such as day-first and month-first, so it stays "
            "text; declare its "
            "date_format in the dataset contract"
        )
    if outcome["date_like"] and outcome["iso_shaped"]:
        return _TextWarning(
            f"column {name!r} looks like ISO 8601 dates (YYYY-MM-DD), but some "
            "are no valid date, such as a 30 February, so it stays text; fix "
            f"those values, or {_quarantine_dates(dataset)}",
            invalid_dates=True,
        )
    message = _format_warning(name, outcome, settings, dataset)
    return None if message is None else _TextWarning(message)


def _quarantine_dates(dataset: str) -> str:
    """Return the advice that makes a contract quarantine invalid dates."""
    return (
        f"declare the column as DATE in [datasets.{dataset}.contract] so that "
        "they are quarantined with their line"
    )


def _format_warning(
    name: str,
    outcome: _Outcome,
    settings: tuple[tuple[str, ...], str | None],
    dataset: str,
) -> str | None:
    """Return the warning of a text column of dates, times or numbers in a
    format that `settings` do not allow, if any."""
    date_formats, decimal_separator = settings
    if outcome["date_like"]:
        allowed = ", ".join(date_formats) or "none"
        years = ""
        # Read from the first rows only, as the 12-hour clock below.
        if dict.get(outcome, "short_year") and any("%Y" in f for f in date_formats):
            years = " (%Y matches a year of four digits, and %y one of two)"
        return (
            f"column {name!r} looks like dates in a format that is not allowed "
            f"(allowed: {allowed}), so it stays text; add its format to "
            f"[datasets.{dataset}] date_formats{years}"
        )
    if outcome["grouped"]:
        return (
            f"column {name!r} contains numbers with ',' between thousands (such as "
            "1,234.5), so it stays text; remove the separators from the file to "
            "store it as numbers"
        )
    if decimal_separator != "." and outcome["grouped_dots"]:
        return (
            f"column {name!r} contains numbers with '.' between thousands (such as "
            "1.234,5), so it stays text; remove the separators from the file to "
            "store it as numbers"
        )
    # Read from the first rows only: dict.get gives None where they did not
    # settle it, so no whole-column scan runs for these warnings.
    if dict.get(outcome, "twelve_hour"):
        return (
            f"column {name!r} has times on a 12-hour clock (such as "
            "'2024-01-01 10:00 PM'), so it stays text; add their format, such as "
            f"'%Y-%m-%d %I:%M %p', to [datasets.{dataset}] date_formats"
        )
    if dict.get(outcome, "some_iso"):
        return (
            f"column {name!r} mixes ISO 8601 dates or times with other values, "
            "so it stays text; write every value in one format, or add the "
            f"other format to [datasets.{dataset}] date_formats"
        )
    if outcome["date_time_like"]:
        allowed = ", ".join(date_formats) or "none"
        return (
            f"column {name!r} looks like dates and times in a format that is not "
            f"allowed (allowed: {allowed}), so it stays text; add its format, "
            "such as '%d/%m/%Y %H:%M', or '%m/%d/%Y %I:%M %p' for a 12-hour "
            f"clock, to [datasets.{dataset}] date_formats"
        )
    return None


def exact_text_sql(v: str, kind: str) -> str | None:
    """Return SQL that is true where text `v` is written as a `kind` value.

    DuckDB 2.0.1 casts text leniently. To an integer it rounds ``2.5`` to 3
    and reads ``0x10`` as 16 and ``1e3`` as 1000. To a DATE it drops the time
    of ``2024-01-01 10:00``, and to a TIMESTAMP the offset of ``10:00+05``
    and the word after ``10:00 Europe/Paris`` or ``10:00 PM``. To a BOOLEAN
    it reads ``yes``, ``y`` and ``t`` as true and ``no``, ``n`` and ``f`` as
    false, in any case. Its CSV reader does the same, and its sniffer takes a
    column of ``yes`` and ``no`` or of ``t`` and ``f`` for BOOLEAN. A value
    that fails this condition is not of that type, so no cast changes a value
    silently. A BOOLEAN is written as ``true`` or ``false`` in any case, or
    as ``0`` or ``1``, the values that the predict route accepts for a
    boolean input. None when every successful cast to `kind` keeps the value.
    """
    if kind in INTEGER_TYPES:
        return f"regexp_full_match({v}, '{_INTEGER}')"
    if kind == "BOOLEAN":
        return f"lower({v}) IN ('true', 'false', '0', '1')"
    # A cheap test passes the common forms first, and the pattern runs only on
    # the rest (CASE evaluates each branch on its own rows).
    if kind == "DATE":
        plain = (
            f"length({v}) = 10 AND {v}[1] BETWEEN '0' AND '9' "
            f"AND {v}[5] = '-' AND {v}[8] = '-'"
        )
        match = f"regexp_full_match({v}, '{_DATE_TEXT}')"
        return f"CASE WHEN {plain} THEN true ELSE {match} END"
    if kind == "TIMESTAMP":
        # Without a '+', or a '-' after the first 10 characters, no offset
        # follows the time, and without a space after the date and time
        # separator, no word does.
        plain = (
            f"strpos({v}, '+') = 0 AND strpos(substr({v}, 11), '-') = 0 "
            f"AND strpos(substr({v}, 12), ' ') = 0"
        )
        suffix = f"regexp_matches({v}, '{_OFFSET_AFTER_TIME}|{_WORD_AFTER_TIME}')"
        return f"CASE WHEN {plain} THEN true ELSE NOT {suffix} END"
    return None


def _exact_cast(v: str, kind: str) -> str:
    """Return ``TRY_CAST`` of text `v` to `kind`, NULL unless `exact_text_sql`."""
    exact = exact_text_sql(v, kind)
    if exact is None:
        return f"TRY_CAST({v} AS {kind})"
    return f"CASE WHEN {exact} THEN TRY_CAST({v} AS {kind}) END"


def _exact_typed_cast(v: str, kind: str, source_type: str) -> str:
    """Return ``TRY_CAST`` of typed `v`, NULL where the cast would change it.

    A fractional number cast to an integer, a number other than 0 and 1 cast
    to a BOOLEAN and a time of day cast to a DATE are rejected, as their text
    is by `exact_text_sql`.
    """
    cast = f"TRY_CAST({v} AS {kind})"
    fractional = source_type in FLOAT_TYPES or source_type.startswith("DECIMAL")
    if kind in INTEGER_TYPES and fractional:
        return f"CASE WHEN {v} = trunc({v}) THEN {cast} END"
    if kind == "BOOLEAN" and (source_type in INTEGER_TYPES or fractional):
        return f"CASE WHEN {v} IN (0, 1) THEN {cast} END"
    naive_time = source_type.startswith("TIMESTAMP") and source_type != "TIMESTAMPTZ"
    if kind == "DATE" and naive_time:
        return f"CASE WHEN CAST({v} AS TIME) = TIME '00:00:00' THEN {cast} END"
    return cast


def cast_sql(name: str, column: ColumnType, source_type: str = "VARCHAR") -> str:
    """Return the SQL that converts column `name` to `column.type`, NULL on failure.

    A value the conversion would change, such as ``2.5`` for a BIGINT column,
    also becomes NULL (see `exact_text_sql`).
    """
    v = ident(name)
    if column.type == source_type:
        return v
    if source_type != "VARCHAR":
        return _exact_typed_cast(v, column.type, source_type)
    if column.decimal_comma:
        return f"TRY_CAST(replace({v}, ',', '.') AS {column.type})"
    if column.date_format:
        parsed = strptime_sql(v, column.date_formats)
        return f"TRY_CAST({parsed} AS {column.type})"
    return _exact_cast(v, column.type)


FLOAT_TYPES = ("FLOAT", "DOUBLE")
"""Types that can contain NaN and the infinities."""
_NAN_TEXT = ("nan", "+nan", "-nan")


def nan_sql(name: str, column: ColumnType, source_type: str = "VARCHAR") -> str | None:
    """Return SQL that is true where column `name` holds NaN, None if it cannot.

    NaN means missing in a column of a numeric type (see `stored_sql`). Text
    writes it as ``NaN`` in any case, and a float source contains the value.
    """
    if column.type not in NUMERIC_TYPES and not column.type.startswith("DECIMAL"):
        return None
    v = ident(name)
    if source_type == "VARCHAR":
        texts = ", ".join(literal(text) for text in _NAN_TEXT)
        return f"lower(trim({v})) IN ({texts})"
    if source_type in FLOAT_TYPES:
        return f"isnan({v})"
    return None


def stored_sql(name: str, column: ColumnType, source_type: str = "VARCHAR") -> str:
    """Return the SQL of the value stored for `name`: `cast_sql` with NaN as NULL.

    A NaN in a numeric column is stored as missing (NULL), however it was
    written: ``NaN`` in CSV, the ``NaN`` literal or the string ``"NaN"`` in
    JSON, a float NaN in Parquet. Infinities are kept as values here and
    quarantined by the contract checks unless the column allows them.
    """
    value = cast_sql(name, column, source_type)
    nan = nan_sql(name, column, source_type)
    if nan is None:
        return value
    return f"CASE WHEN {nan} THEN NULL ELSE {value} END"


_SNIFFED_NON_TEXT = ("BIGINT", "DOUBLE", "BOOLEAN", "TIMESTAMP")
"""Sniffed types that get a warning when their column ends as text. Dates, and
times in a format other than ISO 8601, have their own warnings in
`_text_warning`, so the caller leaves out TIMESTAMP in such a format."""


def text_fallback_warnings(
    db: duckdb.DuckDBPyConnection,
    table: str,
    paths: list[Path],
    first_types: list[Mapping[str, str]],
    inferred: dict[str, ColumnType],
    line_of: Callable[[int, int], int],
    dataset: str,
    null_values: bool = False,
) -> dict[str, str]:
    """Warn of columns that look numeric or boolean in the first rows but end as text.

    The CSV sniffer reads the first rows of a file only, and a JSON-lines
    column is typed from every line, so a single value further down, such as
    ``warm`` in a temperature column, turns the whole column into text. The
    warning names the first such value, its file and line. With
    `null_values`, as for CSV files, a value that usually marks a missing
    one, such as ``N/A``, gets the advice to list it in ``null_values``.

    Args:
        db: Connection holding `table`.
        table: Staged rows with ``_file`` and ``_record`` columns.
        paths: Source file of each ``_file`` index.
        first_types: Type of each column in the first rows of each source
            file, such as a CSV dialect's ``sniffed_types``.
        inferred: Column types inferred over every row.
        line_of: Function from a row's ``_file`` and ``_record`` to its line.
        dataset: Dataset whose contract table the warning names.

    Returns:
        The warning of each such column, by column name.
    """
    warnings = {}
    for name, column in inferred.items():
        if column.type != "VARCHAR":
            continue
        sniffed = [types.get(name) for types in first_types]
        kind = next(
            (k for k in map(_short_type, sniffed) if k in _SNIFFED_NON_TEXT), None
        )
        if kind is None:
            continue
        row = _first_misfit(db, table, name, _fits_sql(ident(name), kind))
        if row is None:
            continue
        file, record, value = row
        fix = "fix that value"
        if null_values and value.strip().lower() in _MISSING_MARKERS:
            fix = (
                f"add {value!r} to [datasets.{dataset}] null_values (the list "
                "replaces the default one) if it marks a missing value, fix it"
            )
        warnings[name] = (
            f"column {name!r} looks like {kind} in the first rows of "
            f"{paths[file]} but has {value!r} at line {line_of(file, record)}, "
            f"so the whole column is read as text; {fix}, or declare "
            f"the column's type in [datasets.{dataset}.contract] to quarantine such "
            "rows instead"
        )
    return warnings


_MISSING_MARKERS = frozenset(
    ("n/a", "na", "#n/a", "none", "nil", "null", "missing", "unknown", "-", "--", "?")
)
"""Lower-case texts that often mark a missing value in CSV files."""


def invalid_date_warnings(
    db: duckdb.DuckDBPyConnection,
    table: str,
    paths: list[Path],
    columns: list[str],
    line_of: Callable[[int, int], int],
    dataset: str,
) -> dict[str, str]:
    """Warn of text columns of ISO 8601 dates, naming the first invalid date.

    Args:
        columns: Columns of ISO 8601 dates with some that are not valid
            dates, such as an `Inference`'s ``invalid_dates``.
        db, table, paths, line_of, dataset: As `text_fallback_warnings`
            takes them.

    Returns:
        The warning of each such column, by column name.
    """
    warnings = {}
    for name in columns:
        v = ident(name)
        # A value with a NUL byte is quarantined whatever the type, so it is
        # not the one that keeps the column text.
        fits = f"contains({v}, chr(0)) OR TRY_CAST({v} AS DATE) IS NOT NULL"
        row = _first_misfit(db, table, name, fits)
        if row is None:
            continue
        file, record, value = row
        warnings[name] = (
            f"column {name!r} looks like ISO 8601 dates (YYYY-MM-DD), but has "
            f"{value!r} at line {line_of(file, record)} of {paths[file]}, which "
            "is not a valid date, so it stays text; fix such values, or "
            f"{_quarantine_dates(dataset)}"
        )
    return warnings


def _first_misfit(
    db: duckdb.DuckDBPyConnection, table: str, name: str, fits: str
) -> tuple[int, int, str] | None:
    """Return the first row of `table` with a value of `name` that `fits` rejects.

    The row is its ``_file``, ``_record`` and value, first in file order;
    `fits` is an SQL condition on the value.
    """
    return first_row(
        db.execute(
            f"SELECT _file, _record, {ident(name)} FROM {table} "
            f"WHERE {ident(name)} IS NOT NULL AND NOT ({fits}) "
            "ORDER BY _file, _record LIMIT 1"
        )
    )


def _short_type(kind: str | None) -> str | None:
    """Return TIMESTAMP for either timestamp type, and other types unchanged."""
    if kind in ("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE"):
        return "TIMESTAMP"
    return kind


def _fits_sql(v: str, kind: str) -> str:
    """Return the condition that text `v` is a value of `kind` as written."""
    if kind == "TIMESTAMP":
        return _timestamp_test(v)
    return f"({_exact_cast(v, kind)}) IS NOT NULL"
