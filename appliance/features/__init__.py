"""Feature store: feature views over datasets, point-in-time joins, online fill."""

from appliance.features._lookup import RequestLookup
from appliance.features._online import FeatureServer
from appliance.features._repeats import RepeatedKeys, repeated_keys
from appliance.features._sql import feature_columns, join_sql
from appliance.features._store import (
    FeatureStore,
    model_views,
    open_store,
    store_of,
    view_feature_names,
)
from appliance.features._view_failures import ViewFailure

__all__ = [
    "FeatureServer",
    "FeatureStore",
    "RepeatedKeys",
    "RequestLookup",
    "ViewFailure",
    "feature_columns",
    "join_sql",
    "model_views",
    "open_store",
    "repeated_keys",
    "store_of",
    "view_feature_names",
]
