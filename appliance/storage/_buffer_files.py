"""Files of the ingest buffer: synced appends, line counts and moves."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from appliance.errors import StorageError
from appliance.storage._fsync import fsync_path

logger = logging.getLogger(__name__)


def append_synced(path: Path, data: bytes) -> None:
    """Append `data` to `path` and fsync it, and its folder when it is new.

    Raises:
        StorageError: The file cannot be written.
    """
    created = not path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            sync_folder(path.parent)
    except OSError as exc:
        raise StorageError(f"cannot write the ingest buffer {path}: {exc}") from exc


def line_count(path: Path) -> int:
    """Return the lines of `path` that hold more than white space; 0 if absent."""
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def drop_torn_line(path: Path) -> None:
    """Cut a last line left incomplete by a crash, which was never acknowledged."""
    with path.open("rb+") as handle:
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            logger.warning(
                "incomplete last line dropped file=%s bytes=%d", path, len(data) - end
            )
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())


def move_to(segment: Path, folder: Path) -> None:
    """Move `segment` into `folder`, made if missing, and sync the old folder."""
    folder.mkdir(exist_ok=True)
    os.replace(segment, folder / segment.name)
    sync_folder(segment.parent)


def sync_folder(folder: Path) -> None:
    """Make the entries of `folder` durable."""
    fsync_path(folder)
