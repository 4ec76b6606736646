"""Rotation of the home's signing key: every version re-signed, the old key retired.

A rotation runs these steps in ``HOME/signing/``. After each one, every
version that verified before still verifies with a trusted key, so an
interruption leaves the home serving, and a rerun finds ``next/`` and
finishes the rotation.

1. Write ``next/`` with a new key pair and ``retiring.pub``, the current
   public key, through a staging folder and a rename. From then on both
   keys are trusted, and the new key signs new versions.
2. Verify each registered version with the trusted keys, and re-sign those
   that the retiring key signed. Each ``signature.json`` is replaced through
   a temporary file and a rename.
3. Move the new key pair over ``ed25519.key`` and ``ed25519.pub``.
4. Write ``retired/KEY_ID.pub`` and delete ``next/``. From then on a
   signature by the old key is rejected.

A version signed by another trusted key is kept as it is, because retiring
the home's key does not change its trust. A version that fails verification
is not re-signed, because nothing vouches for its files. It is listed in the
result and stays rejected.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from appliance.access import record
from appliance.config import Config
from appliance.errors import (
    ApplianceError,
    ConfigError,
    IntegrityError,
    StorageError,
)
from appliance.signing._keys import (
    KEY_FOLDER,
    NEXT_FOLDER,
    PRIVATE_FILE,
    PUBLIC_FILE,
    RETIRED_FOLDER,
    RETIRING_FILE,
    key_id,
    public_pem,
    read_private_key,
    read_public_key,
    signing_key,
    trusted_keys,
    write_private_key,
)
from appliance.signing._manifest import sign_manifest, signer_id
from appliance.signing._versions import verify_version
from appliance.storage import (
    SIGNATURE_FILE,
    Catalog,
    ModelVersion,
    fsync_path,
    list_models,
)

logger = logging.getLogger(__name__)

TARGET = "signing key"
"""Target of a rotation's audit entry."""


@dataclass(frozen=True)
class Rotation:
    """Outcome of a signing key rotation; versions are named ``NAME@VERSION``."""

    old_key_id: str
    new_key_id: str
    resumed: bool
    """Whether this run finished a rotation that an earlier run started."""
    resigned: list[str] = field(default_factory=list)
    """Versions signed by the old key, now signed by the new key."""
    already: list[str] = field(default_factory=list)
    """Versions signed by the new key before this run."""
    kept: list[str] = field(default_factory=list)
    """Versions signed by another trusted key, left as they are."""
    rejected: dict[str, str] = field(default_factory=dict)
    """Versions that failed verification and were not re-signed, with the
    error of each."""

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-ready values."""
        return asdict(self)


def rotate_signing_key(config: Config, versions: Iterable[ModelVersion]) -> Rotation:
    """Re-sign `versions` with a new home key and retire the old key.

    Finishes the rotation that an earlier run left unfinished, if there is
    one, instead of starting another. Blocks on file writes, so call it off
    the event loop. The caller keeps other writers of the registry out.

    Raises:
        ConfigError: ``[security] signing_key`` is set, or the home has no
            signing key yet.
        StorageError: A key or signature file cannot be written; run the
            rotation again to finish it.
    """
    folder = _home_key_folder(config)
    resumed = (folder / NEXT_FOLDER).is_dir()
    if not resumed:
        _stage_next_key(folder)
    old = read_public_key(folder / NEXT_FOLDER / RETIRING_FILE)
    new = signing_key(config)
    rotation = Rotation(key_id(old), key_id(new.public_key()), resumed)
    logger.info(
        "signing key rotation started old_key_id=%s new_key_id=%s resumed=%s",
        rotation.old_key_id,
        rotation.new_key_id,
        resumed,
    )
    for version in versions:
        _rotate_version(config, version, new, rotation)
    _finish(folder, old)
    logger.info(
        "signing key rotated old_key_id=%s new_key_id=%s resigned=%d kept=%d "
        "rejected=%d",
        rotation.old_key_id,
        rotation.new_key_id,
        len(rotation.resigned),
        len(rotation.kept),
        len(rotation.rejected),
    )
    return rotation


def rotate_and_record(catalog: Catalog, config: Config) -> Rotation:
    """Rotate the home's signing key over every registered version, and audit it.

    A failed rotation gets an audit entry with outcome ``failed`` before its
    error is raised.

    Raises:
        ConfigError: See `rotate_signing_key`.
        StorageError: See `rotate_signing_key`.
    """
    try:
        rotation = rotate_signing_key(config, list_models(catalog))
    except ApplianceError as exc:
        record(catalog, "signing.rotate", TARGET, {"error": str(exc)}, "failed")
        raise
    record(catalog, "signing.rotate", TARGET, rotation.to_dict())
    return rotation


def _home_key_folder(config: Config) -> Path:
    """Return the home's key folder, once it is known to hold a key to rotate."""
    configured = config.security.signing_key
    if configured is not None:
        raise ConfigError(
            f"[security] signing_key names {configured}, and the appliance "
            "rotates only the home's own key; to replace that key, stop the "
            "daemon, set signing_key to a new key and add the old public key to "
            "trusted_keys, run 'appliance models sign NAME@VERSION --replace' "
            "for each version, then remove the old public key from trusted_keys "
            '(docs/architecture.md, "Rotating keys")'
        )
    folder = config.storage.home / KEY_FOLDER
    if not (folder / NEXT_FOLDER).is_dir() and not (folder / PRIVATE_FILE).exists():
        raise ConfigError(
            f"the home has no signing key to rotate: {folder / PRIVATE_FILE} is "
            "missing. The key is made when the first version is signed; if the "
            "home had one, restore that folder from a backup first"
        )
    return folder


def _stage_next_key(folder: Path) -> None:
    """Write ``next/`` with a new key pair and the public key it retires."""
    current = read_private_key(folder / PRIVATE_FILE)
    key = Ed25519PrivateKey.generate()
    staging = folder / f".{NEXT_FOLDER}.tmp"
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        write_private_key(staging / PRIVATE_FILE, key)
        _write_synced(staging / PUBLIC_FILE, public_pem(key.public_key()))
        _write_synced(staging / RETIRING_FILE, public_pem(current.public_key()))
        fsync_path(staging)
        os.replace(staging, folder / NEXT_FOLDER)
        fsync_path(folder)
    except OSError as exc:
        raise StorageError(
            f"cannot write the next signing key in {folder} ({exc}); the "
            "rotation has not started, so fix the folder and run it again"
        ) from exc


def _rotate_version(
    config: Config, version: ModelVersion, new: Ed25519PrivateKey, rotation: Rotation
) -> None:
    """Verify one version and re-sign it if the retiring key signed it."""
    name = f"{version.model}@{version.version}"
    try:
        # Read per version, so a key trusted meanwhile by a reload counts.
        files = verify_version(version, trusted_keys(config))
    except IntegrityError as exc:
        rotation.rejected[name] = str(exc)
        logger.warning(
            "model version not re-signed model=%s version=%d error=%s",
            version.model,
            version.version,
            exc,
        )
        return
    signer = signer_id(files.pop(SIGNATURE_FILE))
    if signer == rotation.new_key_id:
        rotation.already.append(name)
    elif signer != rotation.old_key_id:
        rotation.kept.append(name)
    else:
        _resign(version, files, new)
        rotation.resigned.append(name)


def _resign(
    version: ModelVersion, files: dict[str, bytes], key: Ed25519PrivateKey
) -> None:
    """Replace a version's ``signature.json`` with one made by `key`.

    The temporary file sits beside the version folder, not in it, because a
    file in the folder that the signature does not cover gets the version
    rejected.
    """
    manifest = sign_manifest(version.model, version.version, files, key)
    target = version.path / SIGNATURE_FILE
    staging = version.path.with_name(f".{version.version}.{SIGNATURE_FILE}.tmp")
    try:
        _write_synced(staging, manifest)
        os.replace(staging, target)
        fsync_path(version.path)
    except OSError as exc:
        raise StorageError(
            f"cannot replace {target} of model {version.model!r} version "
            f"{version.version} ({exc}); every version still verifies, so fix "
            "the folder and run the rotation again to finish it"
        ) from exc
    logger.info(
        "model version re-signed model=%s version=%d key_id=%s",
        version.model,
        version.version,
        key_id(key.public_key()),
    )


def _finish(folder: Path, old: Ed25519PublicKey) -> None:
    """Move the new key pair into place and retire the old public key."""
    staged = folder / NEXT_FOLDER
    retired = folder / RETIRED_FOLDER / f"{key_id(old)}.pub"
    try:
        # The private key moves first: until the public key follows, the
        # next folder still has it, so both keys stay trusted.
        for name in (PRIVATE_FILE, PUBLIC_FILE):
            if (staged / name).exists():
                os.replace(staged / name, folder / name)
        fsync_path(folder)
        retired.parent.mkdir(mode=0o700, exist_ok=True)
        _write_synced(retired, public_pem(old))
        fsync_path(retired.parent)
        (staged / RETIRING_FILE).unlink(missing_ok=True)
        staged.rmdir()
        fsync_path(folder)
    except OSError as exc:
        raise StorageError(
            f"cannot finish the signing key rotation in {folder} ({exc}); every "
            "version still verifies, so fix the folder and run the rotation "
            "again to finish it"
        ) from exc


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
