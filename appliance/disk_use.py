"""Disk use of each part of the appliance home, from file sizes alone.

Only the file system is read, so the listing works while the daemon holds
the catalog's lock. The catalog file includes the ``predictions`` table (the
newest ``[predictions] roll_rows`` rows of the prediction log) and the
``quarantine`` table, whose shares of the file only DuckDB can tell.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

FILE_PARTS = {
    "catalog": ("catalog.duckdb", "catalog.duckdb.wal"),
    "monitoring": ("monitoring.duckdb", "monitoring.duckdb.wal"),
    "jobs": ("jobs.duckdb", "jobs.duckdb.wal"),
}
"""Parts of the home that are single DuckDB files, with their write-ahead logs."""
SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
"""Binary units of `size_text`, smallest first."""
PREDICTION_FOLDERS = ("parquet", "journal", "spill")
"""Folders under ``HOME/predictions``: rolled Parquet files, the write-ahead
journal and the spill files of a full queue."""


@dataclass(frozen=True)
class DiskPart:
    """Size of one part of the home."""

    part: str
    """Name such as ``lake/weather`` or ``predictions/parquet``."""
    path: Path
    bytes: int
    files: int


def disk_use(home: Path) -> list[DiskPart]:
    """Return the size of each part of `home`, and ``other`` for the rest.

    The lake, the ingest buffer and the orphans folder are listed per
    dataset. The orphans folder contains lake folders that no catalog row
    reads (see ``appliance orphans list``). A dataset's quarantined buffer
    segments are listed apart from the rest of its buffer folder.
    """
    parts: list[DiskPart] = []
    named: set[Path] = set()
    for part, names in FILE_PARTS.items():
        paths = [home / name for name in names]
        named.update(paths)
        parts.append(_sum_files(part, paths[0], paths))
    for folder in ("lake", "models", "blobs", "orphans"):
        named.add(home / folder)
        parts += _per_child(folder, home / folder, folder in ("lake", "orphans"))
    named.add(home / "predictions")
    for name in PREDICTION_FOLDERS:
        parts.append(_folder_part(f"predictions/{name}", home / "predictions" / name))
    named.add(home / "buffer")
    parts += _buffer_parts(home / "buffer")
    others = [home / p for p in _children(home) if home / p not in named]
    parts.append(_sum_files("other", home, others))
    return parts


def _buffer_parts(buffer: Path) -> list[DiskPart]:
    parts = []
    for dataset in _children(buffer):
        folder = buffer / dataset
        quarantined = _folder_part(
            f"buffer/{dataset}/quarantined", folder / "quarantined"
        )
        whole = _folder_part(f"buffer/{dataset}", folder)
        rest = DiskPart(
            whole.part,
            folder,
            whole.bytes - quarantined.bytes,
            whole.files - quarantined.files,
        )
        parts += [rest, quarantined]
    return parts


def _per_child(name: str, folder: Path, split: bool) -> list[DiskPart]:
    if not split or not folder.is_dir():
        return [_folder_part(name, folder)]
    children = [_folder_part(f"{name}/{c}", folder / c) for c in _children(folder)]
    return children or [_folder_part(name, folder)]


def _children(folder: Path) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _folder_part(part: str, folder: Path) -> DiskPart:
    return _sum_files(part, folder, [folder])


def _sum_files(part: str, listed: Path, paths: list[Path]) -> DiskPart:
    """Add up the sizes of the regular files at or under `paths`.

    A file deleted while the folders are walked counts as absent, because
    the daemon may roll or remove files meanwhile.
    """
    total = files = 0
    for path in paths:
        for file in _walk(path):
            try:
                total += file.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
            files += 1
    return DiskPart(part, listed, total, files)


def _walk(path: Path) -> list[Path]:
    if path.is_symlink() or path.is_file():
        return [path]
    found = []
    for root, _dirs, names in os.walk(path):
        found += [Path(root) / name for name in names]
    return found


def size_text(count: int) -> str:
    """Format a byte count with a binary unit, such as ``1.5 MiB``.

    >>> size_text(512), size_text(1536), size_text(3 * 1024**3)
    ('512 B', '1.5 KiB', '3.0 GiB')
    """
    value = float(count)
    for unit in SIZE_UNITS:
        if value < 1024 or unit == SIZE_UNITS[-1]:
            break
        value /= 1024
    return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
