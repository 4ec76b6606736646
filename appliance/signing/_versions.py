"""Signing and verification of registered model versions.

Training signs each new version as it registers it. A version registered
before signing existed has no ``signature.json`` and is rejected until an
operator signs it with ``appliance models sign NAME@VERSION``. That command
checks the ONNX file against the catalog's sha256 first, but it cannot check
``schema.json``, whose hash was never recorded, so the operator vouches for it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from appliance.config import Config
from appliance.errors import IntegrityError, RegistryError, SignatureError
from appliance.signing._keys import TrustedKeys, key_id, signing_key
from appliance.signing._manifest import sign_manifest, verify_folder
from appliance.storage import (
    MODEL_FILE,
    SCHEMA_FILE,
    SIGNATURE_FILE,
    ModelVersion,
    Signer,
    check_onnx_hash,
    read_schema,
    verify_artifact,
)

logger = logging.getLogger(__name__)


def version_signer(config: Config) -> Signer:
    """Return the function that signs a new version's files with the signing key.

    The key is read, or generated for the home, when the first version is
    signed.
    """

    def sign(model: str, version: int, files: dict[str, bytes]) -> bytes:
        return sign_manifest(model, version, files, signing_key(config))

    return sign


def verified_files(
    folder: Path, trusted: TrustedKeys, sha256: str | None = None
) -> dict[str, bytes]:
    """Return the signed files of the version folder ``models/NAME/VERSION``.

    Args:
        folder: The version folder; its name and its parent's name give the
            version number and model name the signature must be for.
        trusted: Keys whose signatures are accepted.
        sha256: The ONNX file's sha256 recorded in the catalog, if known.

    Raises:
        SignatureError: The signature is missing, invalid or untrusted, or a
            file differs from its signed hash.
        IntegrityError: The signed ONNX file differs from the catalog's sha256.
    """
    model, version = folder.parent.name, _version_number(folder)
    files = verify_folder(folder, model, version, trusted)
    for name in (MODEL_FILE, SCHEMA_FILE):
        if name not in files:
            raise SignatureError(
                f"the signature of model {model!r} version {version} does not "
                f"cover {name}; retrain the model"
            )
    if sha256 is not None:
        check_onnx_hash(folder / MODEL_FILE, model, version, files[MODEL_FILE], sha256)
    return files


def verify_version(version: ModelVersion, trusted: TrustedKeys) -> dict[str, bytes]:
    """Return the signed files of a registered version; see `verified_files`."""
    return verified_files(version.path, trusted, version.sha256)


def version_check(trusted: TrustedKeys) -> Callable[[ModelVersion], dict[str, bytes]]:
    """Return a check of a version's signature, as promotion's loader."""
    return lambda version: verify_version(version, trusted)


def sign_version(config: Config, version: ModelVersion, replace: bool) -> str:
    """Sign the files of a registered version that has no signature; return the key id.

    Raises:
        RegistryError: The version is signed already and `replace` is false.
        IntegrityError: The ONNX file differs from the catalog's sha256, or
            ``schema.json`` is not a JSON object of this version.
    """
    path = version.path / SIGNATURE_FILE
    if path.exists() and not replace:
        raise RegistryError(
            f"model {version.model!r} version {version.version} is signed already; "
            "check it with 'appliance models verify', or pass --replace to sign "
            "its current files again"
        )
    verify_artifact(version)
    schema = read_schema(version)
    if (schema.get("model"), schema.get("version")) != (
        version.model,
        version.version,
    ):
        raise IntegrityError(
            f"{version.path / SCHEMA_FILE} describes model {schema.get('model')!r} "
            f"version {schema.get('version')!r}, not model {version.model!r} "
            f"version {version.version}; restore the version folder from a backup"
        )
    files = {
        p.name: p.read_bytes()
        for p in sorted(version.path.iterdir())
        if p.is_file() and p.name != SIGNATURE_FILE
    }
    key = signing_key(config)
    manifest = sign_manifest(version.model, version.version, files, key)
    staging = path.with_name(f".{SIGNATURE_FILE}.{os.getpid()}.tmp")
    staging.write_bytes(manifest)
    os.replace(staging, path)
    logger.warning(
        "model version signed by the operator model=%s version=%d key_id=%s "
        "files=%s replaced=%s",
        version.model,
        version.version,
        key_id(key.public_key()),
        ",".join(files),
        replace,
    )
    return key_id(key.public_key())


def _version_number(folder: Path) -> int:
    try:
        return int(folder.name)
    except ValueError:
        raise SignatureError(
            f"{folder} is not a version folder models/NAME/VERSION"
        ) from None
