"""Tree pipelines with a numeric scaler, exported with the scaler folded away.

A tree only compares each input with thresholds, and a scaler maps each
column monotonically, so a threshold on a scaled column is a threshold on the
unscaled input. ONNX would compute the scaler in float32, which can merge
neighbouring float32 inputs into one scaled value or move a scaled value by a
few float32 steps. An input near a threshold could then land on the other
side of it. The export therefore leaves the scaler out of the ONNX graph and sets
each threshold to the largest float32 input that the native pipeline sends
left.

ONNX reads float32 inputs, so the native pipeline of a scaled tree ensemble
rounds its imputed inputs to float32 (`RoundToFloat32`) before scaling. A
scaled threshold can lie within one float32 step of a training value. For
example, `minmax` moves LightGBM's split of zero from the rest to the
column's minimum. Without the rounding, a float64 input and its float32
could branch apart natively, and no ONNX threshold could follow both.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.pipeline import Pipeline

from appliance.errors import ExportError
from appliance.training._stop import StopCheck

TREE_OPS = {"TreeEnsembleClassifier", "TreeEnsembleRegressor"}
NODES_PER_STOP_CHECK = 64
"""Tree nodes between stop checks while thresholds are placed. The placement
took about 10 us a node for 300 LightGBM trees of 63 leaves on 300,000 rows
(benchmarks/threshold_placement.py), so a check comes about every 1 ms."""

ROUND_STEP = "float32"
"""Name of the `RoundToFloat32` step in the numeric steps of a scaled tree."""
SCALE_STEP = "scale"
_FOLDED_STEPS = {ROUND_STEP, SCALE_STEP}
_SIGN_BIT = np.int64(-(2**31))
_MAGNITUDE = np.int64(2**31 - 1)
_LARGEST = np.finfo(np.float32).max


class RoundToFloat32(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Round each value to its nearest float32, kept as float64 (NaN stays)."""

    def fit(self, x: Any, y: Any = None) -> RoundToFloat32:
        """Record the number of input columns, since there is nothing to learn."""
        self.n_features_in_ = np.asarray(x).shape[1]
        return self

    def transform(self, x: Any) -> np.ndarray:
        """Return `x` rounded to float32, as float64."""
        return np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)


class ScaledInputs:
    """The fitted numeric scaler of a tree pipeline, to move thresholds.

    `float32_splits` is true for scikit-learn trees, which cast their scaled
    input to float32 before comparing it with a double threshold, while
    LightGBM compares the float64 scaled value.
    """

    def __init__(self, scaler: Any, width: int, float32_splits: bool) -> None:
        self.scaler = scaler
        self.width = width
        """Number of scaled columns, which are the first estimator inputs."""
        self.float32_splits = float32_splits

    def float32_thresholds(self, index: int, thresholds: np.ndarray) -> np.ndarray:
        """Return, for each threshold on scaled column `index`, the largest
        float32 input that the native pipeline sends to the left (``<=``) side.

        The native decision is monotonic in the input, so a bisection over the
        ordered float32 values finds the boundary exactly, with the scaler's
        own `transform` doing the arithmetic. The result is -inf when no
        finite float32 goes left and the largest float32 when all do.
        """
        thresholds = np.asarray(thresholds, dtype=np.float64)
        low = np.full(len(thresholds), _ordered(np.float32(-_LARGEST)))
        high = np.full(len(thresholds), _ordered(np.float32(_LARGEST)))
        none_left = ~self._goes_left(index, _from_ordered(low), thresholds)
        all_left = self._goes_left(index, _from_ordered(high), thresholds)
        for _ in range(33):
            middle = (low + high) // 2
            left = self._goes_left(index, _from_ordered(middle), thresholds)
            low = np.where(left, middle, low)
            high = np.where(left, high, middle)
        found = _from_ordered(low)
        found[all_left] = _LARGEST
        found[none_left] = -np.inf
        return found

    def _goes_left(
        self, index: int, inputs: np.ndarray, thresholds: np.ndarray
    ) -> np.ndarray:
        grid = np.zeros((len(inputs), self.width))
        grid[:, index] = inputs
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = self.scaler.transform(grid)[:, index]
            if self.float32_splits:
                scaled = scaled.astype(np.float32)
        return scaled <= thresholds


def scaled_inputs(pipeline: Pipeline) -> ScaledInputs | None:
    """Return the scaler to fold into the thresholds, or None.

    It is None unless the estimator is a tree ensemble and numeric columns
    are scaled, because linear models keep the scaler in their ONNX graph.
    """
    estimator = pipeline[-1]
    lightgbm = hasattr(estimator, "booster_")
    if not lightgbm and not hasattr(estimator, "estimators_"):
        return None
    numeric = pipeline[0].named_transformers_.get("numeric")
    if numeric is None or SCALE_STEP not in numeric.named_steps:
        return None
    scaler = numeric.named_steps[SCALE_STEP]
    return ScaledInputs(scaler, scaler.n_features_in_, not lightgbm)


def without_scaler(pipeline: Pipeline) -> Pipeline:
    """Return the fitted pipeline without the numeric rounding and scaler steps.

    The fitted imputers, encoders and estimator are shared, not copied, and
    `pipeline` itself is not changed.
    """
    prepare = copy.copy(pipeline[0])
    prepare.transformers_ = [
        (name, _unscaled(steps) if name == "numeric" else steps, columns)
        for name, steps, columns in pipeline[0].transformers_
    ]
    return Pipeline([(pipeline.steps[0][0], prepare), pipeline.steps[-1]])


def _unscaled(steps: Pipeline) -> Pipeline:
    return Pipeline([step for step in steps.steps if step[0] not in _FOLDED_STEPS])


def place_scaled_lightgbm(
    model: Any,
    thresholds: dict[int, np.ndarray],
    scaled: ScaledInputs,
    stop: StopCheck | None = None,
) -> int:
    """Move LightGBM's ONNX thresholds from scaled columns to the unscaled inputs.

    onnxmltools stores each threshold as its nearest float32, so a node is
    matched by value to the thresholds of its feature that round to it. The
    node gets the float32 threshold (`ScaledInputs.float32_thresholds`) of
    the middle one. When several round to one float32 and need different
    values, some inputs branch against LightGBM, and the parity check, which
    probes each threshold, rejects the model.

    Returns:
        The number of thresholds moved.

    Raises:
        ExportError: A node's value matches no threshold of its feature.
        TrainingStopped: `stop` was set.
    """
    stop = stop or StopCheck()
    placed_of = {}
    for column, values in thresholds.items():
        if column < scaled.width:
            unique = np.unique(values)
            placed = scaled.float32_thresholds(column, unique)
            placed_of[column] = (unique.astype(np.float32), placed)
    moved = 0
    for node in model.graph.node:
        if node.op_type not in TREE_OPS:
            continue
        attributes = {a.name: a for a in node.attribute}
        features = attributes["nodes_featureids"].ints
        values = attributes["nodes_values"].floats
        for index, mode in enumerate(attributes["nodes_modes"].strings):
            if index % NODES_PER_STOP_CHECK == 0:
                stop("while converting to ONNX")
            if mode != b"BRANCH_LEQ" or features[index] not in placed_of:
                continue
            values[index] = _placed_value(placed_of[features[index]], values[index])
            moved += 1
    return moved


def _placed_value(placed_of: tuple[np.ndarray, np.ndarray], stored: float) -> float:
    rounded, placed = placed_of
    low = np.searchsorted(rounded, np.float32(stored), side="left")
    high = np.searchsorted(rounded, np.float32(stored), side="right")
    if low == high:
        raise ExportError(
            f"ONNX threshold {stored!r} matches no LightGBM threshold of its "
            "feature, so it cannot be moved to the unscaled input; set "
            'scale = "none" in the model\'s preprocess settings or install the '
            "onnxmltools version pinned in requirements.lock"
        )
    return float(placed[(low + high - 1) // 2])


def forest_thresholds(
    thresholds: np.ndarray, features: np.ndarray, scaled: ScaledInputs | None
) -> np.ndarray:
    """Return the float32 threshold of each forest node, on the ONNX inputs.

    Without `scaled`, or on a column the scaler does not read (such as an
    encoded category), a threshold t becomes the largest float32 at or below
    t, because scikit-learn compares the input cast to float32 with t.
    """
    placed = round_down(thresholds)
    if scaled is None:
        return placed
    for column in np.unique(features[(features >= 0) & (features < scaled.width)]):
        inner = features == column
        unique, positions = np.unique(thresholds[inner], return_inverse=True)
        placed[inner] = scaled.float32_thresholds(int(column), unique)[positions]
    return placed


def round_down(values: np.ndarray) -> np.ndarray:
    """Return the largest float32 at or below each double."""
    nearest = values.astype(np.float32)
    above = nearest.astype(np.float64) > values
    nearest[above] = np.nextafter(nearest[above], np.float32(-np.inf))
    return nearest


def _ordered(values: np.ndarray | np.float32) -> np.ndarray:
    """Map float32 values to int64 keys that sort in the same order.

    -0.0 and 0.0 get the same key, 0.
    """
    bits = np.asarray(values, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & _MAGNITUDE), bits)


def _from_ordered(keys: np.ndarray) -> np.ndarray:
    """Map the keys of `_ordered` back to float32 values."""
    bits = np.where(keys < 0, -keys | _SIGN_BIT, keys)
    return bits.astype(np.int32).view(np.float32)
