"""Serving: ONNX sessions, input conversion and the HTTP API."""

from appliance.serving._app import ModelSet, create_app
from appliance.serving._batch import score_file
from appliance.serving._ingest_routes import ingest_handlers
from appliance.serving._inputs import (
    NUMBER,
    STRING,
    columns_to_feed,
    rows_to_feed,
    table_to_feed,
)
from appliance.serving._onnx import OnnxModel, class_key

__all__ = [
    "NUMBER",
    "STRING",
    "ModelSet",
    "OnnxModel",
    "class_key",
    "columns_to_feed",
    "create_app",
    "ingest_handlers",
    "rows_to_feed",
    "score_file",
    "table_to_feed",
]
