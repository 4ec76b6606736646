"""Classifier outputs, float32 split thresholds and category codes, native and ONNX."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from appliance.errors import ExportError, TrainingError
from appliance.training._export import (
    _round_down,
    estimator_thresholds,
    parity,
    probe_rows,
    split_probes,
)
from pipeline_support import load_model, native_pipeline, train_on


def _classifier(algorithm: str, extra: str = "") -> str:
    return f"""
[models.m]
dataset = "d"
target = "y"
task = "classification"
algorithm = "{algorithm}"
params = {{ n_estimators = 20{extra} }}
"""


def _labelled(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows)})
    data["y"] = np.where(np.arange(rows) % 4 == 0, "yes", "no")
    return data


def test_string_labels_keyed_in_class_order(tmp_path):
    config, _ = train_on(tmp_path, _labelled(), _classifier("lightgbm"))
    model = load_model(config)
    results, _ = model.predict_request([{"a": 0.1, "b": -0.2}, {"a": 2.0, "b": 1.0}])

    assert model.classes == ["no", "yes"]
    for result in results:
        probabilities = result["probabilities"]
        assert list(probabilities) == ["no", "yes"]
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert result["label"] == max(probabilities, key=probabilities.get)


def test_single_class_target_rejected_naming_column(tmp_path):
    data = _labelled().assign(y="no")
    with pytest.raises(TrainingError, match="target column 'y'.*single class 'no'"):
        train_on(tmp_path, data, _classifier("random_forest"))


def test_shallow_tree_keeps_fractional_probabilities(tmp_path):
    config, result = train_on(
        tmp_path, _labelled(), _classifier("random_forest", ", max_depth = 2")
    )
    model = load_model(config)
    rows = [{"a": float(a), "b": 0.0} for a in np.linspace(-2, 2, 9)]
    served = [r["probabilities"]["yes"] for r in model.predict_request(rows)[0]]
    pipeline, _ = native_pipeline(config, "m", _labelled())
    native = pipeline.predict_proba(pd.DataFrame(rows))[:, 1]

    assert any(0.0 < p < 1.0 and p not in (0.5,) for p in served)
    assert np.abs(np.asarray(served) - native).max() <= 1e-5
    assert result.parity <= 1e-5


def test_threshold_probes_agree_after_rounding(tmp_path):
    data = _labelled(seed=3)
    data["y"] = np.where(data["a"] + 0.3 * data["b"] > 0.1, "yes", "no")
    config, result = train_on(tmp_path, data, _classifier("lightgbm"))
    pipeline, frame = native_pipeline(config, "m", data)
    probes = split_probes(pipeline, frame.numeric)
    model = load_model(config)

    assert set(probes) == {"a", "b"}
    thresholds = estimator_thresholds(pipeline[-1])[0]
    for threshold in thresholds[np.abs(thresholds) > 1e-30]:
        nearest = np.float32(threshold)
        assert threshold in probes["a"]
        assert float(np.nextafter(nearest, np.float32(np.inf))) in probes["a"]
        assert float(np.nextafter(nearest, np.float32(-np.inf))) in probes["a"]
    checked = probe_rows(frame.x_train, frame.numeric, frame.categorical, pipeline)
    agreement = parity(model, pipeline, checked, "classification")
    assert agreement.max_difference <= 1e-5
    assert agreement.label_mismatches == 0
    assert result.metrics["parity_label_mismatches"] == 0


def test_threshold_probes_catch_shifted_thresholds(tmp_path, monkeypatch):
    from appliance.training import _export

    def shift_up(model, thresholds, float32_native, reference=None, stop=None):
        # Stands for a converter that stores each threshold one float32 too high.
        for node in model.graph.node:
            for attribute in node.attribute:
                if attribute.name == "nodes_values":
                    for index, value in enumerate(attribute.floats):
                        up = np.nextafter(np.float32(value), np.float32(np.inf))
                        attribute.floats[index] = float(up)
        return 0

    data = _labelled(seed=3)
    data["y"] = np.where(data["a"] + 0.3 * data["b"] > 0.1, "yes", "no")
    monkeypatch.setattr(_export, "round_thresholds", shift_up)
    with pytest.raises(ExportError, match="at probe row"):
        train_on(tmp_path, data, _classifier("lightgbm"))


COUNTRY_MODEL = """
[models.m]
dataset = "d"
target = "y"
task = "regression"
algorithm = "lightgbm"
categorical = ["country"]
params = { n_estimators = 20, learning_rate = 0.5, min_child_samples = 5 }
"""


def test_lightgbm_country_codes_stable_across_batches(tmp_path):
    countries = ["BE", "FR", "DE", "IT", "ES"]
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"country": np.tile(countries, 60), "x": rng.normal(size=300)})
    data["y"] = np.where(data["country"] == "IT", 10.0, 0.0)
    config, _ = train_on(tmp_path, data, COUNTRY_MODEL)
    model = load_model(config)
    pipeline, _ = native_pipeline(config, "m", data)

    def both(batch: list[str]) -> tuple[np.ndarray, np.ndarray]:
        frame = pd.DataFrame({"x": [0.0] * len(batch), "country": batch})
        served = [
            r["value"] for r in model.predict_request(frame.to_dict("records"))[0]
        ]
        return np.asarray(served), pipeline.predict(frame)

    alone, alone_native = both(["ES"])
    without_it, without_it_native = both(["ES", "BE", "FR"])
    full, full_native = both(countries)
    unseen, unseen_native = both(["PT", "ES"])

    assert abs(alone[0]) < 0.01
    assert alone[0] == without_it[0] == full[4] == unseen[1]
    assert full[3] > 9.99
    for served, native in [
        (alone, alone_native),
        (without_it, without_it_native),
        (full, full_native),
        (unseen, unseen_native),
    ]:
        assert np.abs(served - native).max() <= 1e-5 * max(1.0, np.abs(native).max())


def test_round_down_gives_float32_at_or_below():
    rounded = _round_down(np.array([0.1, 0.5, -0.1, 1e-40]))
    assert rounded[0] == np.nextafter(np.float32(0.1), np.float32(0))
    assert rounded[1] == np.float32(0.5)
    assert rounded[2] == np.float32(-0.1)
    assert rounded.dtype == np.float32
    assert all(float(r) <= v for r, v in zip(rounded, [0.1, 0.5, -0.1, 1e-40]))
