"""Model versions: ONNX artifacts on disk, their hashes and schemas in the catalog.

Each version lives in ``models/NAME/VERSION/`` as ``model.onnx`` plus
``schema.json`` (inputs, classes, task) and ``signature.json``, a signed list
of the sha256 of every other file of the folder (see `appliance.signing`).
The catalog records the sha256 of the ONNX file too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from appliance.access import record
from appliance.dbrows import first_row
from appliance.errors import IntegrityError, NotFoundError
from appliance.storage._catalog import Catalog

Signer = Callable[[str, int, dict[str, bytes]], bytes]
"""Return the ``signature.json`` bytes of a version from its model name,
version number and files by name."""

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
SCHEMA_FILE = "schema.json"
SIGNATURE_FILE = "signature.json"


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model."""

    model: str
    version: int
    run_id: str
    created_at: datetime
    task: str
    path: Path
    """Folder holding the ONNX file and its schema."""
    sha256: str
    parity: float
    """Largest difference between ONNX and native outputs on the checked rows."""


def register_version(
    catalog: Catalog,
    model: str,
    run_id: str,
    task: str,
    onnx_bytes: bytes,
    schema: dict[str, Any],
    parity: float,
    sign: Signer | None,
) -> ModelVersion:
    """Store an ONNX model as the next version of `model` and audit it.

    `sign` writes the version's signature in the same folder write; None
    registers an unsigned version, which loaders reject until it is signed.
    """
    row = first_row(
        catalog.db.execute(
            "SELECT coalesce(max(version), 0) FROM model_versions WHERE model = ?",
            [model],
        )
    )
    version = int(row[0]) + 1
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    folder = catalog.models_dir / model / str(version)
    files = {
        MODEL_FILE: onnx_bytes,
        SCHEMA_FILE: json.dumps(
            {**schema, "model": model, "version": version, "sha256": digest},
            indent=2,
        ).encode(),
    }
    if sign is not None:
        files[SIGNATURE_FILE] = sign(model, version, files)
    _write_folder(folder, files)
    created = datetime.now(timezone.utc)
    catalog.db.execute(
        "INSERT INTO model_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [model, version, run_id, created, task, str(folder), digest, parity],
    )
    logger.info(
        "model registered model=%s version=%d sha256=%s", model, version, digest
    )
    details = {"version": version, "run_id": run_id, "sha256": digest}
    record(catalog, "model.register", model, details)
    return ModelVersion(model, version, run_id, created, task, folder, digest, parity)


def list_models(catalog: Catalog, model: str | None = None) -> list[ModelVersion]:
    """Return registered versions, by model name and then newest first."""
    sql = "SELECT * FROM model_versions"
    params: list[Any] = []
    if model is not None:
        sql += " WHERE model = ?"
        params.append(model)
    rows = catalog.db.execute(sql + " ORDER BY model, version DESC", params).fetchall()
    return [_from_row(row) for row in rows]


def latest_models(catalog: Catalog) -> list[ModelVersion]:
    """Return the newest version of every model."""
    rows = catalog.db.execute(
        "SELECT * FROM model_versions QUALIFY "
        "row_number() OVER (PARTITION BY model ORDER BY version DESC) = 1 "
        "ORDER BY model"
    ).fetchall()
    return [_from_row(row) for row in rows]


def get_version(catalog: Catalog, model: str, version: int | None) -> ModelVersion:
    """Return one version of `model`, the newest when `version` is None.

    Raises:
        NotFoundError: The model or the version is not registered.
    """
    versions = list_models(catalog, model)
    if not versions:
        raise NotFoundError(
            f"model {model!r} has no registered version; run 'appliance train "
            f"{model}' first"
        )
    if version is None:
        return versions[0]
    for found in versions:
        if found.version == version:
            return found
    known = ", ".join(str(v.version) for v in versions)
    raise NotFoundError(f"model {model!r} has no version {version}; versions: {known}")


def verify_artifact(version: ModelVersion) -> bytes:
    """Return the ONNX bytes of `version` after checking them against the catalog.

    Raises:
        IntegrityError: The file is missing or its sha256 differs from the
            recorded one.
    """
    path = version.path / MODEL_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(
            f"{path} of model {version.model!r} version {version.version} is "
            "missing; restore it from a backup or retrain"
        ) from None
    check_onnx_hash(path, version.model, version.version, data, version.sha256)
    return data


def check_onnx_hash(
    path: Path, model: str, version: int, data: bytes, expected: str
) -> None:
    """Compare the ONNX bytes read from `path` with the catalog's sha256.

    Raises:
        IntegrityError: The sha256 of `data` differs from `expected`.
    """
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise IntegrityError(
            f"{path} of model {model!r} version {version} has sha256 {actual}, "
            f"expected {expected}; the artifact is corrupted, restore it from a "
            "backup or retrain"
        )


def read_schema(version: ModelVersion) -> dict[str, Any]:
    """Return the schema written beside the ONNX file of `version`.

    Raises:
        IntegrityError: The file is missing, or is not a JSON object.
    """
    return load_schema(version.path / SCHEMA_FILE)


def load_schema(path: Path) -> dict[str, Any]:
    """Read a version's ``schema.json``.

    The file's hash is checked by the version's signature, not here.

    Raises:
        IntegrityError: The file is missing, or is not a JSON object.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(
            f"{path} is missing; restore the version folder from a backup or retrain"
        ) from None
    return parse_schema(data, path)


def parse_schema(data: bytes, path: Path) -> dict[str, Any]:
    """Parse the bytes of ``schema.json`` read from `path`.

    Raises:
        IntegrityError: The bytes are not a JSON object.
    """
    try:
        schema = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(
            f"{path} is not valid JSON ({exc}); the artifact is corrupted, restore "
            "it from a backup or retrain"
        ) from None
    if not isinstance(schema, dict):
        raise IntegrityError(
            f"{path} does not contain a JSON object; the artifact is corrupted, "
            "restore it from a backup or retrain"
        )
    return schema


def _from_row(row: tuple) -> ModelVersion:
    model, version, run_id, created, task, path, digest, parity = row
    return ModelVersion(
        model, version, run_id, created, task, Path(path), digest, parity
    )


def _write_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Write `files` into `folder` through a temporary sibling and a rename."""
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for name, data in files.items():
            with (staging / name).open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
