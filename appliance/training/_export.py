"""ONNX export of fitted pipelines and the parity check against the native model."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from appliance.errors import ExportError
from appliance.serving import NUMBER, STRING, OnnxModel, columns_to_feed

logger = logging.getLogger(__name__)

_OPSET = {"": 17, "ai.onnx.ml": 3}
_registered = False


def input_schema(numeric: list[str], categorical: list[str]) -> list[dict[str, str]]:
    """Return the ONNX input list: one float or string column per feature."""
    return [{"name": n, "type": NUMBER} for n in numeric] + [
        {"name": n, "type": STRING} for n in categorical
    ]


def to_onnx(pipeline: Pipeline, inputs: list[dict[str, str]], task: str) -> bytes:
    """Convert a fitted pipeline, preprocessing included, to ONNX bytes.

    Raises:
        ExportError: skl2onnx or onnxmltools cannot convert a step.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    _register_lightgbm()
    initial_types = [
        (
            spec["name"],
            FloatTensorType([None, 1])
            if spec["type"] == NUMBER
            else StringTensorType([None, 1]),
        )
        for spec in inputs
    ]
    options: dict[int, Any] = {}
    if task == "classification":
        options[id(pipeline.steps[-1][1])] = {"zipmap": False}
    try:
        model = convert_sklearn(
            pipeline, initial_types=initial_types, target_opset=_OPSET, options=options
        )
    except Exception as exc:  # skl2onnx raises bare RuntimeError, NameError, ...
        raise ExportError(
            f"ONNX conversion failed: {type(exc).__name__}: {exc}"
        ) from exc
    return model.SerializeToString()


def parity(
    onnx_model: OnnxModel, pipeline: Pipeline, frame: pd.DataFrame, task: str
) -> float:
    """Return the largest difference between ONNX and native outputs on `frame`.

    The native model reads float64 values while ONNX reads them as float32, as
    at serving. For regression the difference is scaled by max(1, |native|).
    """
    native = _native_output(pipeline, frame, task)
    exported = onnx_model.run(columns_to_feed(onnx_model.inputs, frame))
    if task == "regression":
        scale = np.maximum(1.0, np.abs(native))
        diff = np.abs(exported - native) / scale
    else:
        diff = np.abs(exported - native)
    if np.isnan(diff).any():
        return float("inf")
    return float(diff.max()) if diff.size else 0.0


def probe_rows(
    frame: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> pd.DataFrame:
    """Return rows that stress the export: every value missing, unseen categories."""
    first = frame.head(1)
    missing = first.copy()
    missing[numeric] = np.nan
    missing[categorical] = ""
    unseen = first.copy()
    unseen[categorical] = "\u0000unseen category"
    return pd.concat([missing, unseen], ignore_index=True)


def _native_output(pipeline: Pipeline, frame: pd.DataFrame, task: str) -> np.ndarray:
    if task == "regression":
        return np.asarray(pipeline.predict(frame), dtype=np.float64).reshape(-1)
    return np.asarray(pipeline.predict_proba(frame), dtype=np.float64)


def _register_lightgbm() -> None:
    global _registered
    if _registered:
        return
    from lightgbm import LGBMClassifier, LGBMRegressor
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import (
        convert_lightgbm,
    )
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    update_registered_converter(
        LGBMClassifier,
        "LightGbmLGBMClassifier",
        calculate_linear_classifier_output_shapes,
        convert_lightgbm,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    update_registered_converter(
        LGBMRegressor,
        "LightGbmLGBMRegressor",
        calculate_linear_regressor_output_shapes,
        convert_lightgbm,
        options={"split": None},
    )
    _registered = True
