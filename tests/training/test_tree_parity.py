"""Classifier outputs, float32 split thresholds and category codes, native and ONNX."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pipeline_support import load_model, native_pipeline, train_on

from appliance.config import load_config
from appliance.errors import ExportError, TrainingError
from appliance.training._export import (
    estimator_thresholds,
    parity,
    place_forest_thresholds,
    probe_rows,
    split_probes,
)
from appliance.training._scaled import round_down


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


def _shift_up(model, thresholds, reference=None, stop=None):
    # Stands for a converter that stores each threshold one float32 too high.
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name == "nodes_values":
                for index, value in enumerate(attribute.floats):
                    up = np.nextafter(np.float32(value), np.float32(np.inf))
                    attribute.floats[index] = float(up)
    return 0


def test_threshold_probes_catch_shifted_thresholds(tmp_path, monkeypatch):
    from appliance.training import _export

    data = _labelled(seed=3)
    data["y"] = np.where(data["a"] + 0.3 * data["b"] > 0.1, "yes", "no")
    monkeypatch.setattr(_export, "round_thresholds", _shift_up)
    with pytest.raises(ExportError, match="at probe row") as raised:
        train_on(tmp_path, data, _classifier("lightgbm"))

    assert "a probability difference of" in str(raised.value)
    assert "labels differing" in str(raised.value)


def test_regression_parity_error_says_relative(tmp_path, monkeypatch):
    from appliance.training import _export

    data = _labelled(seed=3).drop(columns="y")
    data["y"] = np.where(data["a"] > 0.1, 1000.0, 0.0) + data["b"]
    models = """
[models.m]
dataset = "d"
target = "y"
task = "regression"
algorithm = "lightgbm"
params = { n_estimators = 20 }
"""
    monkeypatch.setattr(_export, "round_thresholds", _shift_up)
    with pytest.raises(ExportError, match="at probe row") as raised:
        train_on(tmp_path, data, models)

    message = str(raised.value)
    assert "by a relative difference of" in message
    assert "(|ONNX - native| / max(1, |native|))" in message
    assert "the tolerance is 1e-05 on that difference" in message
    assert "labels differing" not in message
    assert "fewer or shallower trees" in message


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
    rounded = round_down(np.array([0.1, 0.5, -0.1, 1e-40]))
    assert rounded[0] == np.nextafter(np.float32(0.1), np.float32(0))
    assert rounded[1] == np.float32(0.5)
    assert rounded[2] == np.float32(-0.1)
    assert rounded.dtype == np.float32
    assert all(float(r) <= v for r, v in zip(rounded, [0.1, 0.5, -0.1, 1e-40]))


def _diabetes() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    data = load_diabetes(as_frame=True).frame
    return data.rename(columns={"target": "y"})


FOREST_REGRESSOR = """
[models.m]
dataset = "d"
target = "y"
task = "regression"
algorithm = "random_forest"
params = { random_state = 0 }
"""


def test_default_forest_regressor_keeps_parity(tmp_path):
    # Thresholds of different trees lie less than one float32 step apart on
    # this data, so only matching nodes by tree and node id places them right.
    config, result = train_on(tmp_path, _diabetes(), FOREST_REGRESSOR)
    pipeline, frame = native_pipeline(config, "m", _diabetes())
    checked = probe_rows(frame.x_train, frame.numeric, frame.categorical, pipeline)
    agreement = parity(load_model(config), pipeline, checked, "regression")

    assert result.parity <= 1e-5
    assert agreement.max_difference <= 1e-5


def test_forest_thresholds_placed_by_node_id():
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import RandomForestRegressor

    data = _diabetes()
    x, y = data.drop(columns="y").to_numpy(), data["y"]
    forest = RandomForestRegressor(n_estimators=5, random_state=0).fit(x, y)
    other = RandomForestRegressor(n_estimators=5, random_state=1).fit(x, y)
    model = convert_sklearn(
        forest,
        initial_types=[("x", FloatTensorType([None, x.shape[1]]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    (node,) = [n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor"]
    values = next(a for a in node.attribute if a.name == "nodes_values").floats
    modes = next(a for a in node.attribute if a.name == "nodes_modes").strings
    trees = [tree.tree_ for tree in forest.estimators_]
    exact = np.concatenate([tree.threshold for tree in trees])
    branches = np.asarray(modes) == b"BRANCH_LEQ"
    for index in np.nonzero(branches)[0]:
        values[index] = float(np.float32(exact[index]))  # nearest, not at or below

    changed = place_forest_thresholds(model, forest)

    placed = np.asarray(values, dtype=np.float32)[branches]
    assert changed > 0
    assert (placed == round_down(exact[branches])).all()
    with pytest.raises(ExportError, match="does not match the fitted forest"):
        place_forest_thresholds(model, other)


def _lightgbm_nodes(estimator) -> dict[tuple[int, int], dict]:
    """Return LightGBM's nodes by the tree and node ids that onnxmltools gives.

    onnxmltools 1.16 numbers a split's two children before it descends into
    the left one, taking the smallest id not yet used in the tree.
    """
    nodes: dict[tuple[int, int], dict] = {}

    def number(tree: int, node: dict, node_id: int, used: set[int]) -> None:
        nodes[(tree, node_id)] = node
        if "left_child" not in node:
            return
        children = []
        for _ in range(2):
            free = min(set(range(len(used) + 1)) - used)
            used.add(free)
            children.append(free)
        number(tree, node["left_child"], children[0], used)
        number(tree, node["right_child"], children[1], used)

    for tree, info in enumerate(estimator.booster_.dump_model()["tree_info"]):
        number(tree, info["tree_structure"], 0, {0})
    return nodes


LIGHTGBM_MANY_TREES = """
[models.m]
dataset = "d"
target = "y"
task = "{task}"
algorithm = "lightgbm"
params = {{ n_estimators = 150, min_child_samples = 2, verbose = -1 }}
"""


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_lightgbm_thresholds_placed_per_node(tmp_path, task):
    # Placing by value must give each ONNX node the value that its own
    # LightGBM threshold needs, as placing by tree and node id would.
    import onnx

    from appliance.training._export import (
        _ByRounding,
        _lightgbm_thresholds,
        input_schema,
        to_onnx,
        training_inputs,
    )

    data = _diabetes()
    if task == "classification":
        data["y"] = np.select(
            [data["y"] > 200, data["y"] > 100], ["high", "mid"], "low"
        )
    config, result = train_on(tmp_path, data, LIGHTGBM_MANY_TREES.format(task=task))
    pipeline, frame = native_pipeline(config, "m", data)
    reference = training_inputs(pipeline, frame.x_train, frame.numeric)
    inputs = input_schema(frame.numeric, frame.categorical)
    model = onnx.load_from_string(to_onnx(pipeline, inputs, task, reference))
    nodes = _lightgbm_nodes(pipeline[-1])
    seen_of = _ByRounding.of_each(reference)

    (ensemble,) = [n for n in model.graph.node if n.op_type.startswith("TreeEnsemble")]
    attributes = {a.name: a for a in ensemble.attribute}
    branches = 0
    thresholds = set()
    for index, mode in enumerate(attributes["nodes_modes"].strings):
        if mode != b"BRANCH_LEQ":
            continue
        tree = attributes["nodes_treeids"].ints[index]
        node = nodes[(tree, attributes["nodes_nodeids"].ints[index])]
        feature = attributes["nodes_featureids"].ints[index]
        stored = np.float32(node["threshold"])
        seen = seen_of[feature].rounding_to(stored)
        expected = _lightgbm_thresholds(np.array([node["threshold"]]), stored, seen)
        assert node["split_feature"] == feature
        assert {float(np.float32(attributes["nodes_values"].floats[index]))} == expected
        branches += 1
        thresholds.add((feature, node["threshold"]))
    assert branches > 5 * len(thresholds)
    assert result.parity <= 1e-5


SHARED_FLOAT32_MODEL = """
[models.m]
dataset = "d"
target = "y"
task = "regression"
algorithm = "lightgbm"
[models.m.params]
n_estimators = 100
min_child_samples = 2
min_data_in_bin = 1
max_bin = 5000
verbose = -1
"""


def test_thresholds_sharing_float32_fail_parity(tmp_path):
    # Values that differ by less than one float32 step get bin bounds of
    # their own, so several thresholds round to one float32. Then no
    # placement keeps every input on its LightGBM side.
    rng = np.random.default_rng(0)
    centre = rng.choice([0.1, 0.2, 0.3, 1.5, 7.25], size=2000)
    value = centre * (1 + rng.integers(-40, 40, size=2000) * 2e-9)
    data = pd.DataFrame({"v": value, "w": rng.normal(size=2000)})
    data["y"] = np.where(value > centre, 1.0, 0.0) + 0.01 * data["w"]
    with pytest.raises(ExportError) as raised:
        train_on(tmp_path, data, SHARED_FLOAT32_MODEL)

    config = load_config(tmp_path / "config.toml")
    pipeline, _ = native_pipeline(config, "m", data)
    distinct = np.unique(estimator_thresholds(pipeline[-1])[0])
    assert len(np.unique(distinct.astype(np.float32))) < len(distinct)
    assert "differs from the native model" in str(raised.value)


TWIN_VALUES_MODEL = """
[models.m]
dataset = "d"
target = "y"
task = "regression"
algorithm = "lightgbm"
params = { n_estimators = 50, min_child_samples = 2, min_data_in_bin = 1 }
"""


def _twin_values(seed: int) -> pd.DataFrame:
    # 30 values get a twin 2e-8 higher, closer than one float32 step.
    rng = np.random.default_rng(seed)
    value = rng.normal(size=1500)
    twins = rng.choice(1500, size=60, replace=False)
    value[twins[30:]] = value[twins[:30]] * (1 + 2e-8)
    data = pd.DataFrame({"v": value, "w": rng.normal(size=1500)})
    noise = rng.normal(scale=0.3, size=1500)
    data["y"] = np.sin(3 * value) + 0.3 * data["w"] + noise
    return data


def _training_rows_difference(config, data: pd.DataFrame) -> float:
    import onnxruntime as ort

    from appliance.training._export import input_schema, to_onnx, training_inputs

    pipeline, frame = native_pipeline(config, "m", data)
    reference = training_inputs(pipeline, frame.x_train, frame.numeric)
    inputs = input_schema(frame.numeric, frame.categorical)
    onnx_bytes = to_onnx(pipeline, inputs, "regression", reference)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    feed = {name: frame.x_train[[name]].to_numpy(np.float32) for name in "vw"}
    exported = session.run(None, feed)[0].reshape(-1)
    native = pipeline.predict(frame.x_train)
    return float((np.abs(exported - native) / np.maximum(1.0, np.abs(native))).max())


def test_training_rows_across_threshold_fail_parity(tmp_path):
    # Twins on both sides of a threshold round to one float32, so ONNX sends
    # both one way while LightGBM separates them.
    data = _twin_values(seed=0)
    with pytest.raises(ExportError, match="at probe row"):
        train_on(tmp_path, data, TWIN_VALUES_MODEL)

    config = load_config(tmp_path / "config.toml")
    assert _training_rows_difference(config, data) > 0.01


def test_training_rows_agreeing_keep_parity(tmp_path):
    data = _twin_values(seed=2)
    config, result = train_on(tmp_path, data, TWIN_VALUES_MODEL)

    assert result.parity <= 1e-5
    assert _training_rows_difference(config, data) <= 1e-5
