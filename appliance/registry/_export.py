"""Export a model version as a plain ONNX folder or an MLflow model directory.

The MLflow layout is written without MLflow: an ``MLmodel`` YAML file with the
``onnx`` and ``python_function`` flavors and a tensor signature, beside
``model.onnx`` and the environment files MLflow reads. MLflow (2.x and later)
loads such a folder with ``mlflow.onnx.load_model`` or
``mlflow.pyfunc.load_model``; any ONNX server takes ``model.onnx`` alone.

Both formats ship the version's files as signed, with ``signature.json`` and
the signer's public key in ``signing_key.pub``, so the receiver can check
them. The signature does not cover the MLflow files.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import uuid
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from appliance.errors import StorageError
from appliance.signing import TrustedKeys, public_pem, signer_id, verify_version
from appliance.storage import (
    MODEL_FILE,
    SCHEMA_FILE,
    SIGNATURE_FILE,
    ModelVersion,
    parse_schema,
)

logger = logging.getLogger(__name__)

FORMATS = ("mlflow", "onnx")

PUBLIC_KEY_FILE = "signing_key.pub"
"""Public key (PEM) of the key that signed an exported version."""

_ONNX_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(string)": "object",
    "tensor(bool)": "bool",
}


def export_version(
    version: ModelVersion, target: Path, fmt: str, trusted: TrustedKeys
) -> list[Path]:
    """Write `version` to the new folder `target` and return the files written.

    Raises:
        SignatureError: The version's signature is missing, invalid or
            untrusted, or a file differs from its signed hash.
        IntegrityError: The ONNX file does not match its recorded sha256.
        StorageError: `target` exists and is not an empty folder, or cannot
            be written.
    """
    if fmt not in FORMATS:
        raise StorageError(f"unknown export format {fmt!r}; use one of {FORMATS}")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise StorageError(
            f"export folder {target} already exists and is not empty; choose a "
            "new folder"
        )
    signed = verify_version(version, trusted)
    onnx_bytes = signed[MODEL_FILE]
    schema = parse_schema(signed[SCHEMA_FILE], version.path / SCHEMA_FILE)
    signer = signer_id(signed[SIGNATURE_FILE])
    assert signer is not None, "a verified manifest names its key"
    files = {**signed, PUBLIC_KEY_FILE: public_pem(trusted.keys[signer])}
    if fmt == "mlflow":
        files.update(mlflow_files(version, onnx_bytes, schema))
    _write_folder(target, files)
    logger.info(
        "model exported model=%s version=%d format=%s folder=%s",
        version.model,
        version.version,
        fmt,
        target,
    )
    return [target / name for name in files]


def mlflow_files(
    version: ModelVersion, onnx_bytes: bytes, schema: dict[str, Any]
) -> dict[str, bytes]:
    """Return ``MLmodel`` and the environment files of an MLflow ONNX model."""
    onnx_version = metadata.version("onnx")
    runtime_version = metadata.version("onnxruntime")
    python = platform.python_version()
    requirements = f"onnx=={onnx_version}\nonnxruntime=={runtime_version}\n"
    python_env = (
        f"python: {python}\nbuild_dependencies:\n- pip\ndependencies:\n"
        "- -r requirements.txt\n"
    )
    conda = (
        "name: mlflow-env\nchannels:\n- conda-forge\ndependencies:\n"
        f"- python={python}\n- pip\n- pip:\n"
        f"  - onnx=={onnx_version}\n  - onnxruntime=={runtime_version}\n"
    )
    return {
        "MLmodel": mlmodel_yaml(version, onnx_bytes, schema).encode(),
        "requirements.txt": requirements.encode(),
        "python_env.yaml": python_env.encode(),
        "conda.yaml": conda.encode(),
    }


def mlmodel_yaml(
    version: ModelVersion, onnx_bytes: bytes, schema: dict[str, Any]
) -> str:
    """Return the ``MLmodel`` file: flavors, signature and appliance metadata."""
    inputs, outputs = tensor_signature(onnx_bytes)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    lines = [
        "artifact_path: model",
        "flavors:",
        "  onnx:",
        "    code: null",
        f"    data: {MODEL_FILE}",
        f"    onnx_version: {_q(metadata.version('onnx'))}",
        "    providers:",
        "    - CPUExecutionProvider",
        "  python_function:",
        f"    data: {MODEL_FILE}",
        "    env:",
        "      conda: conda.yaml",
        "      virtualenv: python_env.yaml",
        "    loader_module: mlflow.onnx",
        f"    python_version: {_q(platform.python_version())}",
        "metadata:",
        f"  appliance_model: {_q(version.model)}",
        f"  appliance_version: {version.version}",
        f"  appliance_run_id: {_q(version.run_id)}",
        f"  task: {_q(version.task)}",
        f"  classes: {_q(json.dumps(schema.get('classes')))}",
        f"  sha256: {_q(version.sha256)}",
        f"model_uuid: {_q(uuid.uuid4().hex)}",
        "signature:",
        f"  inputs: {_q(json.dumps(inputs))}",
        f"  outputs: {_q(json.dumps(outputs))}",
        "  params: null",
        f"utc_time_created: {_q(created)}",
    ]
    return "\n".join(lines) + "\n"


def tensor_signature(
    onnx_bytes: bytes,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return MLflow tensor specs of the model's inputs and outputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return (
        [_tensor_spec(node) for node in session.get_inputs()],
        [_tensor_spec(node) for node in session.get_outputs()],
    )


def _tensor_spec(node: Any) -> dict[str, Any]:
    shape = [dim if isinstance(dim, int) else -1 for dim in node.shape]
    return {
        "type": "tensor",
        "tensor-spec": {"dtype": _ONNX_TYPES.get(node.type, "object"), "shape": shape},
        "name": node.name,
    }


def _q(text: str) -> str:
    """Quote a YAML scalar; a JSON string is a valid double-quoted YAML scalar."""
    return json.dumps(text)


def _write_folder(target: Path, files: dict[str, bytes]) -> None:
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        for name, data in files.items():
            (staging / name).write_bytes(data)
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise StorageError(f"cannot write export folder {target}: {exc}") from exc
