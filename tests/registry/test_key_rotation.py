"""Rotation of the home's signing key without a daemon: re-sign, retire, resume."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support import run_appliance

from appliance.config import Config
from appliance.errors import SignatureError
from appliance.serving import OnnxModel
from appliance.signing import (
    KEY_FOLDER,
    PRIVATE_FILE,
    PUBLIC_FILE,
    key_id,
    public_pem,
    read_public_key,
    sign_manifest,
    signing_key,
    trusted_keys,
    write_private_key,
)
from appliance.storage import Catalog, ModelVersion, list_models
from appliance.training import train_model

ROW = {"distance": 700.0, "hour": 18, "carrier": "B6"}


def _cli(config: Config, *args: str) -> tuple[int, str]:
    result = run_appliance(config.path, config.storage.home, *args)
    return result.returncode, result.stdout + result.stderr


def _home_key_id(config: Config) -> str:
    public = read_public_key(config.storage.home / KEY_FOLDER / PUBLIC_FILE)
    return key_id(public)


def _signer(version: ModelVersion) -> str:
    manifest = json.loads((version.path / "signature.json").read_text("utf-8"))
    return str(manifest["key_id"])


def _versions(config: Config) -> list[ModelVersion]:
    with Catalog(config.storage.home, read_only=True) as catalog:
        return list_models(catalog, "late")


def _load_and_predict(config: Config, version: ModelVersion) -> None:
    """Load a version through its signature check into onnxruntime and predict."""
    trusted = trusted_keys(config)
    model = OnnxModel.load(version.path, version.sha256, trusted=trusted)
    assert model.predict_rows([ROW])[0]["label"] in (True, False)


def _audit(config: Config) -> list[dict[str, Any]]:
    code, output = _cli(config, "audit", "list", "--action", "signing.rotate", "--json")
    assert code == 0, output
    return [json.loads(line) for line in output.splitlines() if "{" in line]


def test_rotation_resigns_and_retires(trips: Callable[[str], Config]) -> None:
    config = trips("")
    for _ in range(2):
        train_model(config, "late")
    old_id = _home_key_id(config)
    old_signature = (_versions(config)[-1].path / "signature.json").read_bytes()

    code, output = _cli(config, "models", "rotate-key")

    assert code == 0, output
    new_id = _home_key_id(config)
    assert new_id != old_id
    assert "re-signed late@2" in output
    assert "re-signed late@1" in output
    assert f"rotated the signing key {old_id} -> {new_id}" in output
    assert key_id(signing_key(config).public_key()) == new_id
    folder = config.storage.home / KEY_FOLDER
    assert sorted(p.name for p in folder.iterdir()) == [
        PRIVATE_FILE,
        PUBLIC_FILE,
        "retired",
    ]
    assert (folder / "retired" / f"{old_id}.pub").exists()
    for version in _versions(config):
        assert _signer(version) == new_id
        _load_and_predict(config, version)
    (entry,) = _audit(config)
    assert entry["outcome"] == "ok"
    assert entry["details"]["old_key_id"] == old_id
    assert entry["details"]["new_key_id"] == new_id
    assert entry["details"]["resigned"] == ["late@2", "late@1"]

    third = train_model(config, "late").model_version
    assert _signer(third) == new_id

    first = _versions(config)[-1]
    (first.path / "signature.json").write_bytes(old_signature)
    with pytest.raises(SignatureError, match="because a key rotation retired it"):
        _load_and_predict(config, first)
    code, output = _cli(config, "models", "verify", "late@1")
    assert code == 1
    assert f"signed by key {old_id}, which is not trusted" in output


def test_retired_key_rejected_when_listed(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    config = trips("")
    version = train_model(config, "late").model_version
    old_public = tmp_path / "old.pub"
    shutil.copy(config.storage.home / KEY_FOLDER / PUBLIC_FILE, old_public)
    old_signature = (version.path / "signature.json").read_bytes()
    code, output = _cli(config, "models", "rotate-key")
    assert code == 0, output

    listed = trips(f'[security]\ntrusted_keys = ["{old_public}"]\n')
    (version.path / "signature.json").write_bytes(old_signature)

    with pytest.raises(SignatureError, match="because a key rotation retired it"):
        _load_and_predict(listed, version)


def test_interrupted_resign_rerun_finishes(trips: Callable[[str], Config]) -> None:
    config = trips("")
    for _ in range(3):
        train_model(config, "late")
    old_id = _home_key_id(config)
    # A folder where the rotation writes version 2's new signature makes
    # that write fail after version 3 was re-signed (newest first).
    blocker = config.storage.home / "models" / "late" / ".2.signature.json.tmp"
    blocker.mkdir()

    code, output = _cli(config, "models", "rotate-key")

    assert code == 1
    assert "cannot replace" in output
    assert "run the rotation again to finish it" in output
    assert (config.storage.home / KEY_FOLDER / "next").is_dir()
    assert _home_key_id(config) == old_id
    signers = {v.version: _signer(v) for v in _versions(config)}
    assert signers[1] == signers[2] == old_id
    assert signers[3] != old_id
    new_id = signers[3]
    for version in _versions(config):
        _load_and_predict(config, version)
    fourth = train_model(config, "late").model_version
    assert _signer(fourth) == new_id
    (failed,) = _audit(config)
    assert failed["outcome"] == "failed"
    assert "cannot replace" in failed["details"]["error"]

    blocker.rmdir()
    code, output = _cli(config, "models", "rotate-key")

    assert code == 0, output
    assert "(finished an interrupted rotation)" in output
    assert "1 signed by the new key already" not in output
    assert "2 signed by the new key already" in output
    assert _home_key_id(config) == new_id
    for version in _versions(config):
        assert _signer(version) == new_id
        _load_and_predict(config, version)
    assert not (config.storage.home / KEY_FOLDER / "next").exists()
    finished = _audit(config)[-1]
    assert finished["details"]["resumed"] is True
    assert finished["details"]["resigned"] == ["late@2", "late@1"]


def test_interrupted_finish_rerun_finishes(trips: Callable[[str], Config]) -> None:
    config = trips("")
    for _ in range(2):
        train_model(config, "late")
    old_id = _home_key_id(config)
    # A file where the retired keys' folder goes fails the last step, after
    # the new key pair moved into place.
    blocker = config.storage.home / KEY_FOLDER / "retired"
    blocker.write_text("in the way\n", encoding="utf-8")

    code, output = _cli(config, "models", "rotate-key")

    assert code == 1
    assert "cannot finish the signing key rotation" in output
    new_id = _home_key_id(config)
    assert new_id != old_id
    for version in _versions(config):
        assert _signer(version) == new_id
        _load_and_predict(config, version)

    blocker.unlink()
    code, output = _cli(config, "models", "rotate-key")

    assert code == 0, output
    assert f"rotated the signing key {old_id} -> {new_id}" in output
    assert "0 re-signed, 2 signed by the new key already" in output
    assert not (config.storage.home / KEY_FOLDER / "next").exists()
    assert (blocker / f"{old_id}.pub").exists()


def test_rotation_keeps_other_and_reports_rejected(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    config = trips("")
    for _ in range(3):
        train_model(config, "late")
    versions = {v.version: v for v in _versions(config)}
    other = Ed25519PrivateKey.generate()
    other_public = tmp_path / "other.pub"
    other_public.write_bytes(public_pem(other.public_key()))
    files = {
        name: (versions[3].path / name).read_bytes()
        for name in ("model.onnx", "schema.json")
    }
    manifest = sign_manifest("late", 3, files, other)
    (versions[3].path / "signature.json").write_bytes(manifest)
    schema = versions[1].path / "schema.json"
    schema.write_text(schema.read_text("utf-8") + " ", encoding="utf-8")
    config = trips(f'[security]\ntrusted_keys = ["{other_public}"]\n')

    code, output = _cli(config, "models", "rotate-key")

    assert code == 1
    assert "kept late@3, signed by another trusted key" in output
    assert "re-signed late@2" in output
    assert "error: late@1 was not re-signed" in output
    assert "schema.json of model 'late' version 1 was changed after signing" in output
    assert "failed verification and stay rejected: late@1" in output
    assert _signer(versions[3]) == key_id(other.public_key())
    _load_and_predict(config, versions[3])
    _load_and_predict(config, versions[2])


def test_rotation_rejects_configured_key(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    write_private_key(tmp_path / "box.key", Ed25519PrivateKey.generate())
    config = trips('[security]\nsigning_key = "box.key"\n')

    code, output = _cli(config, "models", "rotate-key")

    assert code == 1
    assert f"[security] signing_key names {tmp_path / 'box.key'}" in output
    assert "rotates only the home's own key" in output


def test_rotation_without_home_key(trips: Callable[[str], Config]) -> None:
    config = trips("")

    code, output = _cli(config, "models", "rotate-key")

    assert code == 1
    assert "the home has no signing key to rotate" in output
