"""Compressed text sources: gzip and zstd files, decompressed once per ingest.

A CSV or JSON-lines file may come compressed, such as ``flights.csv.gz`` from
pandas' ``to_csv``. The ingest reads each such file once, streaming, into a
plain copy in a folder under the home (`DecompressedFiles`), and every later
read, by DuckDB or by Python, reads that copy. Line numbers, the UTF-8 check
and the CSV sniffer read the decompressed text, while messages, the
quarantine and the catalog name the file as given, and its SHA-256 is that
of its compressed bytes.

zstd needs Python's ``compression.zstd`` module, which is new in Python 3.14.
Before that, a ``.zst`` file is rejected with the command that decompresses it.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import logging
import shutil
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, BinaryIO

from appliance.errors import IngestError, StorageError

logger = logging.getLogger(__name__)

DECOMPRESSED_FOLDER = "decompressed"
"""Folder of the home that contains the decompressed copies of running ingests."""
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}
"""Suffix of each compression read after a text format's suffix."""
_COMMANDS = {"gzip": "gzip -dc", "zstd": "zstd -dc"}
_CHUNK = 1 << 20


def _zstd_module() -> ModuleType | None:
    """Return Python's zstd module (Python 3.14 and later), or None without it."""
    try:
        return importlib.import_module("compression.zstd")
    except ImportError:
        return None


_ZSTD = _zstd_module()
_ZSTD_ERRORS: tuple[type[Exception], ...] = (_ZSTD.ZstdError,) if _ZSTD else ()


def readable_suffixes() -> list[str]:
    """Return the suffixes of the compressions this Python reads."""
    return [s for s, kind in COMPRESSIONS.items() if kind != "zstd" or _ZSTD]


def decompress_command(path: Path) -> str | None:
    """Return the shell command that prints the text of `path`, if it is compressed."""
    compression = COMPRESSIONS.get(path.suffix.lower())
    if compression is None:
        return None
    return f"{_COMMANDS[compression]} {path.name}"


def check_available(path: Path) -> None:
    """Reject a compressed file whose compression this Python cannot read.

    Raises:
        IngestError: `path` is a zstd file and Python has no zstd module.
    """
    if COMPRESSIONS.get(path.suffix.lower()) != "zstd" or _ZSTD is not None:
        return
    plain = path.with_suffix("").name
    raise IngestError(
        f"{path}: reading zstd files needs Python 3.14 or later, whose "
        "standard library has the zstd module; decompress the file first, such "
        f"as with 'zstd -d {path.name}', and ingest {plain}, or compress it "
        "with gzip instead"
    )


@dataclass(frozen=True)
class Decompressed:
    """Hashes and size of a compressed file that was decompressed."""

    sha256: str
    """SHA-256 of the compressed file, as given."""
    content_sha256: str
    """SHA-256 of the decompressed bytes."""
    size: int
    """Count of decompressed bytes."""


class DecompressedFiles:
    """The folder of one ingest's decompressed copies, removed when it ends.

    The folder is made on first use, under ``DECOMPRESSED_FOLDER`` of the
    home, so that a copy takes space where the lake is and not in a small
    ``/tmp``. Leaving the ``with`` block removes it, also on an error. A
    process killed before that leaves it, and `remove_orphan_folders`
    deletes it.
    """

    def __init__(self, home: Path) -> None:
        self._root = home / DECOMPRESSED_FOLDER
        self._folder: Path | None = None
        self._count = 0

    def copy_path(self, path: Path) -> Path:
        """Return a new path in the folder for the decompressed copy of `path`.

        The copy keeps the name without the compression suffix, such as
        ``flights.csv``, because DuckDB takes ``.gz`` at the end of a name
        for a compressed file.

        Raises:
            StorageError: The folder cannot be created.
        """
        if self._folder is None:
            try:
                self._root.mkdir(parents=True, exist_ok=True)
                self._folder = Path(tempfile.mkdtemp(prefix="ingest-", dir=self._root))
            except OSError as exc:
                raise StorageError(
                    f"cannot create a folder in {self._root} for the decompressed "
                    f"copy of {path}: {exc.strerror}; check the free disk space and "
                    "permissions of the home folder"
                ) from exc
        self._count += 1
        return self._folder / f"{self._count}_{path.with_suffix('').name}"

    def __enter__(self) -> DecompressedFiles:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def decompress(
    path: Path, out: Path, inspect: Callable[[bytes], None] | None = None
) -> Decompressed:
    """Write the decompressed bytes of `path` to `out`, hashing both sides.

    Memory stays bounded: the file is read and written 1 MiB at a time.
    `inspect` is called with each decompressed chunk in order, such as to
    check that the text is UTF-8.

    Raises:
        IngestError: `path` cannot be read, or is not a complete file of its
            compression (not compressed at all, damaged, or cut short).
        StorageError: `out` cannot be written, such as when the disk is full.
    """
    compression = COMPRESSIONS[path.suffix.lower()]
    try:
        source = path.open("rb")
    except OSError as exc:
        raise IngestError(f"{path}: cannot read file: {exc.strerror}") from exc
    raw = _HashingReader(source)
    content = hashlib.sha256()
    size = 0
    with source, _create(out, path) as copy, _open_stream(compression, raw) as stream:
        while chunk := _read(stream, path, compression, size):
            content.update(chunk)
            if inspect is not None:
                inspect(chunk)
            _write(copy, chunk, path, out)
            size += len(chunk)
        # Hash any bytes the decompressor left unread.
        while _read(raw, path, compression, size):
            pass
    logger.debug(
        "decompressed file=%s compression=%s bytes=%d", path, compression, size
    )
    return Decompressed(raw.digest.hexdigest(), content.hexdigest(), size)


class _HashingReader:
    """A binary file that hashes the bytes read from it."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self.digest.update(data)
        return data


def _open_stream(compression: str, raw: _HashingReader) -> Any:
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    assert _ZSTD is not None, "check_available rejects zstd files without the module"
    # NOTE: this branch runs on Python 3.14 and later only, where
    # test_zst_csv_quarantine_names_file covers it; 3.11 skips that test.
    return _ZSTD.ZstdFile(raw, mode="rb")


def _create(out: Path, path: Path) -> io.FileIO:
    """Open `out` for writing, unbuffered, so a full disk fails in `_write`."""
    try:
        return io.FileIO(out, "wb")
    except OSError as exc:
        raise _copy_error(path, out, exc) from exc


def _write(copy: io.FileIO, chunk: bytes, path: Path, out: Path) -> None:
    view = memoryview(chunk)
    try:
        while view:
            written = copy.write(view)
            view = view[written or 0 :]
    except OSError as exc:
        raise _copy_error(path, out, exc) from exc


def _copy_error(path: Path, out: Path, exc: OSError) -> StorageError:
    return StorageError(
        f"{path}: cannot write its decompressed copy to {out.parent}: "
        f"{exc.strerror}; free disk space in the home folder, or decompress "
        "the file elsewhere and ingest the plain file"
    )


def _read(stream: Any, path: Path, compression: str, size: int) -> bytes:
    """Return the next chunk of `stream`, raising an IngestError for a bad file.

    Python's gzip module raises `gzip.BadGzipFile` (an OSError) for a file
    without the gzip header and for a failed CRC check, `EOFError` for a
    file cut short and `zlib.error` for damaged data.

    Args:
        size: Decompressed bytes read before, which the message names.
    """
    try:
        return stream.read(_CHUNK)
    except EOFError:
        problem = (
            "the file ends before the end of its compressed data, so it was cut "
            "short; copy or export it again"
        )
    except (zlib.error, *_ZSTD_ERRORS) as exc:
        problem = _damaged(path, compression, exc, size)
    except OSError as exc:
        if not isinstance(exc, gzip.BadGzipFile):
            problem = f"cannot read file: {exc.strerror or exc}"
        else:
            problem = _damaged(path, compression, exc, size)
    raise IngestError(f"{path}: {problem}")


def _damaged(path: Path, compression: str, exc: Exception, size: int) -> str:
    if size == 0 and compression == "gzip" and "Not a gzipped file" in str(exc):
        return (
            f"not a gzip file ({exc}); if it is plain text, rename it to "
            f"{path.with_suffix('').name}"
        )
    if size == 0 and compression == "zstd":
        return f"not a zstd file, or its start is damaged ({exc})"
    return (
        f"the compressed data is damaged after {size} decompressed bytes "
        f"({exc}); copy or export the file again"
    )
