"""Derived features of a model computed over checked request columns.

Serving computes them before each ONNX run, and the batch drift check
computes them over the logged request rows, so both run the model's
``derive`` SQL through the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from appliance.errors import IntegrityError, RequestError
from appliance.serving._inputs import NUMBER, Columns


def derived_features(
    model: str,
    derive: Mapping[str, str],
    request: Sequence[Mapping[str, str]],
    inputs: Sequence[Mapping[str, str]],
    columns: Columns,
) -> Columns:
    """Compute the derived features of a model from checked request columns.

    Args:
        model: The model's name, used in error messages.
        derive: The schema's derived columns, in declaration order.
        request: The schema's request columns.
        inputs: The schema's inputs; a derived column that is one is computed.
        columns: Request values by column, as `rows_to_columns` returns them.

    Returns:
        float64 arrays for numeric derived features, object arrays of text
        for the others.

    Raises:
        RequestError: A value cannot be cast to its dataset type, or an
            expression fails on these rows.
    """
    from appliance.derive import CastError, compute

    table = pa.table({spec["name"]: _arrow(columns[spec["name"]]) for spec in request})
    kinds = {spec["name"]: spec["type"] for spec in inputs}
    numeric = [n for n in derive if kinds.get(n) == NUMBER]
    categorical = [n for n in derive if n in kinds and n not in numeric]
    try:
        derived = compute(derive, list(request), numeric, categorical, table)
    except CastError as exc:
        raise RequestError(
            f"row {exc.row}, column {exc.column!r} of model {model!r}: {exc}",
            model=model,
            row=exc.row,
            column=exc.column,
        ) from None
    except duckdb.Error as exc:
        raise RequestError(
            f"derived features {', '.join(map(repr, derive))} of model "
            f"{model!r} cannot be computed from this request: {exc}",
            model=model,
        ) from None
    result: Columns = {}
    for name in numeric:
        result[name] = derived.column(name).to_numpy(zero_copy_only=False)
    for name in categorical:
        result[name] = np.asarray(derived.column(name).to_pylist(), dtype=object)
    return result


def cast_failures(
    request: Sequence[Mapping[str, str]], columns: Columns
) -> dict[int, tuple[str, Any]]:
    """Return the rows whose request values DuckDB cannot cast to their
    dataset types, as `derive.cast_failures` does, from checked columns."""
    from appliance.derive import cast_failures as failures

    table = pa.table({spec["name"]: _arrow(columns[spec["name"]]) for spec in request})
    return failures(request, table)


def check_schema_sql(
    name: str, version: int, derive: dict[str, str], request: list[dict[str, str]]
) -> None:
    """Raise unless the schema's SQL is one expression or one type per entry.

    Serving puts the derived columns' expressions and the request columns'
    SQL types into one DuckDB query. A schema registered before configuration
    SQL was checked, or signed by another box whose key is trusted, could
    otherwise add a statement to that query.

    Raises:
        IntegrityError: Naming the model version and the entry at fault.
    """
    from appliance.sqlcheck import check_expression

    try:
        for column, expression in derive.items():
            check_expression(f"derived column {column!r}", expression)
        for spec in request:
            if "sql_type" in spec:
                check_expression(
                    f"SQL type of request column {spec['name']!r}",
                    f"CAST(NULL AS {spec['sql_type']})",
                )
    except ValueError as exc:
        raise IntegrityError(
            f"schema of model {name!r} version {version}: {exc}; train the "
            "model again to register a version with valid SQL"
        ) from None


def _arrow(values: Any) -> Any:
    """Return request values as an Arrow array, with NaN and ``""`` read as null."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return pa.array(values, from_pandas=True)
    return pa.array([v or None for v in values], type=pa.string())
