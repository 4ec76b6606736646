"""Warnings about request rows that a feature view has no values for.

A row whose entity key is not in a view, or for which the view has no row
available at the row's event time within the view's ``ttl``, gets every
column of that view as a missing value. The model still predicts from it, so the
response lists such views under ``warnings`` instead of rejecting the rows.
A view whose matching row holds only missing values is reported the same
way, because the model gets the same input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from appliance.errors import shown
from appliance.features import FeatureServer


def view_columns(features: FeatureServer, model: str) -> dict[str, list[str]]:
    """Return the columns each of `model`'s feature views fills, by view name."""
    lookup = features.request_lookup(model)
    if lookup is None:
        return {}
    columns: dict[str, list[str]] = {}
    for name, view in lookup.filled.items():
        columns.setdefault(view, []).append(name)
    return columns


def row_miss_warnings(
    features: FeatureServer,
    model: str,
    sent: Sequence[Any],
    filled: Sequence[Mapping[str, Any]],
) -> list[str]:
    """Return a warning per view that filled none of its columns in some rows.

    Args:
        sent: The JSON rows as the request sent them.
        filled: The same rows after the lookup.
    """
    warnings: list[str] = []
    by_view = view_columns(features, model)
    keys = _view_keys(features, model) if by_view else {}
    for view, columns in by_view.items():
        missed = [
            index
            for index, (row, out) in enumerate(zip(sent, filled))
            if not any(name in row for name in columns)
            and all(out.get(name) is None for name in columns)
        ]
        if missed:
            first = {key: sent[missed[0]].get(key) for key in keys[view]}
            warnings.append(_warning(view, columns, missed, len(sent), first))
    return warnings


def table_miss_warnings(
    features: FeatureServer,
    model: str,
    sent: pa.Table,
    filled: pa.Table,
    place: Callable[[int], str] | None = None,
) -> list[str]:
    """Return a warning per view that filled none of its columns in some rows.

    `place` names where a row index is, such as a file's line; by default
    the warning names ``row N``, counted from 0.
    """
    # Imported here because only Arrow requests need it, as in `_text_checks`.
    import pyarrow.compute as pc

    warnings: list[str] = []
    by_view = view_columns(features, model)
    keys = _view_keys(features, model) if by_view else {}
    for view, columns in by_view.items():
        if any(name in sent.column_names for name in columns):
            continue
        present = [name for name in columns if name in filled.column_names]
        if not present:
            continue
        empty = pc.is_null(filled.column(present[0]))
        for name in present[1:]:
            empty = pc.and_(empty, pc.is_null(filled.column(name)))
        missed = pc.indices_nonzero(empty).to_pylist()
        if missed:
            first = {key: _key_value(filled, key, missed[0]) for key in keys[view]}
            warnings.append(
                _warning(view, columns, missed, sent.num_rows, first, place)
            )
    return warnings


def _view_keys(features: FeatureServer, model: str) -> dict[str, tuple[str, ...]]:
    declared, _ = features.models[model]
    return {view.name: view.entities for view in declared}


def _key_value(table: pa.Table, name: str, index: int) -> Any:
    """Return the key in column `name`, row `index` of `table`, for a message.

    Only the key columns are converted, because other columns of the row may
    hold values Python cannot represent. A key that Python cannot represent
    either, such as a nanosecond time or a year past 9999, is returned as
    Arrow's text for it.
    """
    if name not in table.column_names:
        return None
    scalar = table.column(name)[index]
    try:
        return scalar.as_py()
    except (ValueError, OverflowError, pa.ArrowException):
        import pyarrow.compute as pc

        return pc.cast(scalar, pa.string()).as_py()


def _warning(
    view: str,
    columns: Sequence[str],
    missed: Sequence[int],
    total: int,
    first: Mapping[str, Any],
    place: Callable[[int], str] | None = None,
) -> str:
    key = ", ".join(
        f"{name}={'null' if value is None else shown(value)}"
        for name, value in first.items()
    )
    where = place(missed[0]) if place is not None else f"row {missed[0]}"
    return (
        f"feature view {view!r} has no values for {len(missed)} of {total} rows, "
        f"first {where} ({key}), so its columns {', '.join(columns)} "
        "were missing values; check the entity keys and the event time against "
        "the view's rows and its ttl"
    )
