"""Signed manifests of model versions: ``signature.json`` in each version folder.

The manifest lists the model name, the version number and the sha256 of every
other file of the folder. Its Ed25519 signature covers the manifest's
canonical JSON encoding: every field except ``signature``, keys sorted, no
spaces, ASCII only. A version is loaded only from bytes whose hashes match a
manifest that a trusted key signed for that model and version.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.errors import SignatureError
from appliance.signing._keys import TrustedKeys, key_id
from appliance.storage import SIGNATURE_FILE

logger = logging.getLogger(__name__)

FORMAT = 1
"""Version of the manifest layout; a manifest of another format is rejected."""
ALGORITHM = "Ed25519"

_FIELDS = ("format", "algorithm", "model", "version", "files", "key_id", "signed_at")
_TYPES = {
    "algorithm": str,
    "model": str,
    "version": int,
    "files": dict,
    "key_id": str,
    "signed_at": str,
    "signature": str,
}
"""Type of each manifest field besides ``format``, which is checked first."""


def sign_manifest(
    model: str, version: int, files: dict[str, bytes], key: Ed25519PrivateKey
) -> bytes:
    """Return the ``signature.json`` bytes that sign `files` of a version."""
    body: dict[str, Any] = {
        "format": FORMAT,
        "algorithm": ALGORITHM,
        "model": model,
        "version": version,
        "files": {name: _sha256(files[name]) for name in sorted(files)},
        "key_id": key_id(key.public_key()),
        "signed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    signature = key.sign(canonical(body))
    manifest = {**body, "signature": base64.b64encode(signature).decode("ascii")}
    return json.dumps(manifest, indent=2).encode()


def canonical(body: dict[str, Any]) -> bytes:
    """Return the bytes a signature covers."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii")


def verify_folder(
    folder: Path, model: str, version: int, trusted: TrustedKeys
) -> dict[str, bytes]:
    """Return the bytes of every signed file of a version folder, by name.

    The result includes ``signature.json`` itself. Each rejection is logged
    at WARNING before it is raised.

    Raises:
        SignatureError: ``signature.json`` is missing, malformed, signed for
            another version, by an untrusted key or with an invalid signature,
            or a file differs from its signed sha256, is missing, or is not
            covered by the signature.
    """
    try:
        if not folder.is_dir():
            raise SignatureError(
                f"folder {folder} of model {model!r} version {version} is missing; "
                "restore it from a backup or retrain"
            )
        raw, body = _trusted_body(folder, model, version, trusted)
        files = _signed_files(folder, model, version, body["files"])
        return {**files, SIGNATURE_FILE: raw}
    except SignatureError as exc:
        logger.warning(
            "model version rejected model=%s version=%d folder=%s error=%s",
            model,
            version,
            folder,
            exc,
        )
        raise


def signer_id(manifest_bytes: bytes) -> str | None:
    """Return the key id that a ``signature.json`` names, if it names one."""
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        return None
    found = manifest.get("key_id") if isinstance(manifest, dict) else None
    return found if isinstance(found, str) else None


def _trusted_body(
    folder: Path, model: str, version: int, trusted: TrustedKeys
) -> tuple[bytes, dict[str, Any]]:
    """Return the bytes and fields of ``signature.json`` once it is verified."""
    where = f"model {model!r} version {version}"
    path = folder / SIGNATURE_FILE
    try:
        raw = path.read_bytes()
        manifest = json.loads(raw)
    except FileNotFoundError:
        raise SignatureError(
            f"{where} is not signed: {path} is missing. If the version was "
            "registered before signing and you trust its files, sign it with "
            f"'appliance models sign {model}@{version}'"
        ) from None
    except (OSError, ValueError) as exc:
        raise SignatureError(
            f"{SIGNATURE_FILE} of {where} cannot be read ({exc}); restore the "
            "version folder from a backup or retrain"
        ) from None
    body, signature = _fields(manifest, where)
    if body["model"] != model or body["version"] != version:
        raise SignatureError(
            f"{SIGNATURE_FILE} of {where} signs model {body['model']!r} version "
            f"{body['version']!r}; the folder {folder} holds another version's files"
        )
    public = trusted.keys.get(body["key_id"])
    if public is None:
        raise SignatureError(_untrusted_message(where, body["key_id"], trusted))
    try:
        public.verify(signature, canonical(body))
    except InvalidSignature:
        raise SignatureError(
            f"{SIGNATURE_FILE} of {where} has an invalid signature: the manifest "
            f"was changed after key {body['key_id']} signed it; restore the version "
            "folder from a backup or retrain"
        ) from None
    return raw, body


def _untrusted_message(where: str, signer: str, trusted: TrustedKeys) -> str:
    """Return the error text for a manifest signed by a key that is not trusted."""
    problem = (
        f"{SIGNATURE_FILE} of {where} is signed by key {signer}, which is not "
        f"trusted (trusted keys: {trusted.names()})"
    )
    retired = trusted.retired.get(signer)
    if retired is not None:
        return (
            f"{problem}, because a key rotation retired it ({retired}); the "
            "rotation did not re-sign this version, so check its files and sign "
            "them with 'appliance models sign NAME@VERSION --replace', or "
            "restore the version folder from a backup taken after the rotation"
        )
    folder = trusted.missing_home_folder
    if folder is None:
        return (
            f"{problem}; add its public key to [security] trusted_keys if you "
            "trust the box that signed it"
        )
    return (
        f"{problem}, and the home's signing key folder {folder} is missing; if "
        "this home signed it, restore that folder from a backup of the home, "
        "otherwise add the signer's public key to [security] trusted_keys"
    )


def _fields(manifest: Any, where: str) -> tuple[dict[str, Any], bytes]:
    """Return the signed fields of a manifest and its decoded signature."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SignatureError(
            f"{SIGNATURE_FILE} of {where} is not a format {FORMAT} manifest; "
            "restore the version folder from a backup or retrain"
        )
    invalid = [
        name
        for name, kind in _TYPES.items()
        if not isinstance(manifest.get(name), kind)
    ]
    files = manifest.get("files")
    if isinstance(files, dict) and not all(
        isinstance(name, str) and isinstance(digest, str)
        for name, digest in files.items()
    ):
        invalid.append("files")
    if invalid or manifest["algorithm"] != ALGORITHM:
        raise SignatureError(
            f"{SIGNATURE_FILE} of {where} is malformed (missing or invalid "
            f"fields: {', '.join(invalid) or 'none'}, algorithm "
            f"{manifest.get('algorithm')!r}); restore the version folder from a "
            "backup or retrain"
        )
    try:
        signature = base64.b64decode(manifest["signature"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise SignatureError(
            f"{SIGNATURE_FILE} of {where} has a signature that is not base64"
        ) from None
    body = {name: manifest[name] for name in _FIELDS}
    return body, signature


def _signed_files(
    folder: Path, model: str, version: int, hashes: dict[str, str]
) -> dict[str, bytes]:
    """Read the files a trusted manifest lists and compare them with it."""
    where = f"model {model!r} version {version}"
    present = {p.name for p in folder.iterdir() if p.name != SIGNATURE_FILE}
    unsigned = sorted(present - set(hashes))
    if unsigned:
        raise SignatureError(
            f"{folder / unsigned[0]} of {where} is not covered by its signature; "
            "remove it, or restore the version folder from a backup"
        )
    files = {}
    for name, expected in hashes.items():
        path = folder / Path(name).name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise SignatureError(
                f"{path} of {where} is signed but missing; restore it from a "
                "backup or retrain"
            ) from None
        actual = _sha256(data)
        if actual != expected:
            raise SignatureError(
                f"{path} of {where} was changed after signing: sha256 {actual}, "
                f"signed {expected}; restore it from a backup or retrain"
            )
        files[name] = data
    return files


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
