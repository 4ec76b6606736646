"""Serving: ONNX sessions, input conversion and the daemon's HTTP API."""

from appliance.pandas_probe import skip_pyarrow_pandas_probe
from appliance.serving._access import (
    AccessControl,
    AccessGate,
    check_exposure,
    record_in_daemon,
    record_refusals,
)
from appliance.serving._app import ROUTE_MODULES, create_app
from appliance.serving._batch import check_target, read_rows_file, score_file
from appliance.serving._batcher import BatchSettings, MicroBatcher
from appliance.serving._champions import (
    resolve_served_alerts,
    resolve_when_champion,
    retry_champion,
)
from appliance.serving._derived import (
    cast_failures,
    check_schema_sql,
    derived_features,
)
from appliance.serving._explain import explain_feed, reference_of
from appliance.serving._inputs import (
    NUMBER,
    STRING,
    columns_to_feed,
    request_spec,
    rows_to_columns,
    rows_to_feed,
    table_to_columns,
    table_to_feed,
)
from appliance.serving._lane import PredictLane
from appliance.serving._lookup_checks import check_lookup_table
from appliance.serving._metrics import ServingMetrics
from appliance.serving._onnx import OnnxModel, class_key
from appliance.serving._openapi import publish_model_schema
from appliance.serving._routes_admin import load_version
from appliance.serving._routes_explain import (
    EXPLAIN_MAX_ROWS,
    check_count,
    explain_response,
    feed_rows,
)
from appliance.serving._state import (
    DaemonState,
    ModelSet,
    batch_settings,
    cpu_count,
    daemon_state,
    load_model,
    reload_features,
    run_with_catalog,
    session_threads,
)
from appliance.serving._view_health import update_view_alerts, watch_views
from appliance.serving._watch import DaemonWatch

__all__ = [
    "EXPLAIN_MAX_ROWS",
    "NUMBER",
    "ROUTE_MODULES",
    "STRING",
    "AccessControl",
    "AccessGate",
    "BatchSettings",
    "DaemonState",
    "DaemonWatch",
    "MicroBatcher",
    "ModelSet",
    "OnnxModel",
    "PredictLane",
    "ServingMetrics",
    "batch_settings",
    "cast_failures",
    "check_exposure",
    "check_count",
    "check_lookup_table",
    "check_schema_sql",
    "check_target",
    "class_key",
    "columns_to_feed",
    "cpu_count",
    "create_app",
    "daemon_state",
    "derived_features",
    "explain_feed",
    "explain_response",
    "feed_rows",
    "load_model",
    "load_version",
    "publish_model_schema",
    "record_in_daemon",
    "record_refusals",
    "read_rows_file",
    "reference_of",
    "reload_features",
    "request_spec",
    "resolve_served_alerts",
    "resolve_when_champion",
    "retry_champion",
    "rows_to_columns",
    "rows_to_feed",
    "run_with_catalog",
    "score_file",
    "session_threads",
    "skip_pyarrow_pandas_probe",
    "table_to_columns",
    "table_to_feed",
    "update_view_alerts",
    "watch_views",
]
