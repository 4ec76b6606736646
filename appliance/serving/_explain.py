"""Per-prediction explanations by occlusion against reference values.

The contribution of input feature F to a row's prediction is the prediction
of the row minus the prediction of the same row with F replaced by its
reference value. That value is the training median of a numeric input, or
the most frequent training value of a categorical one. For a classifier the
prediction is the probability of the row's predicted label. A positive
contribution means the row's value of F raised that prediction compared with
a typical value.

Each feature is replaced alone, so interactions are not split between
features, and the contributions need not add up to the prediction minus the
baseline (every feature at its reference). The method runs the version's own
ONNX session on ``rows x (features + 1) + 1`` rows and needs no training
library.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from appliance.errors import RequestError
from appliance.serving._inputs import NUMBER
from appliance.serving._onnx import OnnxModel, class_key

METHOD = "occlusion"
METHOD_DESCRIPTION = (
    "contribution = prediction of the row minus the prediction of the same row "
    "with that feature set to its reference value (training median of a numeric "
    "feature, most frequent training value of a categorical one); for a "
    "classifier the prediction is the probability of the row's predicted label. "
    "Features are replaced one at a time, so contributions need not add up to "
    "prediction minus baseline."
)


def reference_of(model: OnnxModel) -> dict[str, Any]:
    """Return the reference value of every input of `model`.

    Raises:
        RequestError: The version was trained before reference values were
            stored, or lacks the value of an input.
    """
    reference = model.schema.get("reference")
    missing = [s["name"] for s in model.inputs if s["name"] not in (reference or {})]
    if reference is None or missing:
        raise RequestError(
            f"model {model.name!r} version {model.version} has no reference value "
            f"of {', '.join(map(repr, missing))}, so its predictions cannot be "
            "explained; train a new version",
            model=model.name,
        )
    return reference


def explain_feed(
    model: OnnxModel, feed: dict[str, np.ndarray], reference: dict[str, Any]
) -> list[dict[str, Any]]:
    """Return the prediction, baseline and contribution of each input, per row.

    Blocks while the session runs, so call it off the event loop.
    """
    rows = len(next(iter(feed.values())))
    names = [spec["name"] for spec in model.inputs]
    filled = {spec["name"]: _filled(spec, reference, rows) for spec in model.inputs}
    parts = [feed]
    for name in names:
        parts.append({**feed, name: filled[name]})
    parts.append({name: values[:1] for name, values in filled.items()})
    stacked = {name: np.concatenate([p[name] for p in parts]) for name in names}
    output = model.run(stacked)
    original = output[:rows]
    targets = _targets(model, original)
    score = _scores(model, output, targets, rows)
    baseline = _scores(model, output[-1:].repeat(rows, axis=0), targets, rows)
    results = []
    for row in range(rows):
        prediction = float(score[row])
        contributions = {
            name: _finite(prediction - score[(index + 1) * rows + row])
            for index, name in enumerate(names)
        }
        result = model.format(original[row : row + 1])[0]
        result.update(
            explained=_explained(model, targets[row]),
            prediction=_finite(prediction),
            baseline=_finite(float(baseline[row])),
            contributions=contributions,
        )
        results.append(result)
    return results


def _filled(spec: dict[str, str], reference: dict[str, Any], rows: int) -> np.ndarray:
    """Return a feed column of `rows` copies of the input's reference value."""
    value = reference[spec["name"]]
    if spec["type"] == NUMBER:
        number = math.nan if value is None else float(value)
        return np.full((rows, 1), number, dtype=np.float32)
    return np.full((rows, 1), "" if value is None else str(value), dtype=object)


def _targets(model: OnnxModel, original: np.ndarray) -> np.ndarray:
    """Return the predicted class index of each row; zeros for a regressor."""
    if model.task == "regression":
        return np.zeros(len(original), dtype=np.int64)
    return original.argmax(axis=1)


def _scores(
    model: OnnxModel, output: np.ndarray, targets: np.ndarray, rows: int
) -> np.ndarray:
    """Return the explained value of every output row: a value or a probability.

    Output row ``k`` belongs to request row ``k % rows``, whose target class
    it takes.
    """
    if model.task == "regression":
        return output
    owners = np.arange(len(output)) % rows
    return output[np.arange(len(output)), targets[owners]]


def _explained(model: OnnxModel, target: int) -> str:
    if model.task == "regression":
        return "value"
    assert model.classes is not None
    return f"probability of {class_key(model.classes[int(target)])}"


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
