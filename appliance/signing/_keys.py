"""Ed25519 keys that sign model versions, and the public keys that verify them.

The home's own key pair lives in ``HOME/signing/``: ``ed25519.key`` (PEM,
PKCS#8, mode 0600) and ``ed25519.pub`` (PEM). It is generated the first time
a version is signed, unless ``[security] signing_key`` names another private
key. A signature is accepted when its key is the signing key of this box or
one of ``[security] trusted_keys``, and no key rotation retired it.

A rotation of the home's key (see `appliance.signing._rotation`) keeps the
next key pair in ``HOME/signing/next/`` until it finishes. Meanwhile the next
key signs new versions and both keys are trusted. A finished rotation leaves
the old public key in ``HOME/signing/retired/KEY_ID.pub``, and a signature
by a retired key is rejected.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from appliance.config import Config
from appliance.errors import ConfigError, StorageError

logger = logging.getLogger(__name__)

KEY_FOLDER = "signing"
"""Folder of the home's own key pair, under the home."""
PRIVATE_FILE = "ed25519.key"
PUBLIC_FILE = "ed25519.pub"
NEXT_FOLDER = "next"
"""Folder of the key pair that a rotation in progress moves to, under
`KEY_FOLDER`."""
RETIRING_FILE = "retiring.pub"
"""Public key that a rotation in progress retires, in `NEXT_FOLDER`."""
RETIRED_FOLDER = "retired"
"""Folder of the public keys that rotations retired, as ``KEY_ID.pub``, under
`KEY_FOLDER`."""


@dataclass(frozen=True)
class TrustedKeys:
    """Public keys whose signatures are accepted, by key id."""

    keys: dict[str, Ed25519PublicKey]
    sources: dict[str, Path]
    """File each key was read from, by key id."""
    missing_home_folder: Path | None = None
    """The home's key folder when no ``signing_key`` is set and it has no key,
    because the home never signed or the folder was lost."""
    retired: dict[str, Path] = field(default_factory=dict)
    """File of each public key that a rotation retired, by key id."""

    def names(self) -> str:
        """Return the trusted key ids and their files, for error messages."""
        if not self.keys:
            return "none"
        return ", ".join(
            f"{identifier} ({self.sources[identifier]})"
            for identifier in sorted(self.keys)
        )


def key_id(public: Ed25519PublicKey) -> str:
    """Return the first 16 hex digits of the sha256 of the raw public key."""
    raw = public.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> bytes:
    """Return the public key as PEM (SubjectPublicKeyInfo)."""
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def signing_key(config: Config) -> Ed25519PrivateKey:
    """Return the key that signs new versions, generating the home's at first need.

    Raises:
        ConfigError: ``[security] signing_key`` is unreadable or not an
            Ed25519 private key.
        StorageError: The home's key cannot be written.
    """
    security, home = config.security, config.storage.home
    if security.signing_key is not None:
        return read_private_key(security.signing_key)
    staged = _read_if_present(home / KEY_FOLDER / NEXT_FOLDER / PRIVATE_FILE)
    if staged is not None:
        return staged
    path = home / KEY_FOLDER / PRIVATE_FILE
    if path.exists():
        return read_private_key(path)
    return _create_home_key(home / KEY_FOLDER)


def trusted_keys(config: Config) -> TrustedKeys:
    """Return the signing key's public half and every ``trusted_keys`` entry.

    The home's public key counts only once the home's key exists, so a home
    that has never signed trusts ``trusted_keys`` alone. During a rotation
    the next key counts too. A key that a rotation retired never counts.

    Raises:
        ConfigError: A key file is missing, unreadable or not an Ed25519 key.
    """
    security, folder = config.security, config.storage.home / KEY_FOLDER
    keys: dict[str, Ed25519PublicKey] = {}
    sources: dict[str, Path] = {}
    missing = None
    if security.signing_key is not None:
        _add_key(
            keys, sources, read_private_key(security.signing_key), security.signing_key
        )
    else:
        missing = _add_home_keys(keys, sources, folder)
    for path in security.trusted_keys:
        _add_key(keys, sources, read_public_key(path), path)
    retired = retired_keys(folder)
    for identifier in retired:
        keys.pop(identifier, None)
        sources.pop(identifier, None)
    return TrustedKeys(keys, sources, missing, retired)


def retired_keys(folder: Path) -> dict[str, Path]:
    """Return the file of each key that a rotation retired, by key id.

    `folder` is the home's key folder. The key id is the file's name, which
    the rotation wrote from the key itself.
    """
    retired = folder / RETIRED_FOLDER
    if not retired.is_dir():
        return {}
    return {path.stem: path for path in sorted(retired.glob("*.pub"))}


def _add_home_keys(
    keys: dict[str, Ed25519PublicKey], sources: dict[str, Path], folder: Path
) -> Path | None:
    """Add the home's public key and a rotation's next key; return `folder`
    when the home has no key."""
    staged = folder / NEXT_FOLDER / PUBLIC_FILE
    public = _read_if_present(staged)
    if public is not None:
        _add_key(keys, sources, public, staged)
    if (folder / PUBLIC_FILE).exists():
        _add_key(
            keys, sources, read_public_key(folder / PUBLIC_FILE), folder / PUBLIC_FILE
        )
    elif (folder / PRIVATE_FILE).exists():
        private = read_private_key(folder / PRIVATE_FILE)
        _add_key(keys, sources, private.public_key(), folder / PRIVATE_FILE)
    elif not keys:
        return folder
    return None


def _read_if_present(path: Path) -> Any:
    """Read a key of a rotation's ``next`` folder, or return None without it.

    A rotation that finishes moves the files away, so a file found a moment
    ago may be gone. The key is then in the home's key files.
    """
    try:
        if path.name == PRIVATE_FILE:
            return read_private_key(path)
        return read_public_key(path)
    except ConfigError:
        if path.exists():
            raise
        return None


def _add_key(
    keys: dict[str, Ed25519PublicKey],
    sources: dict[str, Path],
    key: Ed25519PublicKey | Ed25519PrivateKey,
    path: Path,
) -> None:
    """Add the public half of `key`, read from `path`, unless its id is there."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    keys.setdefault(key_id(public), public)
    sources.setdefault(key_id(public), path)


def read_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an unencrypted Ed25519 private key in PEM.

    Raises:
        ConfigError: The file is missing, unreadable or contains another
            kind of key.
    """
    data = _read_key_file(path, "private")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(
            f"signing key {path} is not an unencrypted PEM private key ({exc}); "
            "give an Ed25519 key such as one written by 'openssl genpkey "
            "-algorithm ed25519'"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(
            f"signing key {path} is a {type(key).__name__}, not an Ed25519 key"
        )
    return key


def read_public_key(path: Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key in PEM.

    Raises:
        ConfigError: The file is missing, unreadable or contains another
            kind of key.
    """
    data = _read_key_file(path, "public")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(
            f"trusted key {path} is not a PEM public key ({exc}); give the "
            f"{PUBLIC_FILE} file of the box that signs"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(
            f"trusted key {path} is a {type(key).__name__}, not an Ed25519 key"
        )
    return key


def _read_key_file(path: Path, kind: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{kind} key file {path} not found; fix [security] in the configuration"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{kind} key file {path} cannot be read ({exc.strerror})"
        ) from None


def _create_home_key(folder: Path) -> Ed25519PrivateKey:
    """Generate the home's key pair, unless another process wrote it first."""
    key = Ed25519PrivateKey.generate()
    pem = private_pem(key)
    final = folder / PRIVATE_FILE
    staging = folder / f".{PRIVATE_FILE}.{os.getpid()}.tmp"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(staging, pem)
        try:
            # A link fails when the file exists, so two processes that both
            # generate a key end up using the first one written.
            os.link(staging, final)
        except FileExistsError:
            key = read_private_key(final)
        finally:
            staging.unlink()
        _write_public(folder / PUBLIC_FILE, public_pem(key.public_key()))
    except OSError as exc:
        raise StorageError(f"cannot write the signing key in {folder}: {exc}") from exc
    logger.info("signing key ready path=%s key_id=%s", final, key_id(key.public_key()))
    return key


def _write_private(path: Path, pem: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        # The mode given to open is reduced by the umask and never widened.
        os.fchmod(descriptor, 0o600)
        handle.write(pem)
        handle.flush()
        os.fsync(descriptor)


def _write_public(path: Path, pem: bytes) -> None:
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_bytes(pem)
    os.replace(staging, path)


def private_pem(key: Ed25519PrivateKey) -> bytes:
    """Return the private key as unencrypted PEM (PKCS#8)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write `key` to the new file `path` with mode 0600 and fsync it."""
    _write_private(path, private_pem(key))
