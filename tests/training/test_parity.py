"""ONNX export parity for every algorithm and task, and failed training runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support import DATASETS, MODELS, TrainedHome, json_rows, model_table

from appliance.config import load_config
from appliance.errors import IntegrityError, TrainingError
from appliance.serving import NUMBER, STRING, OnnxModel, class_key
from appliance.signing import trusted_keys
from appliance.storage import MODEL_FILE, Catalog, get_version, ingest, list_runs
from appliance.training import PARITY_TOLERANCE, train_model

CLASSIFIER_NAMES = sorted(n for n, (d, _) in MODELS.items() if d != "regression")
REGRESSOR_NAMES = sorted(n for n, (d, _) in MODELS.items() if d == "regression")
PROBABILITY_SUM_TOLERANCE = 1e-6


def load_onnx(trained: TrainedHome, name: str) -> OnnxModel:
    version = trained.results[name].model_version
    trusted = trusted_keys(trained.config)
    return OnnxModel.load(version.path, version.sha256, trusted=trusted)


def training_classes(frames: dict[str, pd.DataFrame], name: str) -> list[Any]:
    dataset = MODELS[name][0]
    target = DATASETS[dataset][0]
    return sorted(frames[dataset][target].unique().tolist())


def hard_rows(frame: pd.DataFrame, name: str) -> list[dict[str, Any]]:
    """Return rows with NaN or None numerics, None or "" text and unseen text."""
    dataset = MODELS[name][0]
    target, _, text = DATASETS[dataset]
    base = json_rows(frame.drop(columns=[target]).head(1))[0]
    numeric = [c for c in base if c != text]
    rows = []
    rows.append({**base, **{c: math.nan for c in numeric}, text: None})
    rows.append({**base, **{c: None for c in numeric}, text: ""})
    rows.append({**base, text: "never seen in training"})
    rows.append({**base, numeric[0]: None, text: "north-north-west"})
    rows.extend(json_rows(frame.drop(columns=[target]).iloc[1:9]))
    return rows


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parity_within_tolerance(trained: TrainedHome, name: str) -> None:
    assert trained.results[name].parity <= PARITY_TOLERANCE


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parity_recorded_in_catalog(trained: TrainedHome, name: str) -> None:
    result = trained.results[name]
    with Catalog(trained.home, read_only=True) as catalog:
        version = get_version(catalog, name, None)
    assert version.version == 1
    assert version.parity == result.parity
    assert version.sha256 == result.model_version.sha256


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnx_inputs_match_columns(
    trained: TrainedHome, frames: dict[str, pd.DataFrame], name: str
) -> None:
    dataset = MODELS[name][0]
    target, _, text = DATASETS[dataset]
    columns = [c for c in frames[dataset].columns if c != target]
    expected = [{"name": c, "type": STRING if c == text else NUMBER} for c in columns]
    assert load_onnx(trained, name).inputs == expected


@pytest.mark.parametrize("name", CLASSIFIER_NAMES)
def test_onnx_classes_match_training(
    trained: TrainedHome, frames: dict[str, pd.DataFrame], name: str
) -> None:
    model = load_onnx(trained, name)
    assert model.classes == training_classes(frames, name)


@pytest.mark.parametrize("name", CLASSIFIER_NAMES)
def test_onnx_probabilities_sum_one(
    trained: TrainedHome, frames: dict[str, pd.DataFrame], name: str
) -> None:
    model = load_onnx(trained, name)
    classes = training_classes(frames, name)
    keys = [class_key(c) for c in classes]
    predictions = model.predict_rows(hard_rows(frames[MODELS[name][0]], name))

    for prediction in predictions:
        probabilities = prediction["probabilities"]
        assert list(probabilities) == keys
        values = list(probabilities.values())
        assert all(isinstance(p, float) for p in values)
        assert all(math.isfinite(p) for p in values)
        # Averaging trees in float32 can land one ulp (1.2e-7) above 1.
        low, high = -PROBABILITY_SUM_TOLERANCE, 1.0 + PROBABILITY_SUM_TOLERANCE
        assert all(low <= p <= high for p in values)
        assert abs(sum(values) - 1.0) <= PROBABILITY_SUM_TOLERANCE
        assert prediction["label"] in classes
        assert class_key(prediction["label"]) == max(keys, key=probabilities.get)


@pytest.mark.parametrize("name", REGRESSOR_NAMES)
def test_onnx_regression_values_finite(
    trained: TrainedHome, frames: dict[str, pd.DataFrame], name: str
) -> None:
    model = load_onnx(trained, name)
    predictions = model.predict_rows(hard_rows(frames["regression"], name))

    assert len(predictions) == 12
    for prediction in predictions:
        assert list(prediction) == ["value"]
        assert math.isfinite(prediction["value"])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnx_batch_matches_single_rows(
    trained: TrainedHome, frames: dict[str, pd.DataFrame], name: str
) -> None:
    model = load_onnx(trained, name)
    rows = hard_rows(frames[MODELS[name][0]], name)
    batch = model.predict_rows(rows)

    for row, together in zip(rows, batch, strict=True):
        (alone,) = model.predict_rows([row])
        assert_same_prediction(alone, together)


@pytest.mark.parametrize("name", ["binary_lightgbm", "regression_linear_regression"])
def test_onnx_nan_equals_none(
    trained: TrainedHome, frames: dict[str, pd.DataFrame], name: str
) -> None:
    model = load_onnx(trained, name)
    (as_nan, as_none, *_) = hard_rows(frames[MODELS[name][0]], name)
    with_nan, with_none = model.predict_rows([as_nan, as_none])
    assert_same_prediction(with_nan, with_none)


def test_onnx_load_rejects_wrong_hash(trained: TrainedHome) -> None:
    folder = trained.results["binary_lightgbm"].model_version.path
    with pytest.raises(IntegrityError, match=str(folder / MODEL_FILE)):
        OnnxModel.load(folder, "0" * 64, trusted=trusted_keys(trained.config))


def assert_same_prediction(left: dict[str, Any], right: dict[str, Any]) -> None:
    assert left.keys() == right.keys()
    if "value" in left:
        # float32 matrix products may round differently by batch size: 1 ulp is
        # about 1.2e-7 relative.
        assert left["value"] == pytest.approx(right["value"], rel=1e-6, abs=1e-6)
        return
    assert left["label"] == right["label"]
    assert left["probabilities"].keys() == right["probabilities"].keys()
    for key, probability in left["probabilities"].items():
        assert probability == pytest.approx(right["probabilities"][key], abs=1e-6)


# --- failed training -------------------------------------------------------------


@pytest.fixture
def single_class_config(tmp_path: Path, write_config) -> Path:
    """Write a home whose dataset has one class in the target ``outcome``."""
    frame = pd.DataFrame(
        {
            "size": np.arange(40, dtype=float),
            "colour": ["red", "blue"] * 20,
            "outcome": ["yes"] * 40,
        }
    )
    source = tmp_path / "single.csv"
    frame.to_csv(source, index=False)
    config_path = write_config(
        {"one_class": model_table("single", "outcome", "classification", "lightgbm")}
    )
    with Catalog(load_config(config_path).storage.home) as catalog:
        ingest(catalog, "single", [source])
    return config_path


def test_train_single_class_raises(single_class_config: Path) -> None:
    config = load_config(single_class_config)
    with pytest.raises(TrainingError, match=r"target column 'outcome'.*single class"):
        train_model(config, "one_class")


def test_train_failure_recorded_as_run(single_class_config: Path) -> None:
    config = load_config(single_class_config)
    with pytest.raises(TrainingError):
        train_model(config, "one_class")

    with Catalog(config.storage.home, read_only=True) as catalog:
        runs = list_runs(catalog, "one_class")
    assert len(runs) == 1
    run = runs[0]
    assert run.status == "failed"
    assert run.error is not None
    assert run.error.startswith("TrainingError: ")
    assert "'outcome'" in run.error
    assert run.finished_at is not None
    assert run.model_version is None


def test_train_failure_registers_nothing(single_class_config: Path) -> None:
    config = load_config(single_class_config)
    with pytest.raises(TrainingError):
        train_model(config, "one_class")

    with Catalog(config.storage.home, read_only=True) as catalog:
        count = catalog.db.execute("SELECT count(*) FROM model_versions").fetchone()
    assert count == (0,)
    assert not (config.storage.home / "models").exists()
