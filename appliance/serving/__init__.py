"""Serving: ONNX sessions, input conversion and the HTTP API."""

from appliance.serving._app import create_app
from appliance.serving._batch import score_file
from appliance.serving._inputs import (
    NUMBER,
    STRING,
    columns_to_feed,
    rows_to_feed,
    table_to_feed,
)
from appliance.serving._modelset import ModelSet, VersionLoader
from appliance.serving._onnx import OnnxModel, class_key

__all__ = [
    "NUMBER",
    "STRING",
    "VersionLoader",
    "ModelSet",
    "OnnxModel",
    "class_key",
    "columns_to_feed",
    "create_app",
    "rows_to_feed",
    "score_file",
    "table_to_feed",
]
