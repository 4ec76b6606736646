"""Content-addressed blob store: a file per sha256 under ``blobs/AB/ABCDEF...``.

The same bytes are stored once however many runs log them, and a reader checks
the hash before returning them, so a changed or truncated file is detected.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from appliance.errors import IntegrityError, NotFoundError, StorageError

logger = logging.getLogger(__name__)


def blob_path(root: Path, digest: str) -> Path:
    """Return where the blob of sha256 `digest` is stored."""
    return root / digest[:2] / digest


def write_blob(root: Path, data: bytes) -> str:
    """Store `data` unless a blob with its sha256 exists, and return the sha256.

    Raises:
        StorageError: The file cannot be written.
    """
    digest = hashlib.sha256(data).hexdigest()
    path = blob_path(root, digest)
    if path.exists():
        return digest
    partial = path.with_name(f"{digest}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        logger.error("blob write failed path=%s error=%s", path, exc)
        raise StorageError(f"cannot write artifact {path}: {exc.strerror}") from exc
    return digest


def read_blob(root: Path, digest: str) -> bytes:
    """Return the bytes of blob `digest` after checking their sha256.

    Raises:
        NotFoundError: No blob has this digest.
        IntegrityError: The file's bytes hash to another digest.
    """
    path = blob_path(root, digest)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(
            f"artifact file {path} is missing; restore the appliance home from a "
            "backup or rerun the training"
        ) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise IntegrityError(
            f"artifact file {path} has sha256 {actual}, expected {digest}; the file "
            "is corrupted, restore it from a backup or rerun the training"
        )
    return data
