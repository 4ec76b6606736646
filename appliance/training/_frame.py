"""Training frames: the rows and columns a model learns from, read with DuckDB.

Categorical features arrive as text with ``""`` for missing and numeric
features as float64 with NaN for missing: the same encoding the serving path
feeds to ONNX, so native and exported models see identical inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from appliance.config import FeatureViewConfig, ModelConfig
from appliance.derive import (
    derived_inputs,
    feature_columns,
    quote_identifier,
    select_sql,
    utc_cursor,
)
from appliance.errors import TrainingError
from appliance.features import FeatureStore, model_views, open_store, repeated_keys
from appliance.sqltypes import INTEGER_TYPES
from appliance.storage import (
    Catalog,
    DatasetVersion,
    encrypted_columns,
    incomplete_files_message,
    latest_version,
    lost_files_message,
    scan_sql,
)
from appliance.training._data_checks import (
    check_split_sizes,
    check_stratified,
    empty_feature_warnings,
    group_column_warnings,
    text_number_warnings,
    unused_derive_warnings,
)
from appliance.training._stop import StopCheck

logger = logging.getLogger(__name__)

_NUMERIC_TYPES = (*INTEGER_TYPES, "FLOAT", "DOUBLE", "BOOLEAN")
_GROUP = "__split_group__"
_TIME = "__event_time__"
_ORDER = "__row_order__"
"""Position of a row in its dataset version, numbered before any join, so the
frame's row order (and with it every split) does not depend on how DuckDB
happened to run a hash join."""
_READING = "while reading the training frame"
"""Step named by a `TrainingStopped` that `load_frame` raises."""


@dataclass(frozen=True)
class TrainingWindow:
    """Rows of a retraining by their `event_timestamp`, in place of ``where``.

    Training rows have event times from `start` (every earlier row when None)
    up to `holdout_start`; holdout rows from `holdout_start` to `end`.
    """

    holdout_start: datetime
    end: datetime
    start: datetime | None = None
    max_rows: int | None = None
    """Most training rows kept, the latest by event time; all when None."""
    refit: bool = False
    """Train on the holdout rows too; the holdout metrics are then in-sample."""
    reference_metrics: dict[str, float] | None = field(default=None, compare=False)
    """Holdout metrics of the challenger that a refit trains again, measured on
    rows it did not train on. The refit version is judged live against them."""

    def to_dict(self) -> dict[str, Any]:
        """Return the window as JSON-ready values."""
        return {
            "start": self.start.isoformat() if self.start else None,
            "holdout_start": self.holdout_start.isoformat(),
            "end": self.end.isoformat(),
            "max_rows": self.max_rows,
            "refit": self.refit,
        }


@dataclass
class TrainingFrame:
    """Features and target of one model, split into training and holdout rows."""

    dataset_version: str
    numeric: list[str]
    categorical: list[str]
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: np.ndarray
    y_test: np.ndarray
    classes: list[Any] | None
    """Class values in index order; the target is encoded as their indices."""
    unlabelled: int
    """Rows left out because their target is missing."""
    request: list[dict[str, str]]
    """Columns a prediction request sends, with their JSON and DuckDB types."""
    derive: dict[str, str]
    """Derived features that serving computes from the request columns."""
    base_sql: str = ""
    """SELECT of the dataset rows with the derived columns, after ``where``."""
    feature_versions: dict[str, str] = field(default_factory=dict)
    """Version read of each dataset that the model's feature views read."""
    warnings: list[str] = field(default_factory=list)
    """Problems of the data that training worked around, for the run's record."""
    db: Any = field(default=None, repr=False)
    """Connection `base_sql` runs on: the feature store, whose ``cursor`` can read
    the joined rows, when the model joins feature views, else None for the
    catalog's connection."""

    @property
    def features(self) -> list[str]:
        """Every input column, numeric first."""
        return self.numeric + self.categorical


def load_frame(
    catalog: Catalog,
    cfg: ModelConfig,
    views: Mapping[str, FeatureViewConfig] | None = None,
    window: TrainingWindow | None = None,
    stop: StopCheck | None = None,
) -> TrainingFrame:
    """Read the latest version of the model's dataset and split it.

    The model's feature views are joined point in time: each row sees the
    feature values available at its `event_timestamp`, never later ones. With
    a `window`, the rows and the split come from it instead of the model's
    ``where`` and ``split``. A set `stop` interrupts the DuckDB queries on
    the feature store's connection and on the cursor that reads the rows,
    never a query on `catalog`'s own connection.

    Raises:
        TrainingError: A column is missing or of an unusable type, the filter is
            invalid, the target has fewer than two classes, or the window has
            no training or no holdout rows.
        TrainingStopped: `stop` was set.
    """
    stop = stop or StopCheck()
    with stop.interrupting(_READING) as watch:
        return _read_frame(catalog, cfg, views or {}, window, stop, watch)


def _read_frame(
    catalog: Catalog,
    cfg: ModelConfig,
    views: Mapping[str, FeatureViewConfig],
    window: TrainingWindow | None,
    stop: StopCheck,
    watch: Callable[[Any], Any],
) -> TrainingFrame:
    if window is not None and not cfg.event_timestamp:
        raise TrainingError(
            f"model {cfg.name!r} has no event_timestamp, so it cannot be trained "
            "on a time window; set event_timestamp in its [models] table"
        )
    version = latest_version(catalog, cfg.dataset)
    assert version is not None
    columns = _check_readable(catalog, cfg, version)
    _check_join_columns(cfg, views, columns)
    store = open_store(catalog) if cfg.feature_views else None
    # The in-memory store is not closed here: `base_sql` reads it, so it stays
    # open as long as the frame that refers to it. Only this frame uses it.
    db: Any = catalog.db if store is None else store
    if store is not None:
        watch(store.db)
    source = _rows_source(cfg, version, store, views)
    stop(_READING)
    feature_versions: dict[str, str] = {}
    warnings: list[str] = []
    if store is not None:
        joined = model_views(cfg.feature_views, views)
        feature_versions = store.versions_read(joined)
        _check_key_storage(cfg, version, store, joined)
        warnings = _repeated_key_warnings(cfg, store, joined)
    found = group_column_warnings(cfg) + unused_derive_warnings(cfg)
    base = _base_sql(db, source, cfg, window)
    schema = _describe(db, base, cfg)
    features = _feature_names(cfg, schema, encrypted_columns(version))
    numeric, categorical = _split_kinds(cfg, features, schema)
    if cfg.target not in schema:
        raise TrainingError(
            f"target column {cfg.target!r} of model {cfg.name!r} is not in dataset "
            f"{cfg.dataset!r}; columns: {', '.join(schema)}"
        )

    derive, raw = derived_inputs(cfg.derive, features)
    request = request_columns(features, categorical, derive, raw, schema)
    frame = _query(db, base, cfg, numeric, categorical, window is not None, watch)
    stop(_READING)
    _check_values(cfg, frame, numeric)
    found += text_number_warnings(cfg, frame, categorical)
    labelled = frame[cfg.target].notna()
    unlabelled = int((~labelled).sum())
    frame = frame[labelled].reset_index(drop=True)
    if frame.empty:
        raise TrainingError(_no_rows_message(cfg, version.version, window, unlabelled))
    if window is not None:
        train_idx, test_idx = window_split(cfg, frame[_TIME].to_numpy(), window)
        # A refit's training rows include the holdout rows. Each row is kept
        # once, because a repeated position would train on the row twice.
        keep = np.union1d(train_idx, test_idx)
        frame = frame.iloc[keep].reset_index(drop=True)
        train_idx, test_idx = window_split(cfg, frame[_TIME].to_numpy(), window)
    y, classes = _encode_target(cfg, frame[cfg.target])
    stop(_READING)
    if window is None:
        train_idx, test_idx = _split(cfg, frame, y, classes or [])
    x = frame[numeric + categorical]
    found += empty_feature_warnings(cfg, x.iloc[train_idx])
    for warning in found:
        logger.warning("training data model=%s warning=%r", cfg.name, warning)
    logger.info(
        "frame loaded model=%s dataset=%s version=%s rows=%d unlabelled=%d "
        "feature_datasets=%s",
        cfg.name,
        cfg.dataset,
        version.version,
        len(frame),
        unlabelled,
        ",".join(f"{d}@{v}" for d, v in sorted(feature_versions.items())) or "none",
    )
    return TrainingFrame(
        dataset_version=version.version,
        numeric=numeric,
        categorical=categorical,
        x_train=x.iloc[train_idx].reset_index(drop=True),
        x_test=x.iloc[test_idx].reset_index(drop=True),
        y_train=y[train_idx],
        y_test=y[test_idx],
        classes=classes,
        unlabelled=unlabelled,
        request=request,
        derive=derive,
        base_sql=base,
        feature_versions=feature_versions,
        warnings=warnings + found,
        db=store,
    )


def derived_sample(
    catalog: Catalog, frame: TrainingFrame, rows: int = 2000
) -> tuple[pa.Table, pd.DataFrame]:
    """Return sample rows as a request would send them and their derived features.

    The sample is a seeded reservoir of the dataset plus up to 200 rows with a
    missing request value, so expressions are checked on missing values too.

    Returns:
        The request columns as stored in the dataset, and the derived features
        as the training frame computed them.
    """
    request = [c["name"] for c in frame.request]
    numeric = [n for n in frame.derive if n in frame.numeric]
    categorical = [n for n in frame.derive if n in frame.categorical]
    raw = ", ".join(_ident(n) for n in request)
    derived = ", ".join(feature_columns(numeric, categorical))
    any_null = " OR ".join(f"{_ident(n)} IS NULL" for n in request)
    sql = (
        f"(SELECT {raw}, {derived} FROM ({frame.base_sql}) "
        f"USING SAMPLE reservoir({rows} ROWS) REPEATABLE (0)) UNION ALL "
        f"(SELECT {raw}, {derived} FROM ({frame.base_sql}) WHERE {any_null} "
        "LIMIT 200)"
    )
    with utc_cursor(frame.db or catalog.db) as db:
        table = db.sql(sql).to_arrow_table()
    names = table.column_names
    request_table = table.select(list(range(len(request))))
    expected = table.select(list(range(len(request), len(names)))).to_pandas()
    return request_table, expected


def request_columns(
    features: list[str],
    categorical: list[str],
    derive: dict[str, str],
    raw: set[str],
    schema: dict[str, str],
) -> list[dict[str, str]]:
    """Return the columns of a prediction request and their types.

    A request sends every feature that is not derived, plus the dataset
    columns that the derived features read. ``type`` is how the JSON value is
    checked: ``integer``, ``number``, ``boolean``, ``string``, or ``sql`` for a
    value that DuckDB casts to ``sql_type``, the column's type in the dataset.
    """
    names = [n for n in features if n not in derive]
    names += sorted(raw - set(names))
    columns = []
    for name in names:
        sql_type = schema[name]
        if name in categorical:
            kind = "string"
        elif sql_type in INTEGER_TYPES:
            kind = "integer"
        elif sql_type == "BOOLEAN":
            kind = "boolean"
        elif sql_type in _NUMERIC_TYPES or sql_type.startswith("DECIMAL"):
            kind = "number"
        elif sql_type == "VARCHAR":
            kind = "string"
        else:
            kind = "sql"
        columns.append({"name": name, "type": kind, "sql_type": sql_type})
    return columns


def _rows_source(
    cfg: ModelConfig,
    version: DatasetVersion,
    store: FeatureStore | None,
    views: Mapping[str, FeatureViewConfig],
    narrow: Callable[[str], str] | None = None,
) -> str:
    """Return the dataset rows, with the feature views joined point in time.

    `narrow` takes the SELECT of the numbered dataset rows and returns a
    SELECT of fewer of them, such as a sample, which is then joined in their
    place.
    """
    numbered = f"SELECT *, row_number() OVER () AS {_ORDER} FROM "
    table = f"({scan_sql(version)})" if store is None else _ident(cfg.dataset)
    rows = numbered + table
    if narrow is not None:
        rows = narrow(rows)
    if store is None:
        return f"({rows})"
    joined = model_views(cfg.feature_views, views)
    try:
        return store.joined_source(rows, joined, cfg.event_timestamp, _ORDER)
    except duckdb.InterruptException:
        raise
    except duckdb.Error as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        failed = _failed_derive(store, rows, joined, cfg.event_timestamp)
        if failed is not None:
            view, name = failed
            raise TrainingError(
                f"cannot join feature views {', '.join(cfg.feature_views)} to the "
                f"rows of model {cfg.name!r}: derived column {name!r} = "
                f"{view.derive[name]!r} of feature view {view.name!r} failed: "
                f"{reason}; fix the expression (TRY_CAST gives NULL for a value "
                "that does not convert) or the rows it reads"
            ) from None
        if store.unreadable:
            lost = "; ".join(error for _, error in sorted(store.unreadable.items()))
            raise TrainingError(
                f"cannot join feature views {', '.join(cfg.feature_views)} to the "
                f"rows of model {cfg.name!r}: {reason}, because {lost}"
            ) from None
        raise TrainingError(
            f"cannot join feature views {', '.join(cfg.feature_views)} to the rows "
            f"of model {cfg.name!r}: {reason}; check the views' derive expressions "
            f"and the values of {cfg.event_timestamp!r}"
        ) from None


def _check_readable(
    catalog: Catalog, cfg: ModelConfig, version: DatasetVersion
) -> list[str]:
    """Return the columns of the model's dataset version, checking that its
    files can be read and contain the rows the version recorded.

    Raises:
        TrainingError: The files are missing or unreadable, named with the
            fix by `lost_files_message`.
    """
    try:
        with catalog.db.cursor() as cursor:
            rows = cursor.execute(f"DESCRIBE {scan_sql(version)}").fetchall()
            incomplete = incomplete_files_message(cursor, version)
    except (duckdb.IOException, duckdb.InvalidInputException):
        raise TrainingError(
            f"cannot train model {cfg.name!r}: {lost_files_message(version)}"
        ) from None
    if incomplete is not None:
        raise TrainingError(f"cannot train model {cfg.name!r}: {incomplete}")
    return [name for name, *_ in rows]


def _check_join_columns(
    cfg: ModelConfig, views: Mapping[str, FeatureViewConfig], columns: list[str]
) -> None:
    """Raise when the dataset lacks the event time or a view's entity key column.

    The feature views are joined to the dataset's own columns, matched by
    exact name. Without views, the event time is read by SQL after the
    model's derived columns are added, which matches names without case.

    Raises:
        TrainingError: Naming the model, the column and the dataset's columns.
    """
    listed = ", ".join(columns)
    time = cfg.event_timestamp
    if time is not None and time not in columns:
        known = {name.lower() for name in [*columns, *cfg.derive]}
        if cfg.feature_views or time.lower() not in known:
            raise TrainingError(
                f"event_timestamp {time!r} of model {cfg.name!r} is not a column "
                f"of dataset {cfg.dataset!r}; its columns: {listed}. Set "
                "event_timestamp to the column of each row's event time"
            )
    for view in model_views(cfg.feature_views, views):
        missing = [key for key in view.entities if key not in columns]
        if missing:
            raise TrainingError(
                f"model {cfg.name!r} joins feature view {view.name!r} on entity "
                f"key {missing[0]!r}, which dataset {cfg.dataset!r} does not "
                f"have; its columns: {listed}. Ingest the dataset with that "
                "column, or remove the view from the model's feature_views"
            )


def _failed_derive(
    store: FeatureStore,
    rows: str,
    views: list[FeatureViewConfig],
    event_time: str | None,
) -> tuple[FeatureViewConfig, str] | None:
    """Return the view and the name of the first derived column whose join fails.

    Each derived column is joined with those declared before it, so an
    expression that reads an earlier one still works. Only a failed join
    pays for these extra joins. Returns None when the join fails without
    any derived column.
    """
    for position, view in enumerate(views):
        names = list(view.derive)
        for count in range(len(names) + 1):
            prefix = dict(list(view.derive.items())[:count])
            tried = [
                *views[:position],
                replace(view, derive=prefix),
                *(replace(later, derive={}) for later in views[position + 1 :]),
            ]
            try:
                store.joined_source(rows, tried, event_time, _ORDER)
            except duckdb.Error:
                return (view, names[count - 1]) if count else None
    return None


def _repeated_key_warnings(
    cfg: ModelConfig, store: FeatureStore, views: list[FeatureViewConfig]
) -> list[str]:
    """Return a warning per view with repeated keys, each logged as well."""
    warnings = []
    for view in views:
        found = repeated_keys(store.db, view)
        if found is None:
            continue
        logger.warning(
            "feature view repeats entity keys model=%s view=%s keys=%s "
            "repeated=%d dropped_rows=%d example=%r",
            cfg.name,
            view.name,
            ",".join(view.entities),
            found.keys,
            found.dropped,
            found.example,
        )
        warnings.append(found.message())
    return warnings


def _no_rows_message(
    cfg: ModelConfig, version: str, window: TrainingWindow | None, unlabelled: int
) -> str:
    """Describe a selection without labelled rows, leading with its cause.

    A retraining window selects rows by event time alone, because it takes
    the place of the model's `where`.
    """
    place = f"dataset {cfg.dataset!r} version {version}"
    if window is not None:
        start = window.start.isoformat() if window.start is not None else "the first"
        head = (
            f"model {cfg.name!r} has no labelled rows with {cfg.event_timestamp} "
            f"from {start} to {window.end.isoformat()}, the retraining window, "
            f"in {place}"
        )
    else:
        head = f"model {cfg.name!r} has no labelled rows in {place}"
    if unlabelled:
        return (
            f"{head}; the {unlabelled} rows selected have no value in the target "
            f"column {cfg.target!r}, so check that column"
        )
    if window is None and cfg.where:
        return f"{head}; its where filter selects no row, so check 'where'"
    return head


def _base_sql(
    db: duckdb.DuckDBPyConnection,
    source: str,
    cfg: ModelConfig,
    window: TrainingWindow | None = None,
) -> str:
    sql = select_sql(cfg.derive, _missing_as_null(db, source))
    if window is not None:
        return f"SELECT * FROM ({sql}) WHERE {window_condition(cfg, window)}"
    if cfg.where:
        sql = f"SELECT * FROM ({sql}) WHERE ({cfg.where})"
    return sql


def window_condition(cfg: ModelConfig, window: TrainingWindow) -> str:
    """Return the SQL condition of the rows with event times in `window`."""
    time = f"CAST({_ident(cfg.event_timestamp or '')} AS TIMESTAMPTZ)"
    where = f"{time} <= '{window.end.isoformat()}'::TIMESTAMPTZ"
    if window.start is not None:
        where += f" AND {time} >= '{window.start.isoformat()}'::TIMESTAMPTZ"
    return where


def window_split(
    cfg: ModelConfig, times: np.ndarray, window: TrainingWindow
) -> tuple[np.ndarray, np.ndarray]:
    """Return the training and holdout row positions of a window.

    Raises:
        TrainingError: The window has no training or no holdout rows.
    """
    stamps = pd.to_datetime(pd.Series(times), utc=True)
    holdout_start = pd.Timestamp(window.holdout_start)
    end = pd.Timestamp(window.end)
    holdout = np.array((stamps >= holdout_start) & (stamps <= end), dtype=bool)
    train = np.array(stamps < holdout_start, dtype=bool)
    if window.start is not None:
        train &= np.array(stamps >= pd.Timestamp(window.start), dtype=bool)
    rows = np.flatnonzero(train)
    if window.max_rows is not None and rows.size > window.max_rows:
        # Keep the rows with the latest times, not the last positions.
        order = rows[np.argsort(stamps.to_numpy()[rows], kind="stable")]
        train[order[: rows.size - window.max_rows]] = False
    if not holdout.any():
        raise TrainingError(
            f"model {cfg.name!r} has no labelled rows with {cfg.event_timestamp} "
            f"from {window.holdout_start.isoformat()} to {window.end.isoformat()}, "
            "the holdout; send labelled rows of that period or lengthen "
            "holdout_days"
        )
    if not train.any():
        raise TrainingError(
            f"model {cfg.name!r} has no labelled rows with {cfg.event_timestamp} "
            f"before {window.holdout_start.isoformat()} to train on; send older "
            "labelled rows or lengthen window_days"
        )
    if window.refit:
        train |= holdout
    return np.flatnonzero(train), np.flatnonzero(holdout)


def _missing_as_null(db: duckdb.DuckDBPyConnection, source: str) -> str:
    """Return `source` with NaN and ``''`` read as NULL, as serving reads them.

    A request's null, NaN and ``"NaN"`` all mean missing, so derived columns
    and filters must see one missing value at training too.
    """
    rows = db.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    replaced = []
    for name, kind, *_ in rows:
        column = _ident(name)
        if kind in ("FLOAT", "DOUBLE"):
            replaced.append(f"CASE WHEN isnan({column}) THEN NULL ELSE {column} END")
        elif kind == "VARCHAR":
            replaced.append(f"nullif({column}, '')")
        else:
            continue
        replaced[-1] += f" AS {column}"
    if not replaced:
        return source
    return f"(SELECT * REPLACE ({', '.join(replaced)}) FROM {source})"


def _describe(
    db: duckdb.DuckDBPyConnection, base: str, cfg: ModelConfig
) -> dict[str, str]:
    try:
        rows = db.execute(f"DESCRIBE {base}").fetchall()
    except duckdb.Error as exc:
        raise TrainingError(
            f"invalid 'where' or 'derive' of model {cfg.name!r}: {exc}"
        ) from None
    return {name: kind for name, kind, *_ in rows if name != _ORDER}


def _check_key_storage(
    cfg: ModelConfig,
    version: DatasetVersion,
    store: FeatureStore,
    views: Sequence[FeatureViewConfig],
) -> None:
    """Reject a join on a key that one side stores encrypted and the other not.

    Such a join matches no row, as after ``sensitive`` changed and only some
    datasets were ingested again.

    Raises:
        TrainingError: Naming the key and the dataset version to ingest again.
    """
    own = set(encrypted_columns(version))
    for view in views:
        for key in view.entities:
            if (key in own) == (key in store.encrypted):
                continue
            plain = (
                f"{version.dataset}@{version.version}"
                if key not in own
                else f"the datasets of feature view {view.name!r}"
            )
            raise TrainingError(
                f"model {cfg.name!r} joins feature view {view.name!r} on {key!r}, "
                f"which {plain} stores in plaintext while the other side stores "
                "it encrypted, so the join would match no row; ingest it again "
                "with --mode replace so that both store it as declared sensitive"
            )


def _feature_names(
    cfg: ModelConfig, schema: dict[str, str], encrypted: list[str]
) -> list[str]:
    """Return the model's features; by default every column but the target,
    the split column, derived columns and encrypted columns.

    The column of a group split is never a feature, even when listed, because
    a model that reads the group id defeats the split (`group_column_warnings`
    reports a listed one).
    """
    group = cfg.split.column if cfg.split.method == "group" else None
    if cfg.features is not None:
        missing = [name for name in cfg.features if name not in schema]
        if missing:
            raise TrainingError(
                f"feature {missing[0]!r} of model {cfg.name!r} is not in dataset "
                f"{cfg.dataset!r}; columns: {', '.join(schema)}"
            )
        return [name for name in cfg.features if name != group]
    excluded = {cfg.target, cfg.split.column, *cfg.derive, *encrypted}
    return [name for name in schema if name not in excluded]


def _split_kinds(
    cfg: ModelConfig, features: list[str], schema: dict[str, str]
) -> tuple[list[str], list[str]]:
    numeric, categorical = [], []
    for name in features:
        kind = schema[name]
        if name in cfg.categorical or kind == "VARCHAR":
            categorical.append(name)
        elif kind in _NUMERIC_TYPES or kind.startswith("DECIMAL"):
            numeric.append(name)
        else:
            raise TrainingError(
                f"feature {name!r} of model {cfg.name!r} has type {kind}, which is "
                "neither numeric nor text; leave it out of 'features' or list it "
                "in 'categorical'"
            )
    if not numeric and not categorical:
        raise TrainingError(f"model {cfg.name!r} has no features")
    return numeric, categorical


def _query(
    db: duckdb.DuckDBPyConnection,
    base: str,
    cfg: ModelConfig,
    numeric: list[str],
    categorical: list[str],
    windowed: bool = False,
    watch: Callable[[Any], Any] | None = None,
) -> pd.DataFrame:
    columns = feature_columns(numeric, categorical)
    columns.append(f"{_ident(cfg.target)}")
    order = f" ORDER BY {_ORDER}"
    if windowed:
        time = _ident(cfg.event_timestamp or "")
        columns.append(f"CAST({time} AS TIMESTAMPTZ) AS {_TIME}")
        order = f" ORDER BY {_TIME}, {_ORDER}"
    elif cfg.split.method == "group":
        columns.append(f"{_ident(cfg.split.column or '')} AS {_GROUP}")
    if not windowed and cfg.split.method == "time":
        order = f" ORDER BY {_ident(cfg.split.column or '')}, {_ORDER}"
    sql = f"SELECT {', '.join(columns)} FROM ({base}){order}"
    try:
        with utc_cursor(db) as cursor:
            if watch is not None:
                watch(cursor)
            return cursor.execute(sql).df()
    except duckdb.InterruptException:
        raise
    except duckdb.Error as exc:
        raise TrainingError(
            f"cannot read training rows of {cfg.name!r}: {exc}"
        ) from None


def _encode_target(
    cfg: ModelConfig, target: pd.Series
) -> tuple[np.ndarray, list[Any] | None]:
    if cfg.task == "regression":
        try:
            return target.astype("float64").to_numpy(), None
        except (TypeError, ValueError):
            raise TrainingError(
                f"target column {cfg.target!r} of regression model {cfg.name!r} is "
                "not numeric"
            ) from None
    values = [_plain(v) for v in target.tolist()]
    classes = sorted(set(values), key=lambda v: (str(type(v)), v))
    if len(classes) < 2:
        raise TrainingError(
            f"target column {cfg.target!r} of model {cfg.name!r} has a single class "
            f"{classes[0]!r}; a classifier needs at least two"
        )
    index = {value: i for i, value in enumerate(classes)}
    return np.array([index[v] for v in values], dtype=np.int64), classes


def _split(
    cfg: ModelConfig, frame: pd.DataFrame, y: np.ndarray, classes: list[Any]
) -> tuple[Any, Any]:
    """Return the training and holdout row positions of the model's split.

    Training checks the sizes of both sides with `check_frame`; only a
    stratified split checks them here, before scikit-learn rejects them.

    Raises:
        TrainingError: A side would have no rows, or a stratified split has
            a class of one row or more classes than holdout rows.
    """
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(frame))
    split = cfg.split
    n_test = int(round(len(rows) * split.test_size))
    if n_test < 1 or n_test >= len(rows):
        raise TrainingError(
            f"model {cfg.name!r} has {len(rows)} labelled rows, too few to hold out "
            f"{split.test_size:.0%} for evaluation; add labelled rows"
        )
    if split.method == "time":
        return rows[:-n_test], rows[-n_test:]
    if split.method == "group":
        return _group_split(cfg, frame, rows)
    stratify = None
    if split.method == "stratified":
        check_stratified(cfg, y, classes)
        check_split_sizes(cfg, len(rows) - n_test, n_test, classes)
        stratify = y
    try:
        return train_test_split(
            rows, test_size=n_test, random_state=split.seed, stratify=stratify
        )
    except ValueError as exc:
        raise TrainingError(f"cannot split the rows of {cfg.name!r}: {exc}") from None


def _group_split(
    cfg: ModelConfig, frame: pd.DataFrame, rows: np.ndarray
) -> tuple[Any, Any]:
    from sklearn.model_selection import GroupShuffleSplit

    groups = frame[_GROUP].astype(str).where(frame[_GROUP].notna(), "")
    if groups.nunique() < 2:
        raise TrainingError(
            f"split column {cfg.split.column!r} of model {cfg.name!r} has "
            f"{groups.nunique()} distinct value; a group split needs at least two"
        )
    splitter = GroupShuffleSplit(
        n_splits=1, test_size=cfg.split.test_size, random_state=cfg.split.seed
    )
    train, test = next(splitter.split(rows, groups=groups.to_numpy()))
    return rows[train], rows[test]


def _check_values(cfg: ModelConfig, frame: pd.DataFrame, numeric: list[str]) -> None:
    """Reject infinite numeric values and values outside the model's checks."""
    for name in numeric:
        values = frame[name].to_numpy(dtype=np.float64)
        infinite = np.isinf(values)
        if infinite.any():
            raise TrainingError(
                f"feature {name!r} of model {cfg.name!r} has {int(infinite.sum())} "
                f"infinite values, first at row {int(np.argmax(infinite))}; filter "
                "them out with 'where'"
            )
        bounds = cfg.checks.get(name, {})
        low, high = bounds.get("min", -np.inf), bounds.get("max", np.inf)
        outside = (values < low) | (values > high)
        if outside.any():
            first = int(np.argmax(outside))
            raise TrainingError(
                f"feature {name!r} of model {cfg.name!r} has {int(outside.sum())} "
                f"values outside checks.{name} (min {low}, max {high}), first "
                f"{float(values[first])!r} at row {first}; filter them out with "
                "'where' or widen the check"
            )


def _plain(value: Any) -> Any:
    """Convert numpy scalars to Python values so classes serialize as JSON."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _ident(name: str) -> str:
    return quote_identifier(name)
