"""Durable buffer of rows sent over HTTP, flushed to dataset versions.

Rows are appended as JSON lines to ``HOME/buffer/DATASET/wal.jsonl`` and the
file is fsynced before `IngestBuffer.append` returns, so a row that was
acknowledged survives a crash of the process or the machine. A flush renames
the write-ahead file to a segment, ingests the segment in ``append`` mode and
deletes it. A segment with quarantined rows is moved to ``quarantined/``
instead, so the whole rows stay available for review.

The values of a dataset's ``sensitive`` columns are encrypted before they
are written, so the write-ahead file and the segments hold ciphertext, and
the flush decrypts them in memory to check them against the contract.

Recovery after a crash needs no log replay: leftover segments and write-ahead
files are flushed at start. A segment ingested just before a crash, but not
yet deleted, is found by its hash and not ingested twice.

A flush that fails (a full disk, a catalog that cannot be written) keeps its
segment and is retried by the flush thread with exponential backoff, from
`IngestBuffer.retry_first_seconds` up to `IngestBuffer.retry_max_seconds`
between attempts, until it succeeds. It needs no new row to start. A segment
whose own rows fail the flush, so that every retry would fail the same way
(`_flush_errors.rows_error`), is moved to ``rejected/`` instead, with its
reason in a file beside it (`_rejected`), and the flush goes on with the
next segment. `IngestBuffer.retry_rejected` ingests such a segment again
once the operator has fixed the cause.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.config import Config, dataset_name_problem
from appliance.crypto import ColumnCipher, column_cipher
from appliance.dbrows import first_row
from appliance.errors import IngestError, RequestError, StorageError
from appliance.storage._buffer_files import (
    append_synced,
    drop_torn_line,
    line_count,
    move_to,
    sync_folder,
)
from appliance.storage._buffer_rows import check_keys, encrypted_row, spellings
from appliance.storage._catalog import Catalog
from appliance.storage._chain_compaction import compact_if_long
from appliance.storage._datasets import DatasetVersion, find_by_sources
from appliance.storage._flush_errors import rejection_message, rows_error
from appliance.storage._ingest import IngestResult, ingest
from appliance.storage._pending_quality import PendingReports, complete_latest
from appliance.storage._quarantine import move_source
from appliance.storage._rejected import (
    REJECTED,
    count_rejected,
    read_reason,
    rejected_segment,
    remove_reason,
    write_reason,
)
from appliance.storage._repeated_keys import encode_as_sent

logger = logging.getLogger(__name__)

WAL = "wal.jsonl"
_SEGMENT_PREFIX = "segment-"
_LOCK_RETRIES = 20
_LOCK_RETRY_SECONDS = 0.25


@dataclass
class _State:
    rows: int = 0
    """Rows in the write-ahead file."""
    oldest: float | None = None
    """Monotonic time of the first row in the write-ahead file."""
    flushed: int = 0
    """Versions created by flushes since start."""
    failures: int = 0
    """Count of flushes that failed in a row, reset by a flush that succeeds."""
    retry_at: float | None = None
    """Monotonic time of the next attempt after a failed flush."""
    failed_flushes: int = 0
    """Flushes that failed and were retried, since start."""
    flush_error: str | None = None
    """Error of the latest failed flush, None once a flush succeeds."""
    rejected: int = 0
    """Segments set aside in ``rejected/`` since start, because their own rows
    failed the flush."""
    rejection: str | None = None
    """Error of the latest rejected segment, naming its file in ``rejected/``."""
    accepted_rows: int = 0
    """Rows written to the write-ahead file since start."""
    flushed_rows: int = 0
    """Rows that flushes wrote to new versions since start."""
    quarantined_rows: int = 0
    """Rows that flushes stored in the quarantine table since start."""
    last_flush: LastFlush | None = None
    """The latest segment a flush ingested since start."""
    keys: dict[str, str] = field(default_factory=dict)
    """Column names of the rows in the write-ahead file, by their lower case
    form, as the rows first spelled them."""


@dataclass(frozen=True)
class LastFlush:
    """Rows of the latest buffer segment that a flush ingested."""

    version: str
    """Version that contains the segment's accepted rows."""
    accepted: int
    """Rows of the segment written to the version."""
    quarantined: int
    """Rows of the segment stored in the quarantine table."""


class IngestBuffer:
    """Write-ahead buffer of JSON rows per dataset, flushed by size or age."""

    def __init__(self, config: Config, catalog: Catalog | None = None) -> None:
        self.config = config
        self.catalog = catalog
        """Open catalog whose cursors the flushes write with, such as the
        daemon's connection; the catalog under the home is opened when None."""
        self.root = config.storage.home / "buffer"
        self.flush_rows = config.ingest.flush_rows
        self.flush_seconds = config.ingest.flush_seconds
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()
        self.flush_lock = threading.Lock()
        """Held while a flush writes a version."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_flush: Callable[[str, IngestResult], None] | None = None
        self.retry_first_seconds = 1.0
        """Wait before the first retry of a failed flush; it doubles each time."""
        self.retry_max_seconds = 60.0
        """Maximum wait between two retries of a failed flush."""
        self._cipher: ColumnCipher | None = None
        self.pending_reports = PendingReports()
        """Datasets whose latest version's quality report the flush thread
        completes once they are idle (`_pending_quality`)."""

    def append(self, dataset: str, rows: Sequence[Any]) -> int:
        """Write `rows` durably to the dataset's buffer; return the buffered count.

        Raises:
            RequestError: The dataset name is invalid or a row is not an object.
            StorageError: The buffer file cannot be written.
        """
        _check_name(dataset)
        sensitive = self.config.dataset(dataset).sensitive
        lines = []
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                raise RequestError(
                    f"row {index} sent to dataset {dataset!r} is not a JSON object",
                    dataset=dataset,
                    row=index,
                )
            check_keys(dataset, index, row)
            if sensitive:
                row = encrypted_row(row, sensitive, self.cipher())
            lines.append(encode_as_sent(row))
        if not lines:
            raise RequestError(
                f'no rows sent to dataset {dataset!r}; send {{"rows": [{{...}}, ...]}}',
                dataset=dataset,
            )
        data = ("\n".join(lines) + "\n").encode()
        with self._lock:
            state = self._states.setdefault(dataset, _State())
            new_names = spellings(dataset, rows, state.keys)
            append_synced(self.root / dataset / WAL, data)
            state.keys.update(new_names)
            state.rows += len(lines)
            state.accepted_rows += len(lines)
            if state.oldest is None:
                state.oldest = time.monotonic()
            buffered = state.rows
        logger.debug("rows buffered dataset=%s rows=%d", dataset, len(lines))
        return buffered

    def cipher(self) -> ColumnCipher:
        """Return the column key's cipher, reading the key file at first need.

        Raises:
            ColumnKeyError: The key file is missing or invalid.
        """
        if self._cipher is None:
            self._cipher = column_cipher(self.config)
        return self._cipher

    def buffered(self, dataset: str) -> tuple[int, int]:
        """Return the rows waiting in `dataset`'s buffer and its flush count."""
        with self._lock:
            state = self._states.get(dataset, _State())
            return state.rows, state.flushed

    def rejections(self, dataset: str) -> tuple[int, str | None]:
        """Return the count of `dataset`'s rejected segments and the latest error."""
        with self._lock:
            state = self._states.get(dataset, _State())
            return state.rejected, state.rejection

    def flushed_rows(self, dataset: str) -> tuple[int, int, LastFlush | None]:
        """Return the rows that flushes of `dataset` wrote to versions and
        quarantined since start, and the latest flushed segment."""
        with self._lock:
            state = self._states.get(dataset, _State())
            return state.flushed_rows, state.quarantined_rows, state.last_flush

    def failures(self, dataset: str) -> tuple[int, int, str | None]:
        """Return `dataset`'s failed flushes since start, the failures in a row
        of its current flush (0 after a flush that succeeds), and the error
        of the latest failure while the flush keeps failing."""
        with self._lock:
            state = self._states.get(dataset, _State())
            return state.failed_flushes, state.failures, state.flush_error

    def failing(self) -> dict[str, int]:
        """Return the failures in a row of each flush being retried, by dataset."""
        with self._lock:
            return {
                name: state.failures
                for name, state in sorted(self._states.items())
                if state.failures
            }

    def counts(self) -> dict[str, tuple[int, int, int, int, int, int]]:
        """Return, by dataset, the rows accepted, flushed and quarantined, the
        segments rejected and the failed flushes since start, and the failures
        in a row of the current flush."""
        with self._lock:
            return {
                name: (
                    state.accepted_rows,
                    state.flushed_rows,
                    state.quarantined_rows,
                    state.rejected,
                    state.failed_flushes,
                    state.failures,
                )
                for name, state in self._states.items()
            }

    def waiting_rejected(self) -> dict[str, int]:
        """Return the segments in each dataset's rejected/ folder now, those of
        earlier runs included; 0 once the last one was ingested again."""
        return count_rejected(self.root)

    def rewrite_wal(self, dataset: str, rewrite: Callable[[Path], int]) -> int:
        """Call ``rewrite(path)`` on the dataset's write-ahead file while no row
        is appended, and count its rows again; return what `rewrite` returns.

        The caller has taken `flush_lock`, so no flush renames the file
        meanwhile.
        """
        wal = self.root / dataset / WAL
        with self._lock:
            changed = rewrite(wal) if wal.exists() else 0
            state = self._states.get(dataset)
            if state is not None:
                state.rows = line_count(wal)
                if not state.rows:
                    state.oldest = None
        return changed

    def without_appends(self, dataset: str, action: Callable[[], None]) -> None:
        """Call `action` while no row is appended, then forget `dataset`'s counts.

        A dataset removal deletes the buffer folder in `action`. The caller
        has taken `flush_lock`, so no flush reads the folder meanwhile.
        """
        with self._lock:
            action()
            self._states.pop(dataset, None)

    @property
    def thread_id(self) -> int | None:
        """Kernel id of the worker thread while it runs, else None."""
        thread = self._thread
        return thread.native_id if thread is not None and thread.is_alive() else None

    def start(self) -> None:
        """Flush what a previous run left, then flush by size or age in a thread."""
        self.recover()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="ingest-buffer", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the flush thread and flush every buffered row.

        A flush that fails is logged; its rows stay on disk and are flushed
        at the next start.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        try:
            self.flush_all()
        except Exception:
            logger.exception("buffer flush at stop failed; kept for the next start")

    def recover(self) -> None:
        """Flush the segments and write-ahead files found in the buffer folder,
        and log the segments that earlier flushes set aside in ``rejected/``.

        A dataset whose flush fails is logged and left to the flush thread's
        retries, so one bad dataset does not stop the others or the start.
        """
        if not self.root.is_dir():
            return
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            rejected = list((folder / REJECTED).glob(_SEGMENT_PREFIX + "*.jsonl"))
            if rejected:
                logger.warning(
                    "rejected buffer segments kept for review dataset=%s "
                    "segments=%d folder=%s",
                    folder.name,
                    len(rejected),
                    folder / REJECTED,
                )
            wal = folder / WAL
            if wal.exists() or any(folder.glob(_SEGMENT_PREFIX + "*")):
                logger.info("buffer recovery dataset=%s", folder.name)
                try:
                    self.flush(folder.name)
                except Exception:
                    logger.debug(
                        "buffer recovery failed dataset=%s", folder.name, exc_info=True
                    )

    def flush_all(self) -> None:
        """Flush every dataset that has buffered rows or a failed flush."""
        with self._lock:
            pending = [
                name
                for name, state in self._states.items()
                if state.rows or state.failures
            ]
        for dataset in pending:
            self.flush(dataset)

    def flush(self, dataset: str) -> None:
        """Move the dataset's buffered rows into a new version of it.

        Raises:
            Exception: The flush failed; its rows stay on disk and the flush
                thread retries it after a backoff.
        """
        with self.flush_lock:
            try:
                self._rotate(dataset)
                folder = self.root / dataset
                for segment in sorted(folder.glob(_SEGMENT_PREFIX + "*.jsonl")):
                    self._ingest_segment(dataset, segment)
                self._compact(dataset)
            except Exception as exc:
                attempt, wait = self._schedule_retry(dataset, exc)
                logger.warning(
                    "buffer flush failed, retry scheduled dataset=%s attempt=%d "
                    "retry_in_s=%.2f error=%s",
                    dataset,
                    attempt,
                    wait,
                    exc,
                    exc_info=True,
                )
                raise
        with self._lock:
            state = self._states.setdefault(dataset, _State())
            if state.failures:
                logger.info(
                    "buffer flush succeeded after retries dataset=%s failures=%d",
                    dataset,
                    state.failures,
                )
            state.failures, state.retry_at, state.flush_error = 0, None, None
        self.pending_reports.flushed(dataset)

    def _compact(self, dataset: str) -> None:
        """Compact the dataset's append chain once it exceeds ``compact_after``."""
        settings = self.config.dataset(dataset)
        if settings.compact_after is None:
            return
        with self._open_catalog() as catalog:
            compact_if_long(catalog, settings)

    def _schedule_retry(self, dataset: str, exc: Exception) -> tuple[int, float]:
        """Record a failed flush of `dataset` and when to try it again.

        Returns:
            The count of failed attempts in a row and the wait in seconds.
        """
        with self._lock:
            state = self._states.setdefault(dataset, _State())
            state.failures += 1
            state.failed_flushes += 1
            state.flush_error = f"{type(exc).__name__}: {exc}"
            wait = min(
                self.retry_first_seconds * 2 ** (state.failures - 1),
                self.retry_max_seconds,
            )
            state.retry_at = time.monotonic() + wait
            return state.failures, wait

    def _run(self) -> None:
        while not self._stop.wait(self._wait()):
            due = self._due()
            for dataset in due:
                try:
                    self.flush(dataset)
                except Exception:
                    # Logged with its retry by flush; the rows stay on disk.
                    logger.debug(
                        "buffer flush failed dataset=%s", dataset, exc_info=True
                    )
            if not due:
                self._complete_reports()

    def _complete_reports(self) -> None:
        """Complete the pending quality report of each idle dataset's latest version.

        It holds the flush lock, so a flush waits for at most one report.
        """
        for dataset in self.pending_reports.due():
            if self._stop.is_set():
                return
            with self.flush_lock:
                try:
                    with self._open_catalog() as catalog:
                        complete_latest(catalog, dataset)
                except Exception:
                    logger.exception(
                        "pending quality report failed dataset=%s", dataset
                    )

    def _due(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            return [
                name for name, state in self._states.items() if self._is_due(state, now)
            ]

    def _is_due(self, state: _State, now: float) -> bool:
        """Tell whether a buffer is full or old enough, or its retry is due.

        After a failed flush only the retry time counts, so a failing disk is
        not tried again at every new row.
        """
        if state.retry_at is not None:
            return now >= state.retry_at
        if state.rows >= self.flush_rows:
            return True
        return state.oldest is not None and now - state.oldest >= self.flush_seconds

    def _wait(self) -> float:
        """Return the flush thread's sleep between checks, in seconds."""
        return min(1.0, self.flush_seconds / 4, self.retry_first_seconds)

    def _rotate(self, dataset: str) -> None:
        """Rename the write-ahead file to a segment; new rows start a new file."""
        folder = self.root / dataset
        wal = folder / WAL
        with self._lock:
            state = self._states.setdefault(dataset, _State())
            if wal.exists():
                drop_torn_line(wal)
                if wal.stat().st_size > 0:
                    segment = folder / f"{_SEGMENT_PREFIX}{time.time_ns():020d}.jsonl"
                    os.replace(wal, segment)
                    sync_folder(folder)
                else:
                    wal.unlink()
            state.rows, state.oldest = 0, None
            state.keys.clear()

    def _open_catalog(self) -> Catalog:
        if self.catalog is None:
            return Catalog(self.config.storage.home)
        return self.catalog.cursor()

    def _open_catalog_waiting(self, dataset: str, segment: Path) -> Catalog:
        """Open the catalog, waiting while another process has it open.

        Raises:
            StorageError: The catalog stayed busy; the segment is kept.
        """
        for attempt in range(_LOCK_RETRIES):
            try:
                return self._open_catalog()
            except StorageError:
                # Another process holds the catalog; it is released within seconds.
                logger.warning(
                    "catalog busy, flush retried dataset=%s attempt=%d",
                    dataset,
                    attempt,
                )
                time.sleep(_LOCK_RETRY_SECONDS * (attempt + 1))
        raise StorageError(
            f"catalog stayed busy; segment {segment} of dataset {dataset!r} is "
            "kept and flushed later"
        )

    def _ingest_segment(self, dataset: str, segment: Path) -> None:
        try:
            result, quarantined = self._append_segment(dataset, segment)
        except Exception as exc:
            # NOTE: Rows buffered before a change of `sensitive` and flushed
            # after it do not decrypt (`ColumnKeyError`), or would be stored
            # as ciphertext, so flush the buffer (stop the daemon) before
            # changing it.
            error = rows_error(exc)
            if error is None:
                raise
            self._reject(dataset, segment, error)
            return
        self._finish_segment(dataset, segment, result, quarantined)

    def _append_segment(self, dataset: str, segment: Path) -> tuple[IngestResult, int]:
        """Ingest `segment` as an append; return the result and its quarantined rows.

        A segment with quarantined rows gets its place in ``quarantined/``
        in the catalog, and `_finish_segment` moves the file there.
        """
        settings = self.config.dataset(dataset)
        destination = self.root / dataset / "quarantined" / segment.name
        with self._open_catalog_waiting(dataset, segment) as catalog:
            stored = _stored_at(catalog, dataset, segment, destination)
            if stored is not None:
                logger.info(
                    "buffer segment found ingested, moved dataset=%s segment=%s "
                    "version=%s",
                    dataset,
                    segment,
                    stored.version,
                )
                result = IngestResult(stored, created=False)
                return result, _quarantined(result)
            result = ingest(
                catalog,
                dataset,
                [segment],
                "append",
                settings,
                views=list(self.config.feature_views.values()),
                same_paths=True,
                cipher=self.cipher() if settings.sensitive else None,
                ciphertext_sources=True,
                pending_quality=True,
            )
            quarantined = _quarantined(result)
            if quarantined:
                # The catalog names the segment's next place before the
                # move. After a crash in between, the next flush or retry
                # finds the segment's version there (`_stored_at`) and
                # moves the file.
                move_source(
                    catalog, dataset, result.version.version, segment, destination
                )
        return result, quarantined

    def _finish_segment(
        self, dataset: str, segment: Path, result: IngestResult, quarantined: int
    ) -> None:
        """Move or delete the ingested `segment`, count its rows and log them."""
        if quarantined:
            move_to(segment, self.root / dataset / "quarantined")
        else:
            segment.unlink()
            sync_folder(segment.parent)
        with self._lock:
            state = self._states.setdefault(dataset, _State())
            accepted = _accepted(result)
            state.flushed += 1
            state.flushed_rows += accepted
            state.quarantined_rows += quarantined
            state.last_flush = LastFlush(result.version.version, accepted, quarantined)
        logger.info(
            "buffer flushed dataset=%s version=%s accepted=%d quarantined=%d",
            dataset,
            result.version.version,
            result.accepted,
            result.quarantined,
        )
        if self.on_flush is not None:
            self.on_flush(dataset, result)

    def _reject(self, dataset: str, segment: Path, error: BaseException) -> None:
        """Move `segment` to ``rejected/``, where its rows stay for review,
        and write its reason beside it."""
        kept = segment.parent / REJECTED / segment.name
        message = rejection_message(error, dataset, segment, kept)
        logger.error(
            "buffer segment rejected dataset=%s segment=%s error=%s",
            dataset,
            kept,
            message,
            exc_info=error,
        )
        move_to(segment, kept.parent)
        _write_reason(kept, error, message, 0)
        with self._lock:
            state = self._states.setdefault(dataset, _State())
            state.rejected += 1
            state.rejection = message

    def retry_rejected(self, dataset: str, name: str) -> IngestResult:
        """Ingest rejected segment `name` of `dataset` again, as an append.

        The rows are checked as at a flush, so a row that breaks the
        contract is quarantined. The segment leaves ``rejected/`` only after
        its version is committed.

        Raises:
            NotFoundError: The dataset has no rejected segment of that name.
            IngestError: The segment's rows fail the flush again; the segment
                stays, and its reason file contains the new error.
            Exception: The flush failed for a reason that may pass, such as a
                full disk; the segment and its reason stay as they were.
        """
        _check_name(dataset)
        with self.flush_lock:
            segment = rejected_segment(self.root / dataset, dataset, name)
            try:
                result, quarantined = self._append_segment(dataset, segment)
            except Exception as exc:
                error = rows_error(exc)
                if error is None:
                    raise
                raise self._reject_again(dataset, segment, error) from exc
            try:
                self._finish_segment(dataset, segment, result, quarantined)
            finally:
                # The reason goes with the segment, also when a listener of
                # the flush fails after the move.
                if not segment.exists():
                    remove_reason(segment)
        logger.info(
            "rejected buffer segment ingested dataset=%s segment=%s version=%s",
            dataset,
            segment.name,
            result.version.version,
        )
        return result

    def _reject_again(
        self, dataset: str, segment: Path, error: BaseException
    ) -> IngestError:
        """Record that a retry of rejected `segment` failed on its rows again,
        and return the error that the retry raises."""
        message = rejection_message(error, dataset, segment, segment)
        retries = read_reason(segment).retries + 1
        logger.error(
            "rejected buffer segment failed again dataset=%s segment=%s "
            "retries=%d error=%s",
            dataset,
            segment,
            retries,
            message,
        )
        _write_reason(segment, error, message, retries)
        with self._lock:
            self._states.setdefault(dataset, _State()).rejection = message
        return IngestError(
            f"retry of rejected segment {segment.name} of dataset {dataset!r} "
            f"failed again, so it stays in {segment.parent}: {message}"
        )


def _accepted(result: IngestResult) -> int:
    """Return the rows of the segment that its version contains.

    A version found unchanged was written by an earlier flush of the same
    segment, so its report contains the count.
    """
    if result.created:
        return result.accepted
    return int(result.version.report.get("accepted", 0))


def _quarantined(result: IngestResult) -> int:
    """Return the rows of the segment's version that were quarantined.

    A version found unchanged was written by an earlier flush of the same
    segment, so its report contains the count.
    """
    if result.created:
        return result.quarantined
    return int(result.version.report.get("quarantined", 0))


def _stored_at(
    catalog: Catalog, dataset: str, segment: Path, destination: Path
) -> DatasetVersion | None:
    """Return the version that stores `segment` under its later path.

    `destination` is that path. Such a version exists when a flush was cut
    short after it committed the version and renamed the segment's source in
    the catalog, but before it moved the file. Only then is the segment
    hashed.
    """
    needle = json.dumps(str(destination.resolve()))
    found = first_row(
        catalog.db.execute(
            "SELECT count(*) FROM dataset_versions WHERE dataset = ? "
            "AND contains(sources_json, ?)",
            [dataset, needle],
        )
    )
    if not found or not found[0]:
        return None
    with segment.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return find_by_sources(catalog, dataset, [digest], [str(destination.resolve())])


def _write_reason(
    segment: Path, error: BaseException, message: str, retries: int
) -> None:
    """Write the reason file of rejected `segment`, logging a failure.

    The segment is kept either way, and the error is in the log.
    """
    try:
        write_reason(segment, error, message, retries)
    except OSError:
        logger.exception("rejection reason not written segment=%s", segment)


def _check_name(dataset: str) -> None:
    problem = dataset_name_problem(dataset)
    if problem is not None:
        raise RequestError(problem, dataset=dataset)
