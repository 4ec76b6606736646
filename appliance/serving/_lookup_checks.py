"""Checks of the request columns that a model's feature lookup reads.

The lookup matches rows by the entity keys of the model's feature views, and
the views' derived columns read request columns by name in DuckDB SQL. Those
columns are not always model inputs, so the input conversion does not check
them. These checks run on the request before the lookup, for JSON rows, Arrow
tables and files scored in a batch alike:

- An entity key whose text contains a NUL byte is rejected.
- An entity key that is a JSON array or object, or an Arrow list, struct or
  map, is rejected. It matches no row of a view, so the view's columns would
  be missing without a word.
- An infinite number, or one beyond the float64 range such as ``1e999``, in a
  column that a derived column reads is rejected. SQL would compute with it
  as an infinity and feed the model a value such as ``temp / distance = 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from appliance.errors import RequestError, shown
from appliance.features import FeatureServer
from appliance.serving._inputs import check_finite_rows, check_finite_table
from appliance.serving._text_checks import check_table_texts, check_texts


def check_lookup_rows(features: FeatureServer, model: str, rows: Sequence[Any]) -> None:
    """Reject JSON rows with a NUL byte in an entity key or an infinite input.

    Raises:
        RequestError: Such a value is found. The error names its row and column.
    """
    if features.uses_features(model):
        check_texts(model, rows, features.entity_keys(model))
        check_key_values(model, rows, features.entity_keys(model))
        check_finite_rows(model, rows, features.derived_reads(model))


def check_lookup_table(features: FeatureServer, model: str, table: pa.Table) -> None:
    """Reject a table with a NUL byte in an entity key or an infinite input.

    Raises:
        RequestError: Such a value is found. The error names its row and column.
    """
    if features.uses_features(model):
        check_table_texts(model, table, features.entity_keys(model))
        check_key_types(model, table, features.entity_keys(model))
        check_finite_table(model, table, features.derived_reads(model))


def check_key_values(model: str, rows: Sequence[Any], keys: Sequence[str]) -> None:
    """Reject JSON rows whose entity key is an array or an object.

    Raises:
        RequestError: Such a key is found. The error names the first such row,
            and in it the first such key in `keys` order.
    """
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            continue
        for key in keys:
            value = row.get(key)
            if isinstance(value, (list, dict)):
                raise _key_error(model, key, shown(value), index)


def check_key_types(model: str, table: pa.Table, keys: Sequence[str]) -> None:
    """Reject a table whose entity key column is a list, struct or map.

    Raises:
        RequestError: Such a column is found. The error names the first such
            key in `keys` order.
    """
    for key in keys:
        if key in table.column_names and pa.types.is_nested(
            table.schema.field(key).type
        ):
            raise _key_error(model, key, str(table.schema.field(key).type))


def _key_error(
    model: str, key: str, value: str, row: int | None = None
) -> RequestError:
    place = "" if row is None else f"row {row}, "
    located = {"column": key} if row is None else {"row": row, "column": key}
    return RequestError(
        f"{place}column {key!r} of model {model!r} is an entity key of its feature "
        f"views and must be text, an integer or null, got {value}; send the "
        "key's value itself",
        model=model,
        **located,
    )
