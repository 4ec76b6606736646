"""ONNX export of fitted pipelines and the parity check against the native model."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from appliance.config import ModelConfig
from appliance.errors import ExportError
from appliance.serving import (
    NUMBER,
    STRING,
    OnnxModel,
    columns_to_feed,
    table_to_columns,
)
from appliance.storage import Catalog
from appliance.training._encoders import register_converter
from appliance.training._frame import TrainingFrame, derived_sample
from appliance.training._scaled import (
    NODES_PER_STOP_CHECK,
    TREE_OPS,
    ScaledInputs,
    forest_thresholds,
    place_scaled_lightgbm,
    scaled_inputs,
    without_scaler,
)
from appliance.training._stop import StopCheck

logger = logging.getLogger(__name__)

_OPSET = {"": 17, "ai.onnx.ml": 3}
_registered = False


def input_schema(numeric: list[str], categorical: list[str]) -> list[dict[str, str]]:
    """Return the ONNX input list: one float or string column per feature."""
    return [{"name": n, "type": NUMBER} for n in numeric] + [
        {"name": n, "type": STRING} for n in categorical
    ]


def to_onnx(
    pipeline: Pipeline,
    inputs: list[dict[str, str]],
    task: str,
    reference: dict[int, np.ndarray] | None = None,
    stop: StopCheck | None = None,
) -> bytes:
    """Convert a fitted pipeline, preprocessing included, to ONNX bytes.

    `reference` holds the training values of the estimator's numeric inputs,
    which `round_thresholds` uses to place LightGBM thresholds. A tree
    ensemble's numeric scaler is left out of the graph, and its thresholds
    are moved to the unscaled inputs (`appliance.training._scaled`). `stop`
    is checked while LightGBM thresholds are placed, not during skl2onnx's
    conversion.

    Raises:
        ExportError: skl2onnx or onnxmltools cannot convert a step.
        TrainingStopped: `stop` was set.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    _register_lightgbm()
    register_converter()
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
    scaled = scaled_inputs(pipeline)
    exported = pipeline if scaled is None else without_scaler(pipeline)
    try:
        model = convert_sklearn(
            exported, initial_types=initial_types, target_opset=_OPSET, options=options
        )
    except Exception as exc:  # skl2onnx raises bare RuntimeError, NameError, ...
        raise ExportError(
            f"ONNX conversion failed: {type(exc).__name__}: {exc}"
        ) from exc
    restore_input_names(model, [spec["name"] for spec in inputs])
    estimator = pipeline[-1]
    if hasattr(estimator, "booster_"):
        thresholds = estimator_thresholds(estimator)
        if scaled is None:
            round_thresholds(model, thresholds, reference, stop)
        else:
            place_scaled_lightgbm(model, thresholds, scaled, stop)
    else:
        place_forest_thresholds(model, estimator, scaled)
    return model.SerializeToString()


def restore_input_names(model: Any, names: list[str]) -> None:
    """Rename the graph inputs back to the column names, in place.

    skl2onnx replaces characters such as ``/``, ``(`` and spaces in input
    names, while requests and frames address inputs by their column names.
    """
    graph = model.graph
    renamed = {}
    for graph_input, name in zip(graph.input, names, strict=True):
        if graph_input.name != name:
            renamed[graph_input.name] = name
            graph_input.name = name
    if not renamed:
        return
    for node in graph.node:
        for index, value in enumerate(node.input):
            if value in renamed:
                node.input[index] = renamed[value]


_ZERO_THRESHOLD = 1e-30
"""Split thresholds at most this far from zero are LightGBM's zero splits."""


def round_thresholds(
    model: Any,
    thresholds: dict[int, np.ndarray],
    reference: dict[int, np.ndarray] | None = None,
    stop: StopCheck | None = None,
) -> int:
    """Choose the float32 value of each ``x <= t`` threshold of LightGBM's ONNX trees.

    ONNX compares float32 inputs with float32 thresholds, and onnxmltools
    stores a double threshold t as its nearest float32 a. Every input that
    rounds to a takes one branch in ONNX, but LightGBM compares the float64
    input, sending it left when it is at most t and right otherwise, so some
    inputs near t must disagree. Keeping a sends a left, which is right for
    stored values at or below t, and moving the threshold one step below a
    sends it right. The training values that round to a (in `reference`, by
    input column index) decide, and a stays when none do. The nodes are
    matched to `thresholds` by value, and a stays when the thresholds that
    round to it need different choices.

    `stop` is checked every `NODES_PER_STOP_CHECK` tree nodes.

    Returns:
        The number of thresholds changed.

    Raises:
        TrainingStopped: `stop` was set.
    """
    stop = stop or StopCheck()
    candidates_of = _ByRounding.of_each(thresholds)
    seen_of = _ByRounding.of_each(reference or {})
    no_values = _ByRounding(np.empty(0))
    changed = 0
    for node in model.graph.node:
        if node.op_type not in TREE_OPS:
            continue
        attributes = {a.name: a for a in node.attribute}
        if "nodes_values" not in attributes:
            continue  # double thresholds (nodes_values_as_tensor) need no choice
        modes = attributes["nodes_modes"].strings
        features = attributes["nodes_featureids"].ints
        values = attributes["nodes_values"].floats
        for index, mode in enumerate(modes):
            if index % NODES_PER_STOP_CHECK == 0:
                stop("while converting to ONNX")
            doubles = candidates_of.get(features[index])
            if mode != b"BRANCH_LEQ" or doubles is None:
                continue
            stored = np.float32(values[index])
            # NOTE: unlike a forest's, LightGBM nodes can be matched by value.
            # A feature's thresholds are bounds of bins built once per training
            # set, so a value repeated in many trees needs one choice. Only two
            # bounds that round to one float32 need two, and then some inputs
            # that round to it branch against LightGBM whatever the choice.
            candidates = doubles.rounding_to(stored)
            seen = seen_of.get(features[index], no_values).rounding_to(stored)
            choices = _lightgbm_thresholds(candidates, stored, seen)
            if len(choices) == 1:
                (choice,) = choices
                if choice != stored:
                    values[index] = choice
                    changed += 1
    return changed


def place_forest_thresholds(
    model: Any, estimator: Any, scaled: ScaledInputs | None = None
) -> int:
    """Set each ONNX threshold of a scikit-learn forest to match its tree exactly.

    scikit-learn compares the input cast to float32 with a double threshold
    t, so the largest float32 at or below t branches every float32 input as
    the native tree does. Each ONNX node is matched to its tree node by tree
    and node id, which skl2onnx numbers as ``estimators_`` and ``tree_`` do.
    Matching by value would not do: thresholds of different trees can lie
    less than one float32 step apart, as on scikit-learn's diabetes data,
    and need different float32 values. With `scaled`, thresholds on scaled
    columns move to the unscaled inputs (`ScaledInputs.float32_thresholds`).

    Returns:
        The number of thresholds changed from what the converter stored.

    Raises:
        ExportError: An ONNX node names a tree node that does not exist or
            splits on another feature, so the ids do not follow the trees.
    """
    trees = [tree.tree_ for tree in getattr(estimator, "estimators_", [])]
    if not trees:
        return 0
    starts = np.cumsum([0] + [tree.node_count for tree in trees])
    thresholds = np.concatenate([tree.threshold for tree in trees])
    features = np.concatenate([tree.feature for tree in trees])
    placed_all = forest_thresholds(thresholds, features, scaled)
    changed = 0
    for node in model.graph.node:
        if node.op_type not in TREE_OPS:
            continue
        attributes = {a.name: a for a in node.attribute}
        if "nodes_values" not in attributes:
            continue  # double thresholds (nodes_values_as_tensor) are exact
        branches = np.asarray(attributes["nodes_modes"].strings) == b"BRANCH_LEQ"
        tree_ids = np.asarray(attributes["nodes_treeids"].ints)[branches]
        node_ids = np.asarray(attributes["nodes_nodeids"].ints)[branches]
        feature_ids = np.asarray(attributes["nodes_featureids"].ints)[branches]
        _check_forest_ids(tree_ids, node_ids, feature_ids, starts, features)
        placed = placed_all[starts[tree_ids] + node_ids]
        values = np.asarray(attributes["nodes_values"].floats, dtype=np.float32)
        changed += int((values[branches] != placed).sum())
        values[branches] = placed
        attributes["nodes_values"].floats[:] = values.tolist()
    return changed


def _check_forest_ids(
    tree_ids: np.ndarray,
    node_ids: np.ndarray,
    feature_ids: np.ndarray,
    starts: np.ndarray,
    features: np.ndarray,
) -> None:
    sizes = np.diff(starts)
    valid = (tree_ids >= 0) & (tree_ids < len(sizes)) & (node_ids >= 0)
    valid[valid] = node_ids[valid] < sizes[tree_ids[valid]]
    valid[valid] = (
        features[starts[tree_ids[valid]] + node_ids[valid]] == feature_ids[valid]
    )
    if not valid.all():
        at = int(np.argmin(valid))
        raise ExportError(
            f"ONNX tree node {int(node_ids[at])} of tree {int(tree_ids[at])} does "
            "not match the fitted forest, so its threshold cannot be placed; "
            "install the skl2onnx version pinned in requirements.lock"
        )


class _ByRounding:
    """Values of one input, sorted, to find those that round to a float32.

    Rounding to float32 keeps the order of doubles, so the values that round
    to one float32 are a run of the sorted values, found by binary search
    instead of a comparison with every value. NaN sorts last and rounds to
    no float32.
    """

    def __init__(self, values: np.ndarray) -> None:
        self.values = np.sort(np.asarray(values, dtype=np.float64))
        self.rounded = self.values.astype(np.float32)

    @classmethod
    def of_each(cls, arrays: dict[int, np.ndarray]) -> dict[int, _ByRounding]:
        """Return the sorted values of each input column index."""
        return {column: cls(values) for column, values in arrays.items()}

    def rounding_to(self, stored: np.float32) -> np.ndarray:
        """Return the values whose nearest float32 is `stored`, ascending."""
        low = np.searchsorted(self.rounded, stored, side="left")
        high = np.searchsorted(self.rounded, stored, side="right")
        return self.values[low:high]


def _lightgbm_thresholds(
    candidates: np.ndarray, stored: np.float32, rounded_here: np.ndarray
) -> set[float]:
    """Return the float32 thresholds that branch most training values natively,
    one for each double threshold in `candidates`.

    `rounded_here` contains the training values whose nearest float32 is
    `stored`, ascending, so the values above a threshold are a count from its
    insertion point.
    """
    above = len(rounded_here) - np.searchsorted(rounded_here, candidates, "right")
    moves_down = above > len(rounded_here) - above
    choices = set()
    if moves_down.any():
        choices.add(float(np.nextafter(stored, np.float32(-np.inf))))
    if not moves_down.all():
        choices.add(float(stored))
    return choices


@dataclass(frozen=True)
class Parity:
    """Agreement of the ONNX model with the native model on the checked rows."""

    max_difference: float
    """Largest difference in probability, or in value over max(1, |value|)."""
    worst_row: int
    """Row of the largest difference, -1 when no row was checked."""
    label_mismatches: int
    """Rows whose label differs while the native probabilities are farther than
    the tolerance from the decision boundary."""
    rows: int
    """Rows checked."""

    def passed(self, tolerance: float) -> bool:
        """Return whether every row agrees within `tolerance`."""
        return self.max_difference <= tolerance and self.label_mismatches == 0


def parity(
    onnx_model: OnnxModel,
    pipeline: Pipeline,
    frame: pd.DataFrame,
    task: str,
    tolerance: float = 1e-5,
) -> Parity:
    """Compare ONNX and native outputs row by row on `frame`.

    The native model reads the float64 values of `frame`; ONNX reads them
    rounded to float32, as at serving. A NaN on one side only counts as an
    infinite difference.
    """
    native = _native_output(pipeline, frame, task)
    exported = onnx_model.run(columns_to_feed(onnx_model.inputs, frame))
    if task == "regression":
        diff = np.abs(exported - native) / np.maximum(1.0, np.abs(native))
        mismatches = 0
    else:
        diff = np.abs(exported - native).max(axis=1, initial=0.0)
        mismatches = _label_mismatches(native, exported, tolerance)
    both_nan = np.isnan(exported) & np.isnan(native)
    if both_nan.ndim == 2:
        both_nan = both_nan.all(axis=1)
    diff = np.where(both_nan, 0.0, np.where(np.isnan(diff), np.inf, diff))
    if not diff.size:
        return Parity(0.0, -1, 0, 0)
    worst = int(np.argmax(diff))
    return Parity(float(diff[worst]), worst, mismatches, len(diff))


def _label_mismatches(
    native: np.ndarray, exported: np.ndarray, tolerance: float
) -> int:
    """Count differing labels outside the tolerance band around the boundary."""
    if not len(native):
        return 0
    ordered = np.sort(native, axis=1)
    margin = ordered[:, -1] - ordered[:, -2] if native.shape[1] > 1 else ordered[:, 0]
    differ = native.argmax(axis=1) != exported.argmax(axis=1)
    return int((differ & (margin / 2 > tolerance)).sum())


def probe_rows(
    frame: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    pipeline: Pipeline,
    max_rows: int = 20_000,
) -> pd.DataFrame:
    """Return rows that stress the export beyond the holdout.

    The probes are: every value missing; unseen categories; each training
    category, rare ones included, with the other columns of a base row; for
    each numeric split threshold of the estimator, the inputs at and beside
    it (`split_probes`); and the training rows of a LightGBM model that
    could branch apart (`rows_at_thresholds`).
    """
    base = frame.head(1).copy()
    if base.empty:
        return base
    probes = [_all_missing(base, numeric, categorical), _unseen(base, categorical)]
    for name in categorical:
        probes.append(_categories(base, name, frame[name]))
    for name, values in split_probes(pipeline, numeric).items():
        rows = pd.concat([base] * len(values), ignore_index=True)
        rows[name] = values
        probes.append(rows)
    probes.append(rows_at_thresholds(frame, numeric, pipeline))
    result = pd.concat(probes, ignore_index=True)
    if len(result) > max_rows:
        # NOTE: a forest of deep trees can have more thresholds than is worth
        # scoring; a seeded sample keeps the check's run time bounded.
        result = result.sample(n=max_rows, random_state=0).reset_index(drop=True)
    return result


def split_probes(pipeline: Pipeline, numeric: list[str]) -> dict[str, np.ndarray]:
    """Return, per numeric feature, the inputs at and beside each split threshold.

    For a threshold t with nearest float32 a, the probes are t itself and the
    float32 values one step below and above a. The native model sends t left
    and the other two to the sides they lie on, and so must ONNX. The value a
    itself is not probed when it differs from t, because float64 inputs on
    both sides of t round to it, so no float32 threshold fits them all.
    A tree ensemble with a numeric scaler is exported without it. Each
    threshold then becomes the largest float32 input that goes left natively
    (`ScaledInputs.float32_thresholds`). So the probes are that float32,
    which must go left, and the next one up, which must go right.
    """
    thresholds = estimator_thresholds(pipeline[-1])
    scaled = scaled_inputs(pipeline)
    probes = {}
    for index, name in enumerate(numeric):
        values = thresholds.get(index)
        if values is None or not len(values):
            continue
        if scaled is not None:
            probes[name] = _scaled_probes(scaled, index, values)
            continue
        values = np.unique(values[np.isfinite(values)])
        # NOTE: LightGBM splits values from zero at ±1e-35 (kZeroThreshold), and
        # ONNX branches differently from LightGBM for inputs within about 1e-35
        # of zero. Such inputs are probed as 0.0 only, since real data has none.
        near_zero = np.abs(values) <= _ZERO_THRESHOLD
        if near_zero.any():
            values = np.append(values[~near_zero], 0.0)
        nearest = values.astype(np.float32)
        up = np.nextafter(nearest, np.float32(np.inf)).astype(np.float64)
        down = np.nextafter(nearest, np.float32(-np.inf)).astype(np.float64)
        probes[name] = np.unique(np.concatenate([down, values, up]))
    return probes


def rows_at_thresholds(
    frame: pd.DataFrame, numeric: list[str], pipeline: Pipeline
) -> pd.DataFrame:
    """Return the rows of an unscaled LightGBM model's training `frame` that
    have a numeric value rounding to the float32 of a threshold on its column.

    ONNX sends all inputs that round to one float32 the same way, while
    LightGBM compares the float64 value with the threshold. These are
    therefore the only training rows whose branches can differ, as when two
    training values closer than one float32 step lie on both sides of a
    threshold. Other estimators return no rows: scikit-learn trees cast
    their input to float32 themselves, and the inputs of a scaled tree model
    are rounded to float32 before scaling (`RoundToFloat32`).
    """
    if not hasattr(pipeline[-1], "booster_") or scaled_inputs(pipeline):
        return frame.iloc[:0]
    thresholds = estimator_thresholds(pipeline[-1])
    near = np.zeros(len(frame), dtype=bool)
    for index, name in enumerate(numeric):
        if index not in thresholds:
            continue
        nearest = np.unique(thresholds[index].astype(np.float32))
        values = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        near |= np.isin(values.astype(np.float32), nearest) & np.isfinite(values)
    return frame[near]


def training_inputs(
    pipeline: Pipeline, frame: pd.DataFrame, numeric: list[str]
) -> dict[int, np.ndarray]:
    """Return the numeric estimator inputs of the training rows, by column index."""
    if not numeric:
        return {}
    steps = pipeline[0].named_transformers_["numeric"]
    matrix = steps.transform(frame[numeric])
    return {index: matrix[:, index] for index in range(len(numeric))}


def _scaled_probes(
    scaled: ScaledInputs, index: int, thresholds: np.ndarray
) -> np.ndarray:
    placed = scaled.float32_thresholds(index, np.unique(thresholds))
    placed = placed[np.isfinite(placed)]
    above = np.nextafter(placed, np.float32(np.inf))
    return np.unique(np.concatenate([placed, above]).astype(np.float64))


def estimator_thresholds(estimator: Any) -> dict[int, np.ndarray]:
    """Return the split thresholds of a tree ensemble, by input column index."""
    found: dict[int, list[float]] = {}
    if hasattr(estimator, "booster_"):
        frame = estimator.booster_.trees_to_dataframe()
        splits = frame[frame["split_feature"].notna()]
        for feature, threshold in zip(splits["split_feature"], splits["threshold"]):
            index = int(str(feature).removeprefix("Column_"))
            found.setdefault(index, []).append(float(threshold))
    for tree in getattr(estimator, "estimators_", []):
        nodes = tree.tree_
        inner = nodes.feature >= 0
        for feature, threshold in zip(nodes.feature[inner], nodes.threshold[inner]):
            found.setdefault(int(feature), []).append(float(threshold))
    return {index: np.asarray(values) for index, values in found.items()}


def _all_missing(
    base: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> pd.DataFrame:
    rows = base.copy()
    rows[numeric] = np.nan
    rows[categorical] = ""
    return rows


def _unseen(base: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    rows = base.copy()
    rows[categorical] = "\u0000unseen category"
    return rows


def _categories(base: pd.DataFrame, name: str, values: pd.Series) -> pd.DataFrame:
    categories = sorted(set(values.tolist()) | {""})
    rows = pd.concat([base] * len(categories), ignore_index=True)
    rows[name] = categories
    return rows


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


def check_derived(
    catalog: Catalog, cfg: ModelConfig, frame: TrainingFrame, model: OnnxModel
) -> None:
    """Check that serving computes the derived features exactly as training did.

    Sample rows go through the serving conversion as one batch and the first
    rows also one at a time; every value must equal the training value
    (NaN equal to NaN).

    Raises:
        ExportError: A derived feature differs, naming it and the row.
    """
    if not frame.derive:
        return
    request, expected = derived_sample(catalog, frame)
    batches = [(0, request)] + [
        (row, request.slice(row, 1)) for row in range(min(20, request.num_rows))
    ]
    for start, batch in batches:
        columns, _ = table_to_columns(model.name, model.request, batch)
        served = model.derived_features(columns)
        for name in frame.derive:
            if name not in served:
                continue
            want = expected[name].to_numpy()[start : start + batch.num_rows]
            _compare_derived(cfg.name, name, want, np.asarray(served[name]), start)
    logger.info(
        "derived features checked model=%s rows=%d columns=%s",
        cfg.name,
        request.num_rows,
        ",".join(frame.derive),
    )


def _compare_derived(
    model: str, name: str, want: np.ndarray, got: np.ndarray, start: int
) -> None:
    if want.dtype.kind == "f":
        same = (want == got) | (np.isnan(want) & np.isnan(got.astype(np.float64)))
    else:
        same = want.astype(str) == got.astype(str)
    if not same.all():
        row = int(np.argmin(same))
        raise ExportError(
            f"derived feature {name!r} of model {model!r} is {got[row]!r} at serving "
            f"but {want[row]!r} at training on sample row {start + row}; the "
            "expression must depend only on its own row's values"
        )


def parity_message(
    model: str,
    task: str,
    agreement: Parity,
    checked: pd.DataFrame,
    holdout_rows: int,
    tolerance: float,
) -> str:
    """Return the error message of a failed parity check, naming the worst row."""
    row = agreement.worst_row
    where = "holdout row" if row < holdout_rows else "probe row"
    values = checked.iloc[row].to_dict() if row >= 0 else {}
    shown = ", ".join(f"{k}={v!r}" for k, v in list(values.items())[:12])
    if task == "regression":
        measure = (
            f"a relative difference of {agreement.max_difference:.3g} "
            "(|ONNX - native| / max(1, |native|))"
        )
        labels = ""
    else:
        measure = f"a probability difference of {agreement.max_difference:.3g}"
        labels = f" with {agreement.label_mismatches} labels differing"
    return (
        f"ONNX output of model {model!r} differs from the native model by {measure} "
        f"at {where} {row} ({shown}){labels}, over {agreement.rows} checked rows; "
        f"the tolerance is {tolerance:g} on that difference, so the version was not "
        "registered. ONNX computes in float32, so a model whose output turns on "
        "input differences below float32 precision cannot be exported; train it "
        "with other params (such as fewer or shallower trees) or another algorithm"
    )
