"""Ed25519 keys that sign model versions, and the public keys that verify them.

The home's own key pair lives in ``HOME/signing/``: ``ed25519.key`` (PEM,
PKCS#8, mode 0600) and ``ed25519.pub`` (PEM). It is generated the first time
a version is signed, unless ``[security] signing_key`` names another private
key. A signature is accepted when its key is the signing key of this box or
one of ``[security] trusted_keys``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class TrustedKeys:
    """Public keys whose signatures are accepted, by key id."""

    keys: dict[str, Ed25519PublicKey]
    sources: dict[str, Path]
    """File each key was read from, by key id."""
    missing_home_folder: Path | None = None
    """The home's key folder when no ``signing_key`` is set and it has no key,
    because the home never signed or the folder was lost."""

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
    path = home / KEY_FOLDER / PRIVATE_FILE
    if path.exists():
        return read_private_key(path)
    return _create_home_key(home / KEY_FOLDER)


def trusted_keys(config: Config) -> TrustedKeys:
    """Return the signing key's public half and every ``trusted_keys`` entry.

    The home's public key counts only once the home's key exists, so a home
    that has never signed trusts ``trusted_keys`` alone.

    Raises:
        ConfigError: A key file is missing, unreadable or not an Ed25519 key.
    """
    security, home = config.security, config.storage.home
    keys: dict[str, Ed25519PublicKey] = {}
    sources: dict[str, Path] = {}
    missing = None
    own = security.signing_key
    if own is not None:
        public = read_private_key(own).public_key()
        keys[key_id(public)], sources[key_id(public)] = public, own
    else:
        folder = home / KEY_FOLDER
        if (folder / PUBLIC_FILE).exists():
            public = read_public_key(folder / PUBLIC_FILE)
            keys[key_id(public)], sources[key_id(public)] = public, folder / PUBLIC_FILE
        elif (folder / PRIVATE_FILE).exists():
            public = read_private_key(folder / PRIVATE_FILE).public_key()
            keys[key_id(public)] = public
            sources[key_id(public)] = folder / PRIVATE_FILE
        else:
            missing = folder
    for path in security.trusted_keys:
        public = read_public_key(path)
        keys.setdefault(key_id(public), public)
        sources.setdefault(key_id(public), path)
    return TrustedKeys(keys, sources, missing)


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
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
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
