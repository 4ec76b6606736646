"""Buffer segments set aside in ``rejected/``, each with its reason on disk.

A segment whose own rows fail the flush (`_flush_errors.rows_error`) is moved
to ``HOME/buffer/DATASET/rejected/``. Its reason is written beside it as
``segment-N.reason.json``: the error class and message, the time in UTC, the
segment's row count and file, and how many retries failed. So the reason
survives a restart, and the status route and ``appliance datasets rejected``
show it. A retry that fails again rewrites the reason. A retry that commits
a version removes both files.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.errors import NotFoundError
from appliance.storage._fsync import fsync_path

logger = logging.getLogger(__name__)

REJECTED = "rejected"
"""Folder of a dataset's buffer that contains its rejected segments."""
SEGMENT_PREFIX = "segment-"
_SEGMENT_SUFFIX = ".jsonl"
_REASON_SUFFIX = ".reason.json"


@dataclass(frozen=True)
class RejectedSegment:
    """A segment in ``rejected/`` and why its flush failed."""

    segment: str
    """File name of the segment, such as ``segment-01733476800000000000.jsonl``."""
    path: str
    """Absolute path of the segment."""
    rows: int
    """Rows in the segment: its lines that are not empty."""
    error: str | None
    """Class of the error, such as ``IngestError`` or ``ConversionException``;
    None when the segment has no reason file, as a segment rejected by an
    older version of the appliance has not."""
    message: str | None
    """Message of the error, such as the contract rule that the rows break."""
    rejected_at: str | None
    """Time of the latest failed flush or retry, ISO 8601 in UTC."""
    retries: int = 0
    """Retries that failed again since the segment was rejected."""


def reason_path(segment: Path) -> Path:
    """Return the path of the reason file of `segment`."""
    return segment.with_name(
        segment.name.removesuffix(_SEGMENT_SUFFIX) + _REASON_SUFFIX
    )


def write_reason(
    segment: Path, error: BaseException, message: str, retries: int = 0
) -> RejectedSegment:
    """Write the reason of rejected `segment` beside it and return it.

    Raises:
        OSError: The reason file cannot be written.
    """
    record = RejectedSegment(
        segment=segment.name,
        path=str(segment.resolve()),
        rows=_row_count(segment),
        error=type(error).__name__,
        message=message,
        rejected_at=datetime.now(UTC).isoformat(timespec="seconds"),
        retries=retries,
    )
    _write_json(reason_path(segment), asdict(record))
    return record


def erase_from_reasons(folder: Path, values: Sequence[str]) -> int:
    """Replace `values` by ``<erased>`` in the reason messages that contain them all.

    An error message can quote a value of the segment's rows, such as the
    text that DuckDB could not convert, so an erasure of a data subject
    rewrites the reason files of ``rejected/`` too.

    Args:
        folder: The dataset's buffer folder, ``HOME/buffer/DATASET``.
        values: The subject's key values.

    Returns:
        The count of reason files rewritten.
    """
    rewritten = 0
    for path in sorted((folder / REJECTED).glob("*" + _REASON_SUFFIX)):
        stored = _read_json(path)
        message = None if stored is None else stored.get("message")
        if not isinstance(message, str) or not all(v in message for v in values):
            continue
        for value in values:
            message = message.replace(value, "<erased>")
        _write_json(path, {**stored, "message": message})
        rewritten += 1
    return rewritten


def _write_json(target: Path, data: dict[str, Any]) -> None:
    """Write `data` to `target` through a temporary file and a rename, so a
    crash leaves the old content or the new one, never a part."""
    temporary = target.with_name(target.name + ".tmp")
    try:
        temporary.write_text(json.dumps(data, indent=1) + "\n")
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_path(target.parent)


def remove_reason(segment: Path) -> None:
    """Delete the reason file of `segment`, if there is one."""
    reason_path(segment).unlink(missing_ok=True)


def list_rejected(folder: Path) -> list[RejectedSegment]:
    """Return the rejected segments of the buffer folder `folder`, oldest first.

    `folder` is ``HOME/buffer/DATASET``. The segment names start with the
    time they were cut in nanoseconds, so their order is the order of the rows.
    """
    segments = sorted((folder / REJECTED).glob(SEGMENT_PREFIX + "*" + _SEGMENT_SUFFIX))
    return [read_reason(segment) for segment in segments]


def count_rejected(root: Path) -> dict[str, int]:
    """Return the segments in the rejected/ folder of each dataset's buffer now.

    `root` is ``HOME/buffer``. Every dataset with a buffer folder is counted,
    with 0 once its last rejected segment was ingested again.
    """
    try:
        folders = sorted(path for path in root.iterdir() if path.is_dir())
    except FileNotFoundError:
        return {}
    pattern = SEGMENT_PREFIX + "*" + _SEGMENT_SUFFIX
    return {
        folder.name: sum(1 for _ in (folder / REJECTED).glob(pattern))
        for folder in folders
    }


def read_reason(segment: Path) -> RejectedSegment:
    """Return the rejected `segment` with its stored reason.

    A segment without a reason file, or with one that cannot be read, is
    returned with its row count and without a reason.
    """
    stored = _read_json(reason_path(segment))
    fields = {
        "segment": segment.name,
        "path": str(segment.resolve()),
        "rows": _row_count(segment),
    }
    if stored is None:
        return RejectedSegment(**fields, error=None, message=None, rejected_at=None)
    return RejectedSegment(
        **fields,
        error=_text(stored.get("error")),
        message=_text(stored.get("message")),
        rejected_at=_text(stored.get("rejected_at")),
        retries=int(stored.get("retries") or 0),
    )


def rejected_segment(folder: Path, dataset: str, name: str) -> Path:
    """Return the path of rejected segment `name` of `dataset`.

    Args:
        folder: The dataset's buffer folder, ``HOME/buffer/DATASET``.
        name: The segment's file name, with or without ``.jsonl``.

    Raises:
        NotFoundError: No rejected segment of `dataset` has that name; the
            message lists those there are.
    """
    file_name = name if name.endswith(_SEGMENT_SUFFIX) else name + _SEGMENT_SUFFIX
    segment = folder / REJECTED / file_name
    if file_name.startswith(SEGMENT_PREFIX) and "/" not in name and segment.is_file():
        return segment
    names = [record.segment for record in list_rejected(folder)]
    listed = ", ".join(names) if names else "none"
    raise NotFoundError(
        f"dataset {dataset!r} has no rejected buffer segment {name!r} "
        f"(rejected segments: {listed}); list them with 'appliance datasets "
        f"rejected {dataset}'"
    )


def _row_count(segment: Path) -> int:
    try:
        with segment.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return 0


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("rejected segment reason unreadable file=%s error=%s", path, exc)
        return None
    return stored if isinstance(stored, dict) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
