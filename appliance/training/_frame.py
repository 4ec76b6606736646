"""Training frames: the rows and columns a model learns from, read with DuckDB.

Categorical features arrive as text with ``""`` for missing and numeric
features as float64 with NaN for missing: the same encoding the serving path
feeds to ONNX, so native and exported models see identical inputs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from appliance.config import ModelConfig
from appliance.derive import (
    derived_inputs,
    feature_columns,
    quote_identifier,
    select_sql,
    utc_cursor,
)
from appliance.errors import TrainingError
from appliance.storage import Catalog, latest_version

logger = logging.getLogger(__name__)

_NUMERIC_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "BOOLEAN",
)
_INTEGER_TYPES = _NUMERIC_TYPES[:9]
_GROUP = "__split_group__"


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

    @property
    def features(self) -> list[str]:
        """Every input column, numeric first."""
        return self.numeric + self.categorical


def load_frame(catalog: Catalog, cfg: ModelConfig) -> TrainingFrame:
    """Read the latest version of the model's dataset and split it.

    Raises:
        TrainingError: A column is missing or of an unusable type, the filter is
            invalid, or the target has fewer than two classes.
    """
    version = latest_version(catalog, cfg.dataset)
    assert version is not None
    base = _base_sql(catalog, str(version.path), cfg)
    schema = _describe(catalog, base, cfg)
    features = _feature_names(cfg, schema)
    numeric, categorical = _split_kinds(cfg, features, schema)
    if cfg.target not in schema:
        raise TrainingError(
            f"target column {cfg.target!r} of model {cfg.name!r} is not in dataset "
            f"{cfg.dataset!r}; columns: {', '.join(schema)}"
        )

    derive, raw = derived_inputs(cfg.derive, features)
    request = request_columns(features, categorical, derive, raw, schema)
    frame = _query(catalog, base, cfg, numeric, categorical)
    _check_values(cfg, frame, numeric)
    labelled = frame[cfg.target].notna()
    unlabelled = int((~labelled).sum())
    frame = frame[labelled].reset_index(drop=True)
    if frame.empty:
        raise TrainingError(
            f"model {cfg.name!r} has no labelled rows in dataset {cfg.dataset!r} "
            f"version {version.version}; check 'where' and the target column"
        )
    y, classes = _encode_target(cfg, frame[cfg.target])
    train_idx, test_idx = _split(cfg, frame, y)
    x = frame[numeric + categorical]
    logger.info(
        "frame loaded model=%s dataset=%s version=%s rows=%d unlabelled=%d",
        cfg.name,
        cfg.dataset,
        version.version,
        len(frame),
        unlabelled,
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
    with utc_cursor(catalog.db) as db:
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
        elif sql_type in _INTEGER_TYPES:
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


def _base_sql(catalog: Catalog, path: str, cfg: ModelConfig) -> str:
    # The lake folder is named ``version=ID``, so DuckDB's hive partitioning
    # would add a column ``version`` that then becomes a feature.
    source = f"read_parquet({_literal(path)}, hive_partitioning = false)"
    sql = select_sql(cfg.derive, _missing_as_null(catalog, source))
    if cfg.where:
        sql = f"SELECT * FROM ({sql}) WHERE ({cfg.where})"
    return sql


def _missing_as_null(catalog: Catalog, source: str) -> str:
    """Return `source` with NaN and ``''`` read as NULL, as serving reads them.

    A request's null, NaN and ``"NaN"`` all mean missing, so derived columns
    and filters must see one missing value at training too.
    """
    rows = catalog.db.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
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


def _describe(catalog: Catalog, base: str, cfg: ModelConfig) -> dict[str, str]:
    try:
        rows = catalog.db.execute(f"DESCRIBE {base}").fetchall()
    except duckdb.Error as exc:
        raise TrainingError(
            f"invalid 'where' or 'derive' of model {cfg.name!r}: {exc}"
        ) from None
    return {name: kind for name, kind, *_ in rows}


def _feature_names(cfg: ModelConfig, schema: dict[str, str]) -> list[str]:
    if cfg.features is not None:
        missing = [name for name in cfg.features if name not in schema]
        if missing:
            raise TrainingError(
                f"feature {missing[0]!r} of model {cfg.name!r} is not in dataset "
                f"{cfg.dataset!r}; columns: {', '.join(schema)}"
            )
        return list(cfg.features)
    excluded = {cfg.target, cfg.split.column, *cfg.derive}
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
    catalog: Catalog,
    base: str,
    cfg: ModelConfig,
    numeric: list[str],
    categorical: list[str],
) -> pd.DataFrame:
    columns = feature_columns(numeric, categorical)
    columns.append(f"{_ident(cfg.target)}")
    if cfg.split.method == "group":
        columns.append(f"{_ident(cfg.split.column or '')} AS {_GROUP}")
    order = ""
    if cfg.split.method == "time":
        order = f" ORDER BY {_ident(cfg.split.column or '')}, rowid_"
        base = f"SELECT *, row_number() OVER () AS rowid_ FROM ({base})"
    sql = f"SELECT {', '.join(columns)} FROM ({base}){order}"
    try:
        with utc_cursor(catalog.db) as db:
            return db.execute(sql).df()
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


def _split(cfg: ModelConfig, frame: pd.DataFrame, y: np.ndarray) -> tuple[Any, Any]:
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(frame))
    split = cfg.split
    n_test = int(round(len(rows) * split.test_size))
    if n_test < 1 or n_test >= len(rows):
        raise TrainingError(
            f"model {cfg.name!r} has {len(rows)} labelled rows, too few to hold out "
            f"{split.test_size:.0%} for evaluation"
        )
    if split.method == "time":
        return rows[:-n_test], rows[-n_test:]
    if split.method == "group":
        return _group_split(cfg, frame, rows)
    stratify = y if split.method == "stratified" else None
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
                f"{float(values[first])!r} at row {first}; filter them out with 'where' "
                "or widen the check"
            )


def _plain(value: Any) -> Any:
    """Convert numpy scalars to Python values so classes serialize as JSON."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _ident(name: str) -> str:
    return quote_identifier(name)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
