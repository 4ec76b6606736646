"""Exports, model cards and the sha256 check of ONNX artifacts on load."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml
from trips_data import trips_frame

from appliance.config import Config
from appliance.errors import SignatureError, StorageError
from appliance.monitoring._checks import check_drift
from appliance.registry import collect_card, export_version, render_card, write_card
from appliance.serving import OnnxModel
from appliance.signing import trusted_keys
from appliance.storage import Catalog, ModelVersion, get_version
from appliance.training import TrainResult, train_model


@pytest.fixture
def trained(trips: Callable[[str], Config]) -> tuple[Config, TrainResult]:
    config = trips(
        """
        [models.late.cv]
        folds = 3
        """
    )
    return config, train_model(config, "late")


def _version(config: Config) -> ModelVersion:
    with Catalog(config.storage.home, read_only=True) as catalog:
        return get_version(catalog, "late", None)


def test_mlflow_export_matches_appliance(
    trained: tuple[Config, TrainResult], tmp_path: Path
) -> None:
    config, result = trained
    version = _version(config)
    target = tmp_path / "exported"

    export_version(version, target, "mlflow", trusted_keys(config))

    mlmodel = yaml.safe_load((target / "MLmodel").read_text())
    assert mlmodel["flavors"]["onnx"]["data"] == "model.onnx"
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "mlflow.onnx"
    assert mlmodel["metadata"]["sha256"] == version.sha256
    inputs = json.loads(mlmodel["signature"]["inputs"])
    outputs = json.loads(mlmodel["signature"]["outputs"])
    assert [spec["name"] for spec in inputs] == ["distance", "hour", "carrier"]
    assert [spec["tensor-spec"]["dtype"] for spec in inputs] == [
        "float32",
        "float32",
        "object",
    ]
    assert {spec["name"] for spec in outputs} == {"label", "probabilities"}
    for name in ("requirements.txt", "python_env.yaml", "conda.yaml"):
        assert (target / name).is_file(), name

    rows = trips_frame(rows=50, seed=7)
    session = ort.InferenceSession(
        str(target / mlmodel["flavors"]["onnx"]["data"]),
        providers=["CPUExecutionProvider"],
    )
    feed = {
        "distance": rows[["distance"]].to_numpy(np.float32),
        "hour": rows[["hour"]].to_numpy(np.float32),
        "carrier": rows[["carrier"]].to_numpy(object),
    }
    (exported,) = session.run(["probabilities"], feed)
    served = OnnxModel.load(
        version.path, version.sha256, trusted=trusted_keys(config)
    ).predict_rows(rows.drop(columns="late").to_dict(orient="records"))
    expected = np.array(
        [[p["false"], p["true"]] for p in (r["probabilities"] for r in served)]
    )
    np.testing.assert_allclose(exported, expected, rtol=0, atol=1e-6)


def test_onnx_export_writes_model_and_schema(
    trained: tuple[Config, TrainResult], tmp_path: Path
) -> None:
    config, _ = trained
    target = tmp_path / "plain"

    files = export_version(_version(config), target, "onnx", trusted_keys(config))

    assert sorted(f.name for f in files) == [
        "model.onnx",
        "schema.json",
        "signature.json",
        "signing_key.pub",
    ]
    assert not (target / "MLmodel").exists()
    with pytest.raises(StorageError, match="not empty"):
        export_version(_version(config), target, "onnx", trusted_keys(config))


def test_flipped_byte_detected_on_load(
    trained: tuple[Config, TrainResult], tmp_path: Path
) -> None:
    config, _ = trained
    version = _version(config)
    artifact = version.path / "model.onnx"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x10
    artifact.write_bytes(bytes(data))

    trusted = trusted_keys(config)
    changed = r"model\.onnx of model 'late' version 1 was changed after signing"
    with pytest.raises(SignatureError, match=changed):
        OnnxModel.load(version.path, version.sha256, trusted=trusted)
    with pytest.raises(SignatureError, match=changed):
        export_version(version, tmp_path / "out", "mlflow", trusted)
    assert not (tmp_path / "out").exists()


def test_model_card_is_self_contained(trained: tuple[Config, TrainResult]) -> None:
    config, result = trained

    with Catalog(config.storage.home, read_only=True) as catalog:
        data = collect_card(catalog, "late", None, trusted_keys(config))
    page = render_card(data)

    assert "<h1>late version 1</h1>" in page
    assert "Ranks trips by risk of arriving late; not for pricing." in page
    assert f"trips@{result.dataset_version}" in page
    for heading in ("Features", "Parameters", "Holdout metrics", "Cross-validation"):
        assert f"<h2>{heading}</h2>" in page, heading
    assert "By carrier" in page
    assert "passed" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 5
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    # Nothing is fetched from elsewhere: no external scripts, styles or images.
    assert not re.search(r'(src|href)="(?!data:)', page)


def test_model_card_folder_missing(tmp_path: Path) -> None:
    target = tmp_path / "absent" / "card.html"

    with pytest.raises(StorageError) as raised:
        write_card("<html></html>", target)
    message = str(raised.value)
    assert f"folder {target.parent} not found" in message
    assert f"cannot write model card {target}:" in message
    assert ".partial" not in message


def test_model_card_target_is_folder(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="it is a folder; name a file"):
        write_card("<html></html>", tmp_path)


def _edit_schema(version: ModelVersion) -> None:
    path = version.path / "schema.json"
    schema = json.loads(path.read_text("utf-8"))
    schema["inputs"] = schema["inputs"][:1]
    path.write_text(json.dumps(schema), "utf-8")


READERS_OF_SCHEMA = {
    "card": lambda config: _read_card(config),
    "drift check": lambda config: check_drift(str(config.path), "late"),
}


def _read_card(config: Config) -> None:
    with Catalog(config.storage.home, read_only=True) as catalog:
        collect_card(catalog, "late", None, trusted_keys(config))


@pytest.mark.parametrize("reader", sorted(READERS_OF_SCHEMA))
def test_schema_edited_after_signing_rejected(
    trained: tuple[Config, TrainResult], reader: str
) -> None:
    config, _ = trained
    _edit_schema(_version(config))

    changed = r"schema\.json of model 'late' version 1 was changed after signing"
    with pytest.raises(SignatureError, match=changed):
        READERS_OF_SCHEMA[reader](config)
