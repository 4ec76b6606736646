"""A sample of the rows that a registered model version was trained on.

The batch drift check compares logged requests with this sample. The rows are
read as `load_frame` read them at training. They come from the dataset version
recorded in the version's ``schema.json``, filtered by its ``where`` or its
retraining window. The model's derived columns are added, and its feature
views are joined point in time over the dataset versions that training read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any

import duckdb
import pandas as pd

from appliance.config import FeatureViewConfig, ModelConfig
from appliance.derive import (
    ExpressionError,
    check_expression,
    feature_columns,
    quote_identifier,
    utc_cursor,
)
from appliance.errors import NotFoundError, TrainingError, one_line
from appliance.features import FeatureStore, store_of
from appliance.storage import (
    Catalog,
    DatasetVersion,
    get_dataset_version,
    list_versions,
    lost_files_message,
)
from appliance.training._frame import (
    _ORDER,
    TrainingWindow,
    _base_sql,
    _missing_as_null,
    _rows_source,
    window_condition,
)

logger = logging.getLogger(__name__)


def sample_trained_rows(
    catalog: Catalog,
    cfg: ModelConfig,
    views: Mapping[str, FeatureViewConfig],
    schema: Mapping[str, Any],
    inputs: tuple[list[str], list[str]],
    rows: int,
) -> pd.DataFrame:
    """Read a fixed sample of up to `rows` training rows of a model version.

    The sample is taken from the dataset rows before the feature views are
    joined, so the join reads no more than `rows` rows. Rows without a
    target value are left out afterwards, as training leaves them out. The
    sample is the same at every call on the same data, because rows are
    picked by a hash of their position.

    Args:
        catalog: The catalog that contains the dataset versions.
        cfg: The model's configuration, for its derived columns, event
            timestamp and feature views.
        views: The declared feature views.
        schema: The version's ``schema.json``.
        inputs: The numeric and the categorical inputs to read.
        rows: Maximum rows of the sample.

    Returns:
        The inputs as the training frame has them: numeric ones as float64
        with NaN for missing, categorical ones as text with ``""`` for
        missing.

    Raises:
        NotFoundError: The dataset version, or a version that the feature
            views read, is no longer in the catalog.
        ConfigError: A feature view that the model joins is not declared.
        TrainingError: The rows cannot be read or the views not joined.
    """
    cfg = replace(cfg, where=schema.get("where", cfg.where))
    window = _schema_window(schema) if cfg.event_timestamp else None
    version = _dataset_version(catalog, cfg, schema)
    store = _trained_store(catalog, cfg, version, schema)
    db: Any = catalog.db if store is None else store
    narrow = partial(_sample_sql, db, cfg, window, rows)
    try:
        source = _rows_source(cfg, version, store, views, narrow)
        base = _base_sql(db, source, cfg, window)
        columns = ", ".join(feature_columns(*inputs))
        labelled = f"{quote_identifier(cfg.target)} IS NOT NULL"
        sql = f"SELECT {columns} FROM ({base}) WHERE {labelled}"
        with utc_cursor(db) as cursor:
            return cursor.execute(sql).df()
    except duckdb.IOException:
        raise TrainingError(
            f"cannot read the training rows of model {cfg.name!r}: "
            f"{lost_files_message(version)}"
        ) from None
    except duckdb.Error as exc:
        raise TrainingError(
            f"cannot read the training rows of model {cfg.name!r} from "
            f"{version.dataset}@{version.version}: {one_line(str(exc))}"
        ) from None
    finally:
        if store is not None:
            store.close()


def _schema_window(schema: Mapping[str, Any]) -> TrainingWindow | None:
    """Return the retraining window that a version's schema records, if any."""
    window = schema.get("window")
    if not window:
        return None
    start = window.get("start")
    return TrainingWindow(
        holdout_start=datetime.fromisoformat(window["holdout_start"]),
        end=datetime.fromisoformat(window["end"]),
        start=datetime.fromisoformat(start) if start else None,
    )


def _dataset_version(
    catalog: Catalog, cfg: ModelConfig, schema: Mapping[str, Any]
) -> DatasetVersion:
    """Return the dataset version that the schema's version was trained on.

    Raises:
        NotFoundError: The version is no longer in the catalog.
    """
    reference = f"{schema['dataset']}@{schema['dataset_version']}"
    try:
        return get_dataset_version(catalog, reference)
    except NotFoundError as exc:
        raise NotFoundError(
            f"dataset version {reference} that model {cfg.name!r} was trained on "
            f"is not in the catalog ({exc}), so the model's training rows cannot be "
            "read; train the model again on a dataset version that 'appliance "
            "datasets list' shows"
        ) from None


def _trained_store(
    catalog: Catalog,
    cfg: ModelConfig,
    version: DatasetVersion,
    schema: Mapping[str, Any],
) -> FeatureStore | None:
    """Open a feature store over the dataset versions that training read.

    Those are `version` and the versions in the schema's
    ``feature_versions``. A dataset that the schema does not name, such as
    one that a view reads since the version was trained, is read at its
    latest version, as training would read it now. Returns None when the
    model joins no feature view.

    Raises:
        NotFoundError: A version that the feature views read is no longer in
            the catalog.
    """
    if not cfg.feature_views:
        return None
    chosen: dict[str, DatasetVersion] = {}
    for latest in list_versions(catalog):
        chosen.setdefault(latest.dataset, latest)
    for dataset, read in sorted(schema.get("feature_versions", {}).items()):
        try:
            chosen[dataset] = get_dataset_version(catalog, f"{dataset}@{read}")
        except NotFoundError as exc:
            raise NotFoundError(
                f"dataset version {dataset}@{read} that the feature views of "
                f"model {cfg.name!r} read at training is not in the catalog "
                f"({exc}), so the model's training rows cannot be read; train the "
                "model again"
            ) from None
    chosen[version.dataset] = version
    return store_of(chosen.values())


def _sample_sql(
    db: Any,
    cfg: ModelConfig,
    window: TrainingWindow | None,
    rows: int,
    numbered: str,
) -> str:
    """Return a SELECT of at most `rows` of the numbered dataset rows.

    The window, or a ``where`` that reads only dataset columns, is applied
    before the sample, so the sample is drawn from the rows training read.
    Missing values are NULL first, as `_base_sql` makes them for ``where``.
    """
    source = _missing_as_null(db, f"({numbered})")
    if window is not None:
        condition: str | None = window_condition(cfg, window)
    else:
        condition = _dataset_where(db, cfg, source)
    filtered = f" WHERE ({condition})" if condition else ""
    # `FeatureStore.joined_source` reads these rows twice and joins the two
    # reads by position, so both reads must pick the same rows. A hash of
    # the position picks them in the same way however DuckDB runs the scan.
    return (
        f"SELECT * FROM {source}{filtered} "
        f"ORDER BY hash({_ORDER}), {_ORDER} LIMIT {int(rows)}"
    )


def _dataset_where(db: Any, cfg: ModelConfig, source: str) -> str | None:
    """Return the model's ``where`` when it reads only columns of `source`.

    A filter on a derived column or a feature view's column can only run
    after the join. The sample then contains fewer rows than requested when
    the filter drops some of them.
    """
    if not cfg.where:
        return None
    try:
        read = {name.lower() for name in check_expression("where", cfg.where)}
    except ExpressionError:
        return None
    described = db.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    columns = {name.lower() for name, *_ in described}
    columns -= {name.lower() for name in cfg.derive}
    return cfg.where if read <= columns else None
