"""Write-ahead journal of the prediction log, read back after a crash.

`PredictionLog.append` writes each queued entry to the journal with one
``os.write`` before the handler responds. The kernel's page cache keeps a
completed write when the process is killed, so a SIGKILL or a crash of the
daemon loses no acknowledged prediction. A power loss keeps only what was
fsynced: the writer thread fsyncs the journal every
``[predictions] journal_fsync_seconds`` and at each rotation, unless that
option is 0.

The journal is a series of segment files ``HOME/predictions/journal/
journal-<time_ns>-<n>.bin``. A record is a 4-byte little-endian payload
length, the payload's 4-byte CRC-32, then the payload: one MessagePack array
(see `encode_entry`). The writer thread rotates to a new segment about once a
second and creates the next segment's file ahead of time, so a request
handler creates one only when none is ready. It deletes a closed segment once
every entry in it is in DuckDB or in a spill file. At start, the rows of the
remaining segments that are not yet in the ``predictions`` table are inserted
before the daemon serves.
"""

from __future__ import annotations

import itertools
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa

from appliance.jsonnumbers import overflowed_text
from appliance.logs import quoted
from appliance.predictions._rows import LogEntry

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")
_PREFIX = "journal-"
_SUFFIX = ".bin"
ROTATE_SECONDS = 1.0
"""Age of a segment after which the writer thread starts a new one."""
ROTATE_BYTES = 64 * 1024 * 1024
"""Size of a segment after which the writer thread starts a new one."""
FAILURE_SUMMARY_SECONDS = 60.0
"""Time between two log lines of a journal failure that goes on; the first
failure is logged with its traceback at once."""

_msgpack = msgspec.msgpack.Encoder().encode
_json = msgspec.json.Encoder(enc_hook=overflowed_text).encode


def journal_dir(home: Path) -> Path:
    """Return the folder of the journal segments."""
    return home / "predictions" / "journal"


def encode_entry(entry: LogEntry) -> bytes:
    """Encode `entry` as one journal record, header included.

    The payload is the MessagePack array ``[request_id, model, version,
    predicted_at, latency_ms, inputs, outputs]``. JSON rows are MessagePack
    arrays or maps; Arrow tables are Arrow IPC stream bytes. Rows that
    MessagePack cannot hold, such as an integer above 64 bits, are JSON text,
    where a number beyond the float64 range is a string (`overflowed_text`).
    """
    inputs, outputs = entry.inputs, entry.outputs
    head = (entry.request_id, entry.model, entry.version, entry.predicted_at)
    if isinstance(inputs, pa.Table):
        fields = (*head, entry.latency_ms, _ipc(inputs), _ipc(outputs))
        payload = _msgpack(fields)
    else:
        try:
            payload = _msgpack((*head, entry.latency_ms, inputs, outputs))
        except (OverflowError, TypeError, msgspec.EncodeError):
            text = (_json(inputs).decode(), _json(outputs).decode())
            payload = _msgpack((*head, entry.latency_ms, *text))
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def decode_entry(payload: bytes) -> LogEntry:
    """Decode the payload of one record into a `LogEntry`.

    Raises:
        ValueError: The payload is not a record of `encode_entry`.
    """
    try:
        fields = msgspec.msgpack.decode(payload)
        request_id, model, version, predicted_at, latency, inputs, outputs = fields
        inputs, outputs = _rows(inputs), _rows(outputs)
    except (msgspec.DecodeError, TypeError, ValueError, pa.ArrowException) as exc:
        raise ValueError(f"invalid journal record: {exc}") from None
    return LogEntry(request_id, model, version, predicted_at, latency, inputs, outputs)


def _ipc(table: pa.Table) -> memoryview:
    """Return `table` as Arrow IPC stream bytes, in a buffer allocated once.

    A growing output stream would copy a large table's bytes each time it
    grows, and could hold up to twice their size while it does.
    """
    size = pa.MockOutputStream()
    with pa.ipc.new_stream(size, table.schema) as writer:
        writer.write_table(table)
    buffer = pa.allocate_buffer(size.size())
    with pa.ipc.new_stream(pa.FixedSizeBufferWriter(buffer), table.schema) as writer:
        writer.write_table(table)
    return memoryview(buffer)


def _rows(value: Any) -> list[Any] | pa.Table:
    if isinstance(value, bytes):
        return pa.ipc.open_stream(value).read_all()
    if isinstance(value, str):
        return msgspec.json.decode(value)
    if not isinstance(value, list):
        raise TypeError(f"rows must be a list, bytes or text, got {type(value)}")
    return value


def read_segment(path: Path) -> list[LogEntry]:
    """Return the entries of a segment, up to its first cut or invalid record.

    A crash can cut the last record short, and a power loss can leave zeros
    at the end. Either is logged as a warning, and the records before it are
    returned.
    """
    data = path.read_bytes()
    entries: list[LogEntry] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < _HEADER.size:
            _warn_cut(path, offset, len(data))
            break
        length, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        payload = data[start : start + length]
        if len(payload) < length:
            _warn_cut(path, offset, len(data))
            break
        if zlib.crc32(payload) != crc:
            logger.warning(
                "journal record invalid file=%s offset=%d reason=crc; "
                "skipping the rest of the file",
                path,
                offset,
            )
            break
        try:
            entries.append(decode_entry(payload))
        except ValueError as exc:
            logger.warning(
                "journal record invalid file=%s offset=%d reason=%s; "
                "skipping the rest of the file",
                path,
                offset,
                exc,
            )
            break
        offset = start + length
    return entries


def _warn_cut(path: Path, offset: int, size: int) -> None:
    logger.warning(
        "journal ends in a cut record file=%s offset=%d size=%d; "
        "skipping it, it was never acknowledged",
        path,
        offset,
        size,
    )


def segment_files(folder: Path) -> list[Path]:
    """Return the segment files in `folder`, oldest first."""
    return sorted(folder.glob(f"{_PREFIX}*{_SUFFIX}"))


@dataclass
class _Segment:
    sequence: int
    path: Path
    fd: int
    """Open file descriptor, or -1 once closed."""
    opened: float
    size: int = 0
    """Bytes written."""
    synced_size: int = 0
    """Bytes written before the last successful fsync began."""

    @property
    def synced(self) -> bool:
        """True when every written byte was fsynced."""
        return self.synced_size >= self.size


class _Failures:
    """Failures in a row of one journal operation, logged at a limited rate.

    The first failure is logged with its traceback. While the failures go on,
    one line per `FAILURE_SUMMARY_SECONDS` gives their count and the last
    error, because the writer thread retries several times a second.
    """

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.count = 0
        self._logged_at = 0.0
        self._logged_count = 0

    def failed(self, exc: OSError, context: str) -> None:
        """Count a failure and log it when due; `context` is ``key=value`` text."""
        self.count += 1
        now = time.monotonic()
        if self.count == 1:
            logger.error(
                "journal %s failed %s error=%s; predictions are still queued, "
                "but a crash before they are written would lose them",
                self.operation,
                context,
                str(exc),
                exc_info=exc,
            )
        elif now - self._logged_at >= FAILURE_SUMMARY_SECONDS:
            logger.error(
                "journal %s still failing %s failures=%d new_failures=%d error=%s",
                self.operation,
                context,
                self.count,
                self.count - self._logged_count,
                str(exc),
            )
        else:
            return
        self._logged_at, self._logged_count = now, self.count

    def succeeded(self, context: str) -> None:
        """End a run of failures, logging how many there were."""
        if self.count:
            logger.info(
                "journal %s recovered %s failures=%d",
                self.operation,
                context,
                self.count,
            )
        self.count = 0
        self._logged_count = 0


class Journal:
    """The open journal: the segment being written and the closed ones.

    `write` and `rotate_if_due` must be called under the caller's lock, the
    same one that guards the queue of `PredictionLog`. `sync_if_due` and
    `release_before` are for the writer thread, and `close` runs after it
    stopped. An internal lock guards the list of closed segments, which both
    sides change.

    Args:
        folder: Folder of the segment files, created when missing.
        fsync_seconds: Time between fsyncs of written segments; 0 never
            fsyncs, so only a crash of the process is covered.
    """

    def __init__(self, folder: Path, fsync_seconds: float) -> None:
        self.folder = folder
        self.fsync_seconds = fsync_seconds
        self._sequence = 0
        self._files = itertools.count()
        self._current: _Segment | None = None
        self._spare: _Segment | None = None
        """Empty segment created by the writer thread for the next `_open`."""
        self._closed: list[_Segment] = []
        self._synced_at = time.monotonic()
        self._lock = threading.Lock()
        self._new_files = False
        """True when a segment was created since the folder was last fsynced."""
        self.failed_writes = 0
        """Entries the journal could not write; they are still queued."""
        self._write_failures = _Failures("write")
        self._create_failures = _Failures("segment create")
        self._delete_failures = _Failures("segment delete")

    @property
    def failing(self) -> bool:
        """True while the last write or segment create failed, so a crash
        would lose the predictions queued since."""
        return bool(self._write_failures.count or self._create_failures.count)

    @property
    def sequence(self) -> int:
        """Sequence number above that of every closed segment; the segment of
        the next write gets this number or a higher one."""
        return self._sequence

    def write(self, entry: LogEntry, record: bytes | None = None) -> int:
        """Write `entry` with one ``os.write`` and return its segment's sequence.

        Args:
            entry: The entry, for the error message of a failed write.
            record: ``encode_entry(entry)``, when the caller encoded it outside
                its lock; encoded here when None.

        A failed write is logged and counted, and the next write goes to a new
        segment, so a cut record can only be the last one of a segment.
        """
        if record is None:
            record = encode_entry(entry)
        try:
            segment = self._current or self._open()
            written = os.write(segment.fd, record)
            while written < len(record):
                written += os.write(segment.fd, record[written:])
        except OSError as exc:
            self._fail(entry, exc)
            return self._sequence
        if self._write_failures.count:
            self._write_failures.succeeded(f"folder={quoted(str(self.folder))}")
        segment.size += len(record)
        return segment.sequence

    def rotate_if_due(self) -> None:
        """Start a new segment when the current one is old or large enough."""
        segment = self._current
        if segment is None or not segment.size:
            return
        age = time.monotonic() - segment.opened
        if age >= ROTATE_SECONDS or segment.size >= ROTATE_BYTES:
            self._close_current()

    def rotate(self) -> None:
        """Start a new segment when the current one contains any entry."""
        if self._current is not None and self._current.size:
            self._close_current()

    def sync_if_due(self) -> None:
        """Fsync the closed segments, and the current one every `fsync_seconds`.

        The caller must not hold the log's queue lock, so that `write` goes on
        while an fsync runs. Only the list of closed segments is read under
        this journal's own lock.
        """
        if not self.fsync_seconds:
            return
        with self._lock:
            closed = list(self._closed)
        if self._new_files:
            self._new_files = False
            self._fsync_folder()
        for segment in closed:
            if not segment.synced:
                self._fsync(segment)
            if segment.synced:
                _close_fd(segment)
        now = time.monotonic()
        current = self._current
        if current is not None and now - self._synced_at >= self.fsync_seconds:
            self._synced_at = now
            if not current.synced:
                self._fsync(current)

    def closed_paths(self, first: int, below: int) -> list[Path]:
        """Return the files of the closed segments whose sequence is at least
        `first` and below `below`, oldest first."""
        with self._lock:
            return [s.path for s in self._closed if first <= s.sequence < below]

    def release_before(self, sequence: int) -> None:
        """Delete the closed segments whose sequence is below `sequence`."""
        with self._lock:
            released = [s for s in self._closed if s.sequence < sequence]
            self._closed = [s for s in self._closed if s.sequence >= sequence]
        for segment in released:
            _close_fd(segment)
            self._remove(segment.path)

    def close(self, remove: bool) -> None:
        """Close every segment, and delete them when `remove` is true."""
        spare, self._spare = self._spare, None
        if spare is not None:
            _close_fd(spare)
            self._remove(spare.path)
        if self._current is not None:
            self._close_current()
        if not remove:
            self.sync_if_due()
        with self._lock:
            segments, self._closed = self._closed, []
        for segment in segments:
            _close_fd(segment)
            if remove:
                self._remove(segment.path)

    def prepare(self) -> None:
        """Create the file of the next segment, so `write` does not create one."""
        if self._spare is not None:
            return
        try:
            self._spare = self._create()
        except OSError as exc:
            self._create_failures.failed(exc, f"folder={quoted(str(self.folder))}")
            return
        self._create_failures.succeeded(f"folder={quoted(str(self.folder))}")

    def _create(self) -> _Segment:
        name = f"{_PREFIX}{time.time_ns()}-{next(self._files):06d}{_SUFFIX}"
        path = self.folder / name
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        fd = os.open(path, flags, 0o600)
        self._new_files = True
        logger.debug("journal segment created file=%s", path)
        return _Segment(0, path, fd, 0.0)

    def _open(self) -> _Segment:
        """Make the prepared segment, or a new one, the current segment.

        Its sequence is drawn here, under the caller's lock, so sequences
        follow the order in which entries are queued.
        """
        segment, self._spare = self._spare, None
        if segment is None:
            segment = self._create()
        self._sequence += 1
        segment.sequence = self._sequence
        segment.opened = time.monotonic()
        self._current = segment
        return segment

    def _close_current(self) -> None:
        """Move the current segment to the closed ones. With fsyncs, its fd
        stays open until `sync_if_due` has fsynced it."""
        segment = self._current
        assert segment is not None
        self._current = None
        # A new sequence number makes the entries written from now on newer
        # than every entry of the closed segment.
        self._sequence += 1
        if not self.fsync_seconds or segment.synced:
            _close_fd(segment)
        with self._lock:
            self._closed.append(segment)

    def _fsync(self, segment: _Segment) -> None:
        # Bytes written while the fsync runs may not be covered by it.
        size = segment.size
        try:
            os.fsync(segment.fd)
            segment.synced_size = max(segment.synced_size, size)
        except OSError:
            logger.exception("journal fsync failed file=%s", segment.path)

    def _fsync_folder(self) -> None:
        """Fsync the folder, so that a power loss keeps the new segments' names."""
        try:
            fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            logger.exception("journal folder fsync failed folder=%s", self.folder)

    def _remove(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            self._delete_failures.failed(exc, f"file={quoted(str(path))}")
            return
        self._delete_failures.succeeded(f"folder={quoted(str(self.folder))}")

    def _fail(self, entry: LogEntry, exc: OSError) -> None:
        self.failed_writes += 1
        context = f"request_id={entry.request_id} failed_writes={self.failed_writes}"
        self._write_failures.failed(exc, context)
        if self._current is not None:
            self._close_current()


def _close_fd(segment: _Segment) -> None:
    """Close the segment's fd once; later calls do nothing."""
    fd, segment.fd = segment.fd, -1
    if fd < 0:
        return
    try:
        os.close(fd)
    except OSError:
        logger.exception("journal segment close failed file=%s", segment.path)
