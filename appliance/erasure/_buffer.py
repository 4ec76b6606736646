"""Erasure from the HTTP ingest buffer's JSON-lines files.

Rows waiting for a flush (the write-ahead file and its segments) are dropped.
In the segments a flush kept for review (``quarantined/`` and ``rejected/``)
a matching line is replaced by an empty line, so the line numbers that the
quarantine table and rejection messages name stay right for the other rows.
A rejected segment's stored reason that quotes the key values gets
``<erased>`` in their place.
Each file is written beside the old one, fsynced and renamed over it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from appliance.erasure._subject import Subject
from appliance.storage import IngestBuffer, fsync_path
from appliance.storage._buffer import WAL
from appliance.storage._rejected import erase_from_reasons

logger = logging.getLogger(__name__)

_KEPT = ("quarantined", "rejected")


def count_buffer(root: Path, subject: Subject) -> int:
    """Return the matching rows in the dataset's buffer files."""
    return sum(_filter(path, subject, False)[1] for path in _files(root, subject))


def erase_buffer(root: Path, subject: Subject, buffer: IngestBuffer | None) -> int:
    """Remove the matching rows from the dataset's buffer files; return the count.

    Args:
        root: The buffer folder, ``HOME/buffer``.
        buffer: The daemon's running buffer, whose appends wait while the
            write-ahead file is rewritten; None when no daemon runs. The
            caller has taken its `IngestBuffer.flush_lock`.
    """
    _erase_reasons(root, subject)
    if buffer is None:
        return sum(_rewrite(path, subject) for path in _files(root, subject))
    wal = root / subject.dataset / WAL
    removed = buffer.rewrite_wal(subject.dataset, lambda path: _rewrite(path, subject))
    for path in _files(root, subject):
        if path != wal:
            removed += _rewrite(path, subject)
    return removed


def _erase_reasons(root: Path, subject: Subject) -> None:
    """Replace the key values in the stored reasons of rejected segments."""
    values = [value for _, value in subject.keys]
    rewritten = erase_from_reasons(root / subject.dataset, values)
    if rewritten:
        logger.info(
            "rejected segment reasons redacted dataset=%s files=%d",
            subject.dataset,
            rewritten,
        )


def _files(root: Path, subject: Subject) -> list[Path]:
    folder = root / subject.dataset
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.jsonl"))
    for name in _KEPT:
        files += sorted((folder / name).glob("*.jsonl"))
    return files


def _rewrite(path: Path, subject: Subject) -> int:
    blank = path.parent.name in _KEPT
    data, removed = _filter(path, subject, blank)
    if not removed:
        return 0
    partial = path.with_name(path.name + ".erase.tmp")
    with partial.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    fsync_path(path.parent)
    logger.info("buffer file redacted file=%s rows=%d", path, removed)
    return removed


def _filter(path: Path, subject: Subject, blank: bool) -> tuple[bytes, int]:
    """Return the file's bytes without the matching lines, and their count.

    A line that is not a JSON object, such as one cut by a crash, is kept.
    """
    kept, removed = [], 0
    with path.open("rb") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except ValueError:
                kept.append(line)
                continue
            if subject.matches_json(row):
                removed += 1
                if blank:
                    kept.append(b"\n")
                continue
            kept.append(line)
    return b"".join(kept), removed
