"""Input conversion: JSON rows and Arrow tables into ONNX feeds.

A model's ONNX inputs are listed in its schema as ``{"name", "type"}`` with
type ``number`` (fed as float32, missing as NaN) or ``string`` (fed as text,
missing as ``""``). Each ONNX input is one column of shape ``(rows, 1)``.

A request sends the columns listed under ``request`` in the schema: every
feature that is not derived plus the dataset columns the derived features
read. Their ``type`` sets which JSON values are accepted:

- ``number``: a number; null, NaN and the string ``"NaN"`` mean missing.
- ``integer``: the same, and the number must be whole (3 and 3.0 are both 3)
  and within the range of the dataset column's integer type, its ``sql_type``
  (BIGINT: -2**63 to 2**63 - 1).
- ``boolean``: true, false, 0 or 1.
- ``string``: text, a whole number or a boolean; null means missing.
- ``sql``: any scalar, cast by DuckDB to the column's type in the dataset.

Infinite numbers, numbers beyond the float64 or float32 range, text that
contains a NUL byte and values outside the model's ``checks`` are rejected
with the column and row named. Columns the
model does not read are ignored and reported as warnings.

A numeric value reaches the model as float32, rounded from float64 to the
nearest float32: a JSON or Arrow integer above 2**24 in magnitude, such as
16777217, arrives rounded (16777216).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set
from typing import Any

import numpy as np
import pyarrow as pa

from appliance.errors import RequestError, shown
from appliance.jsonnumbers import OverflowedNumber
from appliance.serving._integer_checks import check_integer_range
from appliance.serving._text_checks import check_arrow_texts, nul_error

NUMBER = "number"
STRING = "string"
INTEGER = "integer"
BOOLEAN = "boolean"
SQL = "sql"

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NUMERIC_KINDS = (NUMBER, INTEGER, BOOLEAN)
_MAX_WARNED_COLUMNS = 20
_JOINED_CHECK_VALUES = 65_536
"""Numeric values of a request up to which `check_float32` joins its columns."""

_FLOAT64_MAX = float(np.finfo(np.float64).max)

JSON_MISSING = "a JSON request reads only null and the text 'NaN' as missing values"
"""End of the error on text in a numeric column of JSON rows: the missing values."""
ARROW_MISSING = "an Arrow request reads only null and the text 'NaN' as missing values"
"""End of the error on text in a numeric column of an Arrow table: the missing
values, unless `table_to_columns` is given another description."""

Columns = dict[str, Any]
"""Request values by column: float64 arrays for numeric kinds, object arrays of
text for strings, Arrow arrays or lists for ``sql`` columns."""


def request_spec(schema: Mapping[str, Any]) -> list[dict[str, str]]:
    """Return the request columns of a schema, from its inputs if it predates them."""
    if "request" in schema:
        return list(schema["request"])
    return [dict(spec) for spec in schema["inputs"]]


def rows_to_columns(
    model: str, request: Sequence[Mapping[str, str]], rows: Sequence[Any]
) -> tuple[Columns, list[str]]:
    """Check JSON rows against the request columns and gather them by column.

    Returns:
        The values by column and the warnings about ignored columns.

    Raises:
        RequestError: A row is not an object, or a column is missing or has an
            invalid value; the error names the model, row and column.
    """
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(
                f"row {index} of the request to model {model!r} is not a JSON object",
                model=model,
                row=index,
            )
    columns: Columns = {}
    for spec in request:
        name, kind = spec["name"], spec["type"]
        try:
            values = [row[name] for row in rows]
        except KeyError:
            values = [_field(model, i, name, row) for i, row in enumerate(rows)]
        if kind in _NUMERIC_KINDS:
            numbers = np.asarray(_numbers(model, name, kind, values), np.float64)
            if kind == INTEGER:
                sql_type = spec.get("sql_type")
                check_integer_range(model, name, sql_type, numbers, values.__getitem__)
            columns[name] = numbers
        elif kind == SQL:
            columns[name] = [_sql_text(model, i, name, v) for i, v in enumerate(values)]
        else:
            texts = [_text(model, i, name, v) for i, v in enumerate(values)]
            columns[name] = np.asarray(texts, dtype=object)
    known = {spec["name"] for spec in request}
    extra = sorted({key for row in rows for key in row} - known)
    return columns, _ignored(model, extra)


def table_to_columns(
    model: str,
    request: Sequence[Mapping[str, str]],
    table: pa.Table,
    missing: str = ARROW_MISSING,
) -> tuple[Columns, list[str]]:
    """Check an Arrow table against the request columns, column by column.

    Args:
        missing: Which values the table's source reads as missing, for the
            error on text in a numeric column, such as `ARROW_MISSING`.

    Raises:
        RequestError: A column is missing or contains values of the wrong type.
    """
    columns: Columns = {}
    for spec in request:
        name, kind = spec["name"], spec["type"]
        if name not in table.column_names:
            raise RequestError(
                f"column {name!r} required by model {model!r} is missing",
                model=model,
                column=name,
            )
        column = table.column(name)
        if kind in _NUMERIC_KINDS:
            numbers = _arrow_numbers(model, name, kind, column, missing)
            if kind == INTEGER:
                sql_type = spec.get("sql_type")
                check_integer_range(model, name, sql_type, numbers, _row_of(column))
            columns[name] = numbers
        elif kind == SQL:
            check_arrow_texts(model, name, column)
            columns[name] = column
        else:
            columns[name] = _arrow_texts(model, name, column)
    known = {spec["name"] for spec in request}
    extra = sorted(set(table.column_names) - known)
    return columns, _ignored(model, extra)


def check_ranges(
    model: str, checks: Mapping[str, Mapping[str, float]], columns: Columns
) -> None:
    """Reject numeric values outside the model's declared ``checks``.

    Missing values pass; imputation fills them.

    Raises:
        RequestError: A value is below ``min`` or above ``max``.
    """
    for name, bounds in checks.items():
        if name not in columns:
            continue
        values = np.asarray(columns[name], dtype=np.float64)
        low, high = bounds.get("min", -math.inf), bounds.get("max", math.inf)
        outside = (values < low) | (values > high)
        if outside.any():
            row = int(np.argmax(outside))
            raise RequestError(
                f"row {row}, column {name!r} of model {model!r} is "
                f"{float(values[row])!r}, outside the allowed range (min {low}, max "
                f"{high})",
                model=model,
                row=row,
                column=name,
            )


def columns_to_feed(
    inputs: Sequence[Mapping[str, str]], columns: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Convert typed columns (a DataFrame or a dict of arrays) to an ONNX feed.

    Numeric columns must hold floats with NaN for missing and string columns
    text with ``""`` for missing, as training frames do.
    """
    feed = {}
    for spec in inputs:
        if spec["type"] == NUMBER:
            values = np.asarray(columns[spec["name"]], dtype=np.float32)
            feed[spec["name"]] = values.reshape(-1, 1)
        else:
            values = np.asarray(columns[spec["name"]])
            feed[spec["name"]] = values.astype(str).astype(object).reshape(-1, 1)
    return feed


def check_float32(
    model: str, inputs: Sequence[Mapping[str, str]], columns: Mapping[str, Any]
) -> None:
    """Reject finite numbers that would overflow to infinity as float32.

    Raises:
        RequestError: A numeric input is beyond ±3.4e38; the error names the
            first such column in input order and its first such row.
    """
    names = [spec["name"] for spec in inputs if spec["type"] == NUMBER]
    if not names:
        return
    arrays = [np.asarray(columns[name], dtype=np.float64).ravel() for name in names]
    if not any(_beyond_float32(arrays)):
        return
    for name, values in zip(names, arrays):
        beyond = np.abs(values) > _FLOAT32_MAX
        if not beyond.any():
            continue
        row = int(np.argmax(beyond))
        raise RequestError(
            f"row {row}, column {name!r} of model {model!r} is "
            f"{float(values[row])!r}, beyond the float32 range the model reads "
            f"(±{_FLOAT32_MAX:.4g}); send a number within that range, or null "
            "for a missing value",
            model=model,
            row=row,
            column=name,
        )


def _beyond_float32(arrays: list[np.ndarray]) -> list[bool]:
    """Tell for each array whether a value is beyond the float32 range; NaN is not.

    A small request is compared at once, in a few numpy calls rather than a
    few per column. A large one is reduced column by column, because joining
    the columns would copy them all.
    """
    if sum(len(a) for a in arrays) <= _JOINED_CHECK_VALUES:
        # NaN compares false, so it passes.
        beyond = np.abs(np.concatenate(arrays)) > _FLOAT32_MAX
        return [bool(beyond.any())]
    # fmax and fmin skip NaN, and return NaN only for a column of NaN.
    return [
        bool(np.fmax.reduce(a) > _FLOAT32_MAX or np.fmin.reduce(a) < -_FLOAT32_MAX)
        for a in arrays
        if len(a)
    ]


def rows_to_feed(
    model: str, inputs: Sequence[Mapping[str, str]], rows: Sequence[Any]
) -> dict[str, np.ndarray]:
    """Convert JSON rows to an ONNX feed for a model without derived features."""
    columns, _ = rows_to_columns(model, inputs, rows)
    check_float32(model, inputs, columns)
    return columns_to_feed(inputs, columns)


def table_to_feed(
    model: str, inputs: Sequence[Mapping[str, str]], table: pa.Table
) -> dict[str, np.ndarray]:
    """Convert an Arrow table to an ONNX feed for a model without derived features."""
    columns, _ = table_to_columns(model, inputs, table)
    check_float32(model, inputs, columns)
    return columns_to_feed(inputs, columns)


def check_finite_rows(model: str, rows: Sequence[Any], names: Set[str]) -> None:
    """Reject infinite numbers in the columns `names` of JSON rows.

    Numbers beyond the float64 range, such as ``1e999``, count as infinite.
    `names` are lowercase, and a column matches in any case, as DuckDB
    matches identifiers. NaN passes as a missing value. Rows that are not
    objects are left to the other checks.

    Raises:
        RequestError: Such a number is found. The error names the first such
            row, and in it the first such column.
    """
    if not names:
        return
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            continue
        for name, value in row.items():
            kind = type(value)
            if kind is int:
                if -_FLOAT64_MAX <= value <= _FLOAT64_MAX:
                    continue
            elif kind is float or kind is OverflowedNumber:
                if -math.inf < value < math.inf or value != value:
                    continue
            else:
                continue
            if name.lower() in names:
                raise _infinite(model, index, name, value)


def check_finite_table(model: str, table: pa.Table, names: Set[str]) -> None:
    """Reject infinite numbers in the float columns `names` of an Arrow table.

    `names` are lowercase, as in `check_finite_rows`.

    Raises:
        RequestError: Such a number is found. The error names the first such
            column in table order and its first such row.
    """
    for name in table.column_names:
        column = table.column(name)
        if name.lower() not in names or not pa.types.is_floating(column.type):
            continue
        import pyarrow.compute as pc  # Arrow requests only; about 9 MB resident

        row = pc.index(pc.is_inf(column), True).as_py()
        if row >= 0:
            raise _infinite(model, row, name, column[row].as_py())


def _infinite(model: str, index: int, name: str, value: float | int) -> RequestError:
    """Return the error for an infinite number, or one beyond the float64 range."""
    if type(value) is int:
        value = OverflowedNumber(str(value))
    if type(value) is OverflowedNumber:
        return _invalid(model, index, name, _overflow_problem(value))
    return _invalid(
        model,
        index,
        name,
        f"must be finite, got {shown(value)}; replace it with a finite number, or "
        "with a missing value (null)",
    )


def _field(model: str, index: int, name: str, row: Mapping[str, Any]) -> Any:
    try:
        return row[name]
    except KeyError:
        raise RequestError(
            f"row {index} of the request to model {model!r} is missing column "
            f"{name!r}; send null for a missing value",
            model=model,
            row=index,
            column=name,
        ) from None


def _numbers(model: str, name: str, kind: str, values: list[Any]) -> list[float]:
    """Return the values of a numeric column as floats, checked as `_number` does.

    Finite floats of a ``number`` column and integers of any kind but
    ``boolean`` need no check beyond their type, so they skip the call.
    """
    numbers: list[float] = []
    try:
        for index, value in enumerate(values):
            kind_of_value = type(value)
            if kind_of_value is int and kind != BOOLEAN:
                numbers.append(float(value))
            elif (
                kind_of_value is float
                and kind == NUMBER
                and -math.inf < value < math.inf
            ):
                numbers.append(value)
            else:
                numbers.append(_number(model, index, name, kind, value))
    except OverflowError:
        # float() of an integer beyond the float64 range, such as 10**400.
        index = len(numbers)
        huge = OverflowedNumber(str(values[index]))
        raise _invalid(model, index, name, _overflow_problem(huge)) from None
    return numbers


def _number(
    model: str,
    index: int,
    name: str,
    kind: str,
    value: Any,
    missing: str = JSON_MISSING,
) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        if kind == BOOLEAN:
            return 1.0 if value else 0.0
    elif isinstance(value, (int, float)):
        if type(value) is OverflowedNumber:
            raise _invalid(model, index, name, _overflow_problem(value))
        return _checked_number(model, index, name, kind, float(value))
    elif isinstance(value, str) and value.strip().lower() == "nan":
        return math.nan
    expected = "true, false or null" if kind == BOOLEAN else "a number or null"
    problem = f"must be {expected}, got {_json_value_text(value)}"
    if isinstance(value, str):
        problem += f"; {missing}"
    raise _invalid(model, index, name, problem)


def _checked_number(
    model: str, index: int, name: str, kind: str, value: float
) -> float:
    if math.isnan(value):
        return value
    if math.isinf(value):
        raise _infinite(model, index, name, value)
    if kind == INTEGER and not value.is_integer():
        raise _invalid(
            model,
            index,
            name,
            f"must be a whole number, got {shown(value)}, because the column is "
            "an integer in the training dataset; send a whole number, or null for "
            "a missing value",
        )
    if kind == BOOLEAN and value not in (0.0, 1.0):
        raise _invalid(
            model, index, name, f"must be true, false, 0 or 1, got {shown(value)}"
        )
    return value


def _json_value_text(value: Any) -> str:
    """Return `value` for a message, with a boolean spelled as JSON sends it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return shown(value)


def _overflow_problem(value: OverflowedNumber) -> str:
    return (
        f"is {shown(value)}, beyond the float64 range (±{_FLOAT64_MAX:.4g}); send a "
        "finite number within it, or null for a missing value"
    )


def _text(model: str, index: int, name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        if "\0" in value:
            raise nul_error(model, index, name, value)
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    raise _invalid(model, index, name, f"must be a string or null, got {shown(value)}")


def _sql_text(model: str, index: int, name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and "\0" in value:
        raise nul_error(model, index, name, value)
    if isinstance(value, float) and math.isinf(value):
        # DuckDB casts the text "inf" to the infinite date or timestamp.
        raise _infinite(model, index, name, value)
    return str(value)


def _arrow_texts(model: str, name: str, column: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        import pyarrow.compute as pc  # Arrow requests only; about 9 MB resident

        # Same result as `_text` on every value: null becomes "", text stays,
        # text with a NUL byte is rejected.
        check_arrow_texts(model, name, column)
        return pc.fill_null(column, "").to_numpy(zero_copy_only=False)
    texts = [_text(model, i, name, v) for i, v in enumerate(column.to_pylist())]
    return np.asarray(texts, dtype=object)


def _arrow_numbers(
    model: str, name: str, kind: str, column: pa.ChunkedArray, missing: str
) -> np.ndarray:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        texts = column.to_pylist()
        # A CSV reader types a column as text when one value is not a number,
        # so name that value before any number written as text.
        for index, text in enumerate(texts):
            if text is not None and not _is_number_text(text):
                _number(model, index, name, kind, text, missing)
        values = [
            _number(model, i, name, kind, v, missing) for i, v in enumerate(texts)
        ]
        return np.asarray(values, dtype=np.float64)
    import pyarrow.compute as pc  # Arrow requests only; about 9 MB resident

    if pa.types.is_boolean(column.type):
        if kind != BOOLEAN:
            _reject_booleans(model, name, column)
        column = pc.cast(column, pa.int8())
    # An integer beyond 2**53 is rounded to the nearest float64, as a JSON
    # integer is, where Arrow's safe cast would raise.
    safe = not pa.types.is_integer(column.type)
    try:
        array = pc.cast(column, pa.float64(), safe=safe)
        array = array.to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise RequestError(
            f"column {name!r} of model {model!r} must hold numbers, got "
            f"{column.type}: {exc}",
            model=model,
            column=name,
        ) from None
    array = np.asarray(array, dtype=np.float64)
    finite = np.isfinite(array)
    for index in np.flatnonzero(~finite & ~np.isnan(array))[:1]:
        _checked_number(model, int(index), name, kind, float(array[index]))
    if kind != NUMBER:
        for index in np.flatnonzero(finite & (array != np.round(array)))[:1]:
            _checked_number(model, int(index), name, kind, float(array[index]))
        if kind == BOOLEAN:
            for index in np.flatnonzero(finite & (array != 0) & (array != 1))[:1]:
                _checked_number(model, int(index), name, kind, float(array[index]))
    return array


def _reject_booleans(model: str, name: str, column: pa.ChunkedArray) -> None:
    """Reject a bool column of a numeric input, as `_number` rejects JSON true.

    A column of nulls only passes, as JSON nulls do.
    """
    import pyarrow.compute as pc  # Arrow requests only; about 9 MB resident

    row = pc.index(pc.is_valid(column), True).as_py()
    if row >= 0:
        value = column[row].as_py()
        raise _invalid(
            model, row, name, f"must be a number or null, got {_json_value_text(value)}"
        )


def _row_of(column: pa.ChunkedArray) -> Any:
    """Return a function that returns the value of a row of `column` as sent."""
    return lambda index: column[index].as_py()


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _invalid(model: str, index: int, name: str, problem: str) -> RequestError:
    return RequestError(
        f"row {index}, column {name!r} of model {model!r} {problem}",
        model=model,
        row=index,
        column=name,
    )


def _ignored(model: str, extra: list[str]) -> list[str]:
    if not extra:
        return []
    names = ", ".join(shown(name) for name in extra[:_MAX_WARNED_COLUMNS])
    more = len(extra) - _MAX_WARNED_COLUMNS
    suffix = f" and {more} more" if more > 0 else ""
    return [
        f"columns {names}{suffix} are not inputs of model {model!r} and were ignored"
    ]
