"""Training frames: the rows and columns a model learns from, read with DuckDB.

Categorical features arrive as text with ``""`` for missing and numeric
features as float64 with NaN for missing: the same encoding the serving path
feeds to ONNX, so native and exported models see identical inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from appliance.config import FeatureViewConfig, ModelConfig
from appliance.errors import TrainingError
from appliance.features import FeatureStore, model_views, open_store
from appliance.storage import Catalog, latest_version, scan_sql

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
    feature_versions: dict[str, str] = field(default_factory=dict)
    """Version read of each dataset behind the model's feature views."""

    @property
    def features(self) -> list[str]:
        """Every input column, numeric first."""
        return self.numeric + self.categorical


def load_frame(
    catalog: Catalog,
    cfg: ModelConfig,
    views: Mapping[str, FeatureViewConfig] | None = None,
) -> TrainingFrame:
    """Read the latest version of the model's dataset and split it.

    The model's feature views are joined point in time: each row sees the
    feature values available at its `event_timestamp`, never later ones.

    Raises:
        TrainingError: A column is missing or of an unusable type, the filter is
            invalid, or the target has fewer than two classes.
    """
    version = latest_version(catalog, cfg.dataset)
    assert version is not None
    store = _feature_store(catalog, cfg)
    try:
        return _load(
            catalog.db if store is None else store.db, cfg, version, store, views
        )
    finally:
        if store is not None:
            store.close()


def _feature_store(catalog: Catalog, cfg: ModelConfig) -> FeatureStore | None:
    return open_store(catalog) if cfg.feature_views else None


def _load(
    db: duckdb.DuckDBPyConnection,
    cfg: ModelConfig,
    version: Any,
    store: FeatureStore | None,
    views: Mapping[str, FeatureViewConfig] | None,
) -> TrainingFrame:
    rows = scan_sql(version)
    feature_versions: dict[str, str] = {}
    if store is not None:
        joined = model_views(cfg.feature_views, views or {})
        rows = store.joined_sql(
            f"SELECT * FROM {_ident(cfg.dataset)}", joined, cfg.event_timestamp
        )
        feature_versions = dict(store.versions)
    base = _base_sql(rows, cfg)
    schema = _describe(db, base, cfg)
    features = _feature_names(cfg, schema)
    numeric, categorical = _split_kinds(cfg, features, schema)
    if cfg.target not in schema:
        raise TrainingError(
            f"target column {cfg.target!r} of model {cfg.name!r} is not in dataset "
            f"{cfg.dataset!r}; columns: {', '.join(schema)}"
        )

    frame = _query(db, base, cfg, numeric, categorical)
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
        feature_versions=feature_versions,
    )


def _base_sql(rows: str, cfg: ModelConfig) -> str:
    derived = "".join(
        f", ({expr}) AS {_ident(name)}" for name, expr in cfg.derive.items()
    )
    sql = f"SELECT *{derived} FROM ({rows})"
    if cfg.where:
        sql = f"SELECT * FROM ({sql}) WHERE ({cfg.where})"
    return sql


def _describe(
    db: duckdb.DuckDBPyConnection, base: str, cfg: ModelConfig
) -> dict[str, str]:
    try:
        rows = db.execute(f"DESCRIBE {base}").fetchall()
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
    db: duckdb.DuckDBPyConnection,
    base: str,
    cfg: ModelConfig,
    numeric: list[str],
    categorical: list[str],
) -> pd.DataFrame:
    columns = [f"CAST({_ident(n)} AS DOUBLE) AS {_ident(n)}" for n in numeric]
    columns += [
        f"coalesce(CAST({_ident(n)} AS VARCHAR), '') AS {_ident(n)}"
        for n in categorical
    ]
    columns.append(f"{_ident(cfg.target)}")
    order = ""
    if cfg.split.method == "time":
        order = f" ORDER BY {_ident(cfg.split.column or '')}, rowid_"
        base = f"SELECT *, row_number() OVER () AS rowid_ FROM ({base})"
    sql = f"SELECT {', '.join(columns)} FROM ({base}){order}"
    try:
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
    stratify = y if split.method == "stratified" else None
    try:
        return train_test_split(
            rows, test_size=n_test, random_state=split.seed, stratify=stratify
        )
    except ValueError as exc:
        raise TrainingError(f"cannot split the rows of {cfg.name!r}: {exc}") from None


def _plain(value: Any) -> Any:
    """Convert numpy scalars to Python values so classes serialize as JSON."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
