"""Input conversion: JSON rows and Arrow tables into ONNX feeds.

A model's inputs are listed in its schema as ``{"name", "type"}`` with type
``number`` (fed as float32, missing as NaN) or ``string`` (fed as text,
missing as ``""``). Each ONNX input is one column of shape ``(rows, 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from appliance.errors import RequestError

NUMBER = "number"
STRING = "string"


def rows_to_feed(
    model: str, inputs: Sequence[Mapping[str, str]], rows: Sequence[Any]
) -> dict[str, np.ndarray]:
    """Convert JSON rows to an ONNX feed, checking every value.

    Columns the model does not use are ignored.

    Raises:
        RequestError: A row is not an object, or a column is missing or has a
            value of the wrong type; the error names the model, row and column.
    """
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(
                f"row {index} of the request to model {model!r} is not a JSON object",
                model=model,
                row=index,
            )
    feed = {}
    for spec in inputs:
        name = spec["name"]
        if spec["type"] == NUMBER:
            values = [
                _number(model, index, name, row) for index, row in enumerate(rows)
            ]
            feed[name] = np.array(values, dtype=np.float32).reshape(-1, 1)
        else:
            values = [
                _string(model, index, name, row) for index, row in enumerate(rows)
            ]
            feed[name] = np.array(values, dtype=object).reshape(-1, 1)
    return feed


def columns_to_feed(
    inputs: Sequence[Mapping[str, str]], columns: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Convert already typed columns (a DataFrame or a dict of arrays) to a feed.

    Numeric columns must hold floats with NaN for missing and string columns
    text with ``""`` for missing, as training frames do.
    """
    feed = {}
    for spec in inputs:
        values = np.asarray(columns[spec["name"]])
        if spec["type"] == NUMBER:
            feed[spec["name"]] = values.astype(np.float32).reshape(-1, 1)
        else:
            feed[spec["name"]] = values.astype(str).astype(object).reshape(-1, 1)
    return feed


def table_to_feed(
    model: str, inputs: Sequence[Mapping[str, str]], table: pa.Table
) -> dict[str, np.ndarray]:
    """Convert an Arrow table to an ONNX feed without a Python loop per row.

    Raises:
        RequestError: A column is missing or cannot be cast to the input type.
    """
    feed = {}
    for spec in inputs:
        name = spec["name"]
        if name not in table.column_names:
            raise RequestError(
                f"column {name!r} required by model {model!r} is missing",
                model=model,
                column=name,
            )
        column = table.column(name)
        try:
            if spec["type"] == NUMBER:
                if pa.types.is_string(column.type) or pa.types.is_large_string(
                    column.type
                ):
                    raise pa.ArrowInvalid("text values in a numeric column")
                array = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
                feed[name] = array.astype(np.float32).reshape(-1, 1)
            else:
                if pa.types.is_boolean(column.type):
                    column = pc.if_else(column, "true", "false")
                text = pc.fill_null(pc.cast(column, pa.string()), "")
                values = text.to_numpy(zero_copy_only=False).astype(object, copy=False)
                feed[name] = values.reshape(-1, 1)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            expected = "numbers" if spec["type"] == NUMBER else "text"
            raise RequestError(
                f"column {name!r} of model {model!r} must hold {expected}, "
                f"got {column.type}: {exc}",
                model=model,
                column=name,
            ) from None
    return feed


def _number(model: str, index: int, name: str, row: dict[str, Any]) -> float:
    try:
        value = row[name]
    except KeyError:
        raise _missing(model, index, name) from None
    if value is None:
        return math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise RequestError(
        f"row {index}, column {name!r} of model {model!r} must be a number or "
        f"null, got {value!r}",
        model=model,
        row=index,
        column=name,
    )


def _string(model: str, index: int, name: str, row: dict[str, Any]) -> str:
    try:
        value = row[name]
    except KeyError:
        raise _missing(model, index, name) from None
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    raise RequestError(
        f"row {index}, column {name!r} of model {model!r} must be a string or "
        f"null, got {value!r}",
        model=model,
        row=index,
        column=name,
    )


def _missing(model: str, index: int, name: str) -> RequestError:
    return RequestError(
        f"row {index} of the request to model {model!r} is missing column {name!r}",
        model=model,
        row=index,
        column=name,
    )
