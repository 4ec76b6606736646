"""Logged input rows converted to the feature columns of a batch drift check.

The prediction log keeps each input row as the version that served it
accepted it. A row logged by an older version, or before a column's type
changed, may not fit the request types of the reference version. It may
contain a text where a number is expected, an integer beyond its SQL type,
or a value DuckDB cannot cast. Such a row is left out of the features
computed from it, and the other rows are scored. `UnfitRows` counts the
rows left out and names the first of them in log order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.errors import RequestError, shown

Columns = dict[str, np.ndarray | list[Any]]
"""Feature values by name, as `batch_drift` reads the current window."""

SPLIT_QUERIES = 256
"""Queries of derived features over parts of the rows that one check may run
to find the rows whose expression fails. Beyond it, each part that still
fails is left out whole, so a check ends in seconds even when thousands of
rows fail."""
_ROW_PREFIX = re.compile(r"^row 0(, | of the request to )")
"""Start of a `RequestError` message on a one-row request, which names row 0
of that request and not the logged row."""


@dataclass(frozen=True)
class Unfit:
    """Reason one logged row does not fit the reference version's request types."""

    column: str | None
    """The column whose value does not fit, or None when a derived feature's
    SQL fails on the row as a whole."""
    value: Any
    """The logged value of `column`, or the row's request values when
    `column` is None."""
    error: str


@dataclass(frozen=True)
class UnfitRow:
    """A logged row left out of the features computed from it."""

    request_id: str
    row: int
    """Index of the row within its request."""
    column: str | None
    """As in `Unfit`."""
    value: Any
    """As in `Unfit`."""
    error: str

    def to_dict(self) -> dict[str, Any]:
        """Return the row as JSON-ready values."""
        return {
            "request_id": self.request_id,
            "row": self.row,
            "column": self.column,
            "value": self.value,
            "error": self.error,
        }


@dataclass(frozen=True)
class UnfitRows:
    """Logged rows of a check that do not fit the request types."""

    rows: int
    """Rows left out of at least one feature."""
    first: UnfitRow
    """The first of them in log order, which is the oldest."""


def unfit_rows(
    ids: Sequence[tuple[str, int]], found: Mapping[int, Unfit]
) -> UnfitRows | None:
    """Return the count and the first in log order of the unfit rows.

    Args:
        ids: Request id and row index of each logged row, newest first.
        found: The reason of each unfit row, by its index in `ids`.
    """
    if not found:
        return None
    oldest = max(found)
    request_id, row = ids[oldest]
    unfit = found[oldest]
    first = UnfitRow(request_id, row, unfit.column, unfit.value, unfit.error)
    return UnfitRows(len(found), first)


def numeric_columns(
    rows: Sequence[Mapping[str, Any]], names: Sequence[str], found: dict[int, Unfit]
) -> Columns:
    """Return the numeric features of the logged rows as float64 arrays.

    None is NaN, the missing value. A value that ``float`` cannot read, such
    as a text an older version accepted, is left out of its feature, and its
    row is added to `found` unless it is there already.
    """
    columns: Columns = {}
    for name in names:
        numbers = []
        for index, row in enumerate(rows):
            value = row.get(name)
            try:
                numbers.append(np.nan if value is None else float(value))
            except (TypeError, ValueError):
                error = f"column {name!r} is {shown(value)}, which is not a number"
                found.setdefault(index, Unfit(name, value, error))
        columns[name] = np.array(numbers, dtype=np.float64)
    return columns


def derived_columns(
    model: str,
    version: int,
    schema: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    found: dict[int, Unfit],
) -> Columns:
    """Compute the model's derived features over the logged rows that fit.

    The log contains the request columns and the feature views' columns that
    the daemon joined, but not the model's derived features. They are
    computed by the code that serving runs, with the SQL and request types of
    `schema`. Each row that does not fit is added to `found`, and the
    features are computed over the others. When no row fits, each derived
    feature is an empty column.

    Raises:
        IntegrityError: The schema of `version` contains SQL that is not one
            expression or one type per entry.
    """
    # Imported here: the serving package imports the monitoring package.
    from appliance.serving import check_schema_sql, request_spec

    derive: dict[str, str] = schema.get("derive", {})
    inputs = schema["inputs"]
    names = [spec["name"] for spec in inputs if spec["name"] in derive]
    if not names:
        return {}
    request = request_spec(schema)
    check_schema_sql(model, version, derive, request)
    typed = _TypedRows(model, derive, request, inputs)
    fit = typed.check_types(rows, found)
    parts = typed.compute([rows[i] for i in fit], fit, found)
    columns: Columns = {}
    for name in names:
        values = [part[name] for part in parts]
        joined = np.concatenate(values) if values else np.array([], dtype=object)
        if joined.dtype.kind == "f" or _is_numeric(inputs, name):
            columns[name] = joined.astype(np.float64)
        else:
            columns[name] = [v or "" for v in joined]
    return columns


class _TypedRows:
    """Conversion of logged rows to one version's request types."""

    def __init__(
        self,
        model: str,
        derive: Mapping[str, str],
        request: Sequence[Mapping[str, str]],
        inputs: Sequence[Mapping[str, str]],
    ) -> None:
        self.model = model
        self.derive = derive
        self.request = request
        self.inputs = inputs
        self.split_queries = 0

    def check_types(
        self, rows: Sequence[Mapping[str, Any]], found: dict[int, Unfit]
    ) -> list[int]:
        """Return the indexes of the rows that fit the request types.

        All rows are checked at once, and only when that fails one by one.
        """
        from appliance.serving import rows_to_columns

        try:
            rows_to_columns(self.model, self.request, rows)
            return list(range(len(rows)))
        except RequestError:
            pass
        fit = []
        for index, row in enumerate(rows):
            try:
                rows_to_columns(self.model, self.request, [row])
            except RequestError as exc:
                found.setdefault(index, self._unfit(row, exc))
            else:
                fit.append(index)
        return fit

    def compute(
        self,
        rows: list[Mapping[str, Any]],
        indexes: list[int],
        found: dict[int, Unfit],
    ) -> list[Mapping[str, np.ndarray]]:
        """Compute the derived features of `rows`, whose logged indexes are
        `indexes`, in parts, leaving out each row that DuckDB rejects.

        A value that cannot be cast to its dataset type is found for every
        row in one query. Then, when an expression still fails, the rows are
        split in halves until each failing row is alone.

        NOTE: k rows of n whose expression fails cost about 2 k log2(n)
        queries of a few milliseconds each. After `SPLIT_QUERIES` queries a
        part that fails is left out whole, rows that would fit included.
        DuckDB's TRY expression, which gives NULL for a row whose expression
        fails, could find them in one query.
        """
        from appliance.serving import cast_failures, rows_to_columns

        try:
            return self._compute(rows)
        except RequestError:
            pass
        columns, _ = rows_to_columns(self.model, self.request, rows)
        failures = cast_failures(self.request, columns)
        for position, (column, _) in failures.items():
            error = self._cast_error(rows[position], column)
            found.setdefault(indexes[position], error)
        castable = [i for i in range(len(rows)) if i not in failures]
        return self._split(
            [rows[i] for i in castable], [indexes[i] for i in castable], found
        )

    def _split(
        self,
        rows: list[Mapping[str, Any]],
        indexes: list[int],
        found: dict[int, Unfit],
    ) -> list[Mapping[str, np.ndarray]]:
        """Compute the derived features of `rows` in halves while DuckDB fails."""
        if not rows:
            return []
        self.split_queries += 1
        try:
            return self._compute(rows)
        except RequestError as exc:
            if len(rows) == 1:
                found.setdefault(indexes[0], self._unfit(rows[0], exc))
                return []
            if self.split_queries >= SPLIT_QUERIES:
                for index, row in zip(indexes, rows):
                    found.setdefault(index, self._unfit_part(row, len(rows), exc))
                return []
        half = len(rows) // 2
        first = self._split(rows[:half], indexes[:half], found)
        return first + self._split(rows[half:], indexes[half:], found)

    def _compute(self, rows: list[Mapping[str, Any]]) -> list[Mapping[str, np.ndarray]]:
        from appliance.serving import derived_features, rows_to_columns

        if not rows:
            return []
        columns, _ = rows_to_columns(self.model, self.request, rows)
        derived = derived_features(
            self.model, self.derive, self.request, self.inputs, columns
        )
        return [derived]

    def _cast_error(self, row: Mapping[str, Any], column: str) -> Unfit:
        """Return the reason DuckDB cannot cast the value of `column` in `row`."""
        from appliance.derive import CastError

        sql_type = next(s["sql_type"] for s in self.request if s["name"] == column)
        value = row.get(column)
        cast = CastError(column, 0, value, sql_type)
        error = f"column {column!r} of model {self.model!r}: {cast}"
        return Unfit(column, value, error)

    def _unfit(self, row: Mapping[str, Any], exc: RequestError) -> Unfit:
        """Return the reason a one-row request of `row` raised `exc`."""
        column = exc.detail.get("column")
        if column is not None:
            value = row.get(column)
        else:
            value = {spec["name"]: row.get(spec["name"]) for spec in self.request}
        return Unfit(column, value, _ROW_PREFIX.sub("", str(exc)))

    def _unfit_part(
        self, row: Mapping[str, Any], size: int, exc: RequestError
    ) -> Unfit:
        """Return the reason `row` was left out with the failing part of `size`
        rows it belongs to, once the check ran `SPLIT_QUERIES` queries."""
        value = {spec["name"]: row.get(spec["name"]) for spec in self.request}
        error = (
            f"left out with the {size} rows of its part, because a derived "
            f"feature failed on one of them and the check stopped splitting "
            f"parts after {SPLIT_QUERIES} queries: {_ROW_PREFIX.sub('', str(exc))}"
        )
        return Unfit(None, value, error)


def _is_numeric(inputs: Sequence[Mapping[str, str]], name: str) -> bool:
    return any(spec["name"] == name and spec["type"] == "number" for spec in inputs)
