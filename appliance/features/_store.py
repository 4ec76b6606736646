"""The feature store: datasets as SQL views in DuckDB, and point-in-time frames.

Feature view SQL names datasets as tables. `open_store` opens an in-memory
DuckDB where each dataset is a view over the Parquet files of its latest
version, so the catalog file is not locked while features are computed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb

from appliance.config import FeatureViewConfig
from appliance.errors import ConfigError
from appliance.features._sql import feature_columns, ident, join_sql
from appliance.storage import Catalog, DatasetVersion, list_versions, scan_sql

logger = logging.getLogger(__name__)


@dataclass
class FeatureStore:
    """An in-memory DuckDB with one view per dataset, at its latest version."""

    db: duckdb.DuckDBPyConnection
    versions: dict[str, str]
    """Version id read of each dataset."""

    def view_columns(self, view: FeatureViewConfig) -> list[str]:
        """Return the output columns of a feature view's SQL.

        Raises:
            ConfigError: The SQL is invalid or names an unknown dataset.
        """
        try:
            described = self.db.execute(f"DESCRIBE {view.sql}").fetchall()
        except duckdb.Error as exc:
            known = ", ".join(sorted(self.versions)) or "none"
            raise ConfigError(
                f"invalid SQL of feature view {view.name!r}: {exc}; datasets with "
                f"a version: {known}"
            ) from None
        columns = [name for name, *_ in described]
        missing = [
            c for c in (*view.entities, view.timestamp) if c and c not in columns
        ]
        if missing:
            raise ConfigError(
                f"feature view {view.name!r} does not return column {missing[0]!r}; "
                f"its SQL returns {', '.join(columns)}"
            )
        return columns

    def joined_sql(
        self,
        rows: str,
        views: Sequence[FeatureViewConfig],
        event_time: str | None,
    ) -> str:
        """Return `rows` (SQL over this store) with the views' features joined."""
        row_columns = [r[0] for r in self.db.execute(f"DESCRIBE {rows}").fetchall()]
        columns = {view.name: self.view_columns(view) for view in views}
        return join_sql(
            rows, row_columns, views, columns, ident(event_time) if event_time else None
        )

    def close(self) -> None:
        """Close the in-memory database."""
        self.db.close()


def open_store(catalog: Catalog) -> FeatureStore:
    """Open a store with a view per dataset of `catalog`, at its latest version."""
    latest: dict[str, DatasetVersion] = {}
    for version in list_versions(catalog):
        latest.setdefault(version.dataset, version)
    return store_of(latest.values())


def store_of(versions: Sequence[DatasetVersion] | object) -> FeatureStore:
    """Open a store with a view over each of `versions`, named by its dataset."""
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    read = {}
    for version in versions:  # type: ignore[attr-defined]
        db.execute(f"CREATE VIEW {ident(version.dataset)} AS {scan_sql(version)}")
        read[version.dataset] = version.version
    return FeatureStore(db, read)


def model_views(
    names: Sequence[str], views: Mapping[str, FeatureViewConfig]
) -> list[FeatureViewConfig]:
    """Return the declared views of `names`, in order.

    Raises:
        ConfigError: A name is not declared.
    """
    missing = [name for name in names if name not in views]
    if missing:
        raise ConfigError(
            f"feature view {missing[0]!r} is not declared; declared views: "
            f"{', '.join(sorted(views)) or 'none'}"
        )
    return [views[name] for name in names]


def view_feature_names(store: FeatureStore, view: FeatureViewConfig) -> list[str]:
    """Return the feature columns a view adds to the rows it is joined to."""
    return feature_columns(view, store.view_columns(view))
