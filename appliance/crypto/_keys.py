"""The column key file: read from ``[security] column_key`` or made in the home.

The file contains the key as base64 text. A key made by the appliance is 64
bytes (AES-SIV with AES-256) from the ``cryptography`` package and is written
with mode 0600 through a temporary file, so a reader never sees a partial key.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from appliance.config import Config
from appliance.crypto._cipher import ColumnCipher
from appliance.errors import ColumnKeyError

logger = logging.getLogger(__name__)

KEY_FILE = Path("keys") / "column.key"
"""Key file under the home, used when ``[security] column_key`` is not set."""


def column_cipher(config: Config) -> ColumnCipher:
    """Return the cipher of the configured key file, making the home's at first need.

    Raises:
        ColumnKeyError: The configured key file is missing, or a key file is
            unreadable or does not contain a key.
    """
    configured = config.security.column_key
    if configured is not None:
        return load_key_file(configured)
    path = config.storage.home / KEY_FILE
    created = not path.exists()
    if created:
        _check_never_made(path)
        _create_key_file(path)
    cipher = load_key_file(path)
    cipher.created = created
    _record_key_id(path, cipher)
    return cipher


def discard_created_key(cipher: ColumnCipher) -> bool:
    """Delete the key file and key id file that `column_cipher` just generated.

    Called when the catalog shows that the home had another key, so that the
    lost key folder is not left holding a key that decrypts nothing.

    Returns:
        Whether the files were deleted: false for a key this process did not
        generate.
    """
    if not cipher.created:
        return False
    for path in (cipher.source, _id_file(cipher.source)):
        path.unlink(missing_ok=True)
    logger.warning("generated column key deleted path=%s", cipher.source)
    return True


def _record_key_id(path: Path, cipher: ColumnCipher) -> None:
    """Write the key id beside key file `path` unless it is there already."""
    recorded = _id_file(path)
    if recorded.exists():
        return
    try:
        recorded.write_text(cipher.key_id + "\n", encoding="ascii")
    except OSError as exc:
        logger.warning("column key id not recorded path=%s error=%s", recorded, exc)


def _id_file(path: Path) -> Path:
    """Return the file beside key file `path` that records its key id."""
    return path.with_name(path.name + ".id")


def _check_never_made(path: Path) -> None:
    """Raise when the home's key file existed before, as its id file shows.

    A new key would not decrypt what the lost one encrypted, and a backup of
    the home would then hold the wrong key.
    """
    try:
        lost = _id_file(path).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return
    raise ColumnKeyError(
        f"column key file {path} (key id {lost}) is missing, and the values "
        "encrypted with it cannot be read without it; restore it from a backup "
        f"(delete {_id_file(path)} only to start over with a new key)"
    )


def load_key_file(path: Path) -> ColumnCipher:
    """Return the cipher of the key in `path`.

    Raises:
        ColumnKeyError: The file is missing, unreadable or not a key.
    """
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise ColumnKeyError(
            f"column key file {path} not found; restore it from a backup, because "
            "values encrypted with it cannot be read without it"
        ) from None
    except OSError as exc:
        raise ColumnKeyError(
            f"cannot read column key file {path} ({exc.strerror}); check that it "
            "is a file and that the appliance's user has read permission on it"
        ) from None
    try:
        text = content.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        problem = f"byte {content[exc.start]:#04x} at offset {exc.start} is not text"
        raise _not_a_key(path, problem) from None
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise _not_a_key(path, "its text is not base64") from None
    return ColumnCipher(key, path)


def _not_a_key(path: Path, problem: str) -> ColumnKeyError:
    """Return the error for a key file whose content is not a key."""
    return ColumnKeyError(
        f"column key file {path} does not contain a column key ({problem}); a key "
        "file contains one line of base64 text that encodes a 32, 48 or 64 byte "
        "AES-SIV key. Restore the file from a backup, because values encrypted "
        "with the key cannot be read without it. Only to start over with a new "
        f"key, write one with 'head -c 64 /dev/urandom | base64 -w0 > {path}'"
    )


def _create_key_file(path: Path) -> None:
    """Write a new random key to `path` with mode 0600."""
    key = base64.b64encode(AESSIV.generate_key(512)) + b"\n"
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(descriptor, key)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        # os.link fails when another process created the file meanwhile, and
        # then both processes use that file.
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    except OSError as exc:
        raise ColumnKeyError(
            f"cannot create column key file {path} ({exc.strerror}); check that "
            "the home is writable, or name a key file in [security] column_key"
        ) from None
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("column key created path=%s", path)
