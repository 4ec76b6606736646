"""Signed model versions: tampering is rejected, the champion keeps serving."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support import run_appliance, start_daemon, stop_daemon

from appliance.config import Config, SecurityConfig
from appliance.errors import SignatureError
from appliance.registry import export_version
from appliance.serving import OnnxModel
from appliance.signing import (
    KEY_FOLDER,
    PRIVATE_FILE,
    PUBLIC_FILE,
    TrustedKeys,
    key_id,
    sign_manifest,
    trusted_keys,
    verify_folder,
)
from appliance.storage import ModelVersion
from appliance.training import train_model

ROW = {"distance": 700.0, "hour": 18, "carrier": "B6"}


def _flip_onnx_byte(version: ModelVersion) -> None:
    path = version.path / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_schema(version: ModelVersion) -> None:
    path = version.path / "schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    schema["classes"] = list(reversed(schema["classes"]))
    path.write_text(json.dumps(schema, indent=2), encoding="utf-8")


def _sign_with_foreign_key(version: ModelVersion) -> None:
    files = {
        name: (version.path / name).read_bytes()
        for name in ("model.onnx", "schema.json")
    }
    manifest = sign_manifest(
        version.model, version.version, files, Ed25519PrivateKey.generate()
    )
    (version.path / "signature.json").write_bytes(manifest)


def _delete_signature(version: ModelVersion) -> None:
    (version.path / "signature.json").unlink()


TAMPERING = [
    pytest.param(
        _flip_onnx_byte,
        "model.onnx of model 'late' version 1 was changed after signing",
        id="onnx-byte",
    ),
    pytest.param(
        _edit_schema,
        "schema.json of model 'late' version 1 was changed after signing",
        id="schema-edit",
    ),
    pytest.param(
        _sign_with_foreign_key,
        "signature.json of model 'late' version 1 is signed by key [0-9a-f]{16}, "
        "which is not trusted",
        id="untrusted-key",
    ),
    pytest.param(
        _delete_signature,
        "model 'late' version 1 is not signed: .*signature.json is missing",
        id="no-signature",
    ),
]


@pytest.mark.parametrize(("tamper", "expected"), TAMPERING)
def test_tampered_version_rejected_everywhere(
    trips: Callable[[str], Config],
    tmp_path: Path,
    tamper: Callable[[ModelVersion], None],
    expected: str,
) -> None:
    config = trips("")
    version = train_model(config, "late").model_version
    trusted = trusted_keys(config)
    OnnxModel.load(version.path, version.sha256, trusted=trusted)

    tamper(version)

    with pytest.raises(SignatureError, match=expected):
        OnnxModel.load(version.path, version.sha256, trusted=trusted)
    with pytest.raises(SignatureError, match=expected):
        export_version(version, tmp_path / "exported", "onnx", trusted)
    assert not (tmp_path / "exported").exists()
    source = tmp_path / "rows.csv"
    source.write_text("distance,hour,carrier\n700,18,B6\n", encoding="utf-8")
    commands = {
        "verify": ("models", "verify", "late"),
        "predict": ("predict", "late", str(source), str(tmp_path / "out.parquet")),
        "promote": ("models", "promote", "late", "1"),
    }
    for name, args in commands.items():
        result = run_appliance(config.path, config.storage.home, *args)
        assert result.returncode == 1, (name, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, name
        output = result.stdout + result.stderr
        assert re.search(expected, output), (name, output)


def test_home_key_generated_private(trips: Callable[[str], Config]) -> None:
    config = trips("")
    folder = config.storage.home / KEY_FOLDER
    assert not folder.exists()

    version = train_model(config, "late").model_version

    private = folder / PRIVATE_FILE
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    public = serialization.load_pem_public_key((folder / PUBLIC_FILE).read_bytes())
    manifest = json.loads((version.path / "signature.json").read_text("utf-8"))
    assert manifest["key_id"] == key_id(public)  # type: ignore[arg-type]
    assert sorted(manifest["files"]) == ["model.onnx", "schema.json"]
    assert (manifest["model"], manifest["version"]) == ("late", 1)


def test_trusted_key_of_other_box_accepted(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    config = trips("")
    version = train_model(config, "late").model_version
    # Another box: its own signing key, and the first box's version files.
    other_key = tmp_path / "other.key"
    other_key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    other = dataclasses.replace(config, security=SecurityConfig(signing_key=other_key))
    with pytest.raises(SignatureError, match="which is not trusted"):
        OnnxModel.load(version.path, version.sha256, trusted=trusted_keys(other))

    first_public = config.storage.home / KEY_FOLDER / PUBLIC_FILE
    fleet = dataclasses.replace(
        config,
        security=SecurityConfig(signing_key=other_key, trusted_keys=(first_public,)),
    )
    model = OnnxModel.load(version.path, version.sha256, trusted=trusted_keys(fleet))
    assert model.predict_rows([ROW])[0]["label"] in (True, False)


def test_lost_signing_folder_named(trips: Callable[[str], Config]) -> None:
    config = trips("")
    version = train_model(config, "late").model_version
    folder = config.storage.home / KEY_FOLDER
    shutil.rmtree(folder)

    with pytest.raises(SignatureError, match="which is not trusted") as raised:
        OnnxModel.load(version.path, version.sha256, trusted=trusted_keys(config))

    message = str(raised.value)
    assert f"the home's signing key folder {folder} is missing" in message
    assert "restore that folder from a backup of the home" in message


def test_signing_key_from_config_signs(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "box.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    config = trips('[security]\nsigning_key = "keys/box.key"\n')
    assert config.security.signing_key == tmp_path / "keys" / "box.key"

    version = train_model(config, "late").model_version

    manifest = json.loads((version.path / "signature.json").read_text("utf-8"))
    assert manifest["key_id"] == key_id(key.public_key())
    assert not (config.storage.home / KEY_FOLDER).exists()


def test_unsigned_version_signed_by_operator(
    trips: Callable[[str], Config],
) -> None:
    config = trips("")
    version = train_model(config, "late").model_version
    _delete_signature(version)

    def cli(*args: str) -> tuple[int, str]:
        result = run_appliance(config.path, config.storage.home, *args)
        return result.returncode, result.stdout + result.stderr

    code, output = cli("models", "verify", "late@1")
    assert code == 1
    assert "appliance models sign late@1" in output

    code, output = cli("models", "sign", "late@1")
    assert code == 0, output
    assert "signed late version 1 with key" in output
    code, output = cli("models", "verify", "late")
    assert code == 0, output
    assert " ok " in output
    code, output = cli("audit", "list", "--action", "model.sign", "--json")
    assert code == 0, output
    (entry,) = [json.loads(line) for line in output.splitlines() if "{" in line]
    assert (entry["target"], entry["details"]["version"]) == ("late", 1)
    assert entry["actor"] == "local"

    code, output = cli("models", "sign", "late@1")
    assert code == 1
    assert "is signed already" in output

    _flip_onnx_byte(version)
    code, output = cli("models", "sign", "late@1", "--replace")
    assert code == 1
    assert "has sha256" in output


def test_champion_serves_after_tampered_promotion(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    config = trips("")
    train_model(config, "late")
    second = train_model(config, "late").model_version
    assert (
        run_appliance(
            config.path, config.storage.home, "models", "promote", "late", "1"
        ).returncode
        == 0
    )
    _flip_onnx_byte(second)
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config.path, config.storage.home, log)
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            promoted = client.post(
                "/v1/admin/registry/models/late/promote", json={"version": 2}
            )
            staged = client.post(
                "/v1/admin/registry/models/late/promote",
                json={"version": 2, "alias": "staging"},
            )
            pinned = client.post(
                "/v1/models/late/predict?version=2", json={"rows": [ROW]}
            )
            served = client.post("/v1/models/late/predict", json={"rows": [ROW]})
            alerts = client.get("/v1/alerts").json()["alerts"]
    finally:
        stop_daemon(daemon)

    changed = "model.onnx of model 'late' version 2 was changed after signing"
    for response in (promoted, staged, pinned):
        assert response.status_code == 409, response.text
        assert response.json()["type"] == "SignatureError"
        assert changed in response.json()["error"]
    assert served.status_code == 200, served.text
    assert served.json()["version"] == 1
    text = log.read_text(errors="replace")
    assert "model version rejected model=late version=2" in text
    assert "Traceback" not in text
    (alert,) = [a for a in alerts if a["kind"] == "signature"]
    assert alert["severity"] == "critical"
    assert alert["model"] == "late"
    assert "version 2 of model 'late' was not loaded" in alert["message"]
    assert changed in alert["message"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"key_id": ["a"]}, "missing or invalid fields: key_id"),
        ({"version": "1"}, "missing or invalid fields: version"),
        ({"files": {"model.onnx": 1}}, "missing or invalid fields: files"),
        ({"signature": "not base64!"}, "signature that is not base64"),
        ({"format": 2}, "is not a format 1 manifest"),
    ],
)
def test_malformed_manifest_rejected(
    tmp_path: Path, change: dict, expected: str
) -> None:
    folder = tmp_path / "models" / "m" / "1"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"onnx")
    key = Ed25519PrivateKey.generate()
    manifest = json.loads(sign_manifest("m", 1, {"model.onnx": b"onnx"}, key))
    (folder / "signature.json").write_text(json.dumps({**manifest, **change}))
    public = key.public_key()
    trusted = TrustedKeys({key_id(public): public}, {key_id(public): tmp_path})

    with pytest.raises(SignatureError, match=re.escape(expected)):
        verify_folder(folder, "m", 1, trusted)


def test_tampered_only_version_makes_daemon_not_ready(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    config = trips("")
    only = train_model(config, "late").model_version
    _flip_onnx_byte(only)
    daemon = start_daemon(config.path, config.storage.home, tmp_path / "daemon.log")
    try:
        ready = httpx.get(f"{daemon.base_url}/health/ready", trust_env=False)
    finally:
        stop_daemon(daemon)

    assert ready.status_code == 503, ready.text
    assert ready.json()["unserved"] == ["late"]
    assert ready.json()["every_model_served"] is False
    logged = (tmp_path / "daemon.log").read_text()
    assert "model load failed model=late version=1 error=" in logged
    assert "Traceback" not in logged


def test_signature_failures_are_conflicts(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    config = trips("")
    versions = [train_model(config, "late").model_version for _ in range(5)]
    schema_changed, swapped, unsigned, onnx_changed, champion = versions
    _edit_schema(schema_changed)
    (swapped.path / "signature.json").write_bytes(
        (champion.path / "signature.json").read_bytes()
    )
    _delete_signature(unsigned)
    _flip_onnx_byte(onnx_changed)
    daemon = start_daemon(config.path, config.storage.home, tmp_path / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            responses = {
                f"promote {number}": client.post(
                    "/v1/admin/registry/models/late/promote", json={"version": number}
                )
                for number in (1, 2, 3)
            }
            for number in (3, 4):
                responses[f"predict {number}"] = client.post(
                    f"/v1/models/late/predict?version={number}", json={"rows": [ROW]}
                )
            served = client.post("/v1/models/late/predict", json={"rows": [ROW]})
        promoted = run_appliance(
            config.path, config.storage.home, "models", "promote", "late", "1"
        )
    finally:
        stop_daemon(daemon)

    expected = {
        "promote 1": "schema.json of model 'late' version 1 was changed after signing",
        "promote 2": "signature.json of model 'late' version 2 signs model 'late' "
        "version 5",
        "promote 3": "model 'late' version 3 is not signed: .*signature.json",
        "predict 3": "model 'late' version 3 is not signed: .*signature.json",
        "predict 4": "model.onnx of model 'late' version 4 was changed after signing",
    }
    for key, response in responses.items():
        assert response.status_code == 409, (key, response.text)
        assert response.json()["type"] == "SignatureError", key
        assert re.search(expected[key], response.json()["error"]), key
    assert served.status_code == 200, served.text
    assert served.json()["version"] == 5
    assert promoted.returncode == 1
    assert re.search(expected["promote 1"], promoted.stderr), promoted.stderr
    assert "Traceback" not in promoted.stderr
