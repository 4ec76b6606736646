"""The prediction log writer: a bounded queue drained by one thread into DuckDB.

Request handlers call `PredictionLog.append`, which never waits for the
database: the entry is written to the write-ahead journal (see `_journal`) and
joins an in-memory queue, or, when the queue already contains ``queue_max_rows``
rows, it is written to an Arrow spill file under ``HOME/predictions/spill/``.
Either write is in the kernel when `append` returns, so a SIGKILL of the
daemon loses no acknowledged prediction. One writer thread inserts queued rows
into the ``predictions`` table in batches, deletes the journal segments whose
rows are all inserted, then loads the spill files back in and deletes them.
When a batch can be neither inserted nor spilled, its journal segments stay,
and the writer inserts their missing rows every `RETRY_SECONDS`.
`PredictionLog.stop` writes everything still queued or spilled before it
returns. `PredictionLog.start` loads what a crash left in spill files and
journal segments.

Input columns that a dataset declares sensitive are encrypted in `append`,
before they are written to the journal, a spill file or the table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from appliance.config import PredictionsConfig
from appliance.crypto import ColumnCipher, encrypt_rows, encrypt_table
from appliance.errors import StorageError
from appliance.pacing import Pacer
from appliance.predictions._expire import expire_rolled, record_expiry
from appliance.predictions._journal import Journal, encode_entry, journal_dir
from appliance.predictions._recover import insert_segment, recover_journal
from appliance.predictions._rows import LogEntry, log_tables
from appliance.predictions._store import (
    LOG_SCHEMA,
    create_table,
    insert_rows,
    remove_rolled,
    roll_over,
)
from appliance.storage import Catalog

logger = logging.getLogger(__name__)

_STOP_PROGRESS_SECONDS = 10.0
RETRY_SECONDS = 10.0
"""Time between attempts to insert the rows of journal segments kept after a
batch could be neither inserted nor spilled."""


class PredictionLog:
    """Background writer of the prediction log.

    Args:
        catalog: The daemon's catalog; the writer uses cursors of its connection.
        config: Queue size, batch size, flush interval and roll-over size.
        sensitive: Input columns to encrypt, and the cipher to encrypt them with.
    """

    def __init__(
        self,
        catalog: Catalog,
        config: PredictionsConfig,
        sensitive: tuple[frozenset[str], ColumnCipher] | None = None,
    ) -> None:
        self.config = config
        self.sensitive = sensitive
        self.home = catalog.home
        self.spill_dir = catalog.home / "predictions" / "spill"
        self._catalog = catalog
        self._queue: deque[tuple[int, LogEntry]] = deque()
        """Queued entries with the sequence of their journal segment."""
        self.journal = Journal(journal_dir(self.home), config.journal_fsync_seconds)
        self._retained = 0
        """Sequence of the oldest journal segment kept because its rows could
        neither be inserted nor spilled; 0 when none is."""
        self._retained_newest = 0
        """Sequence of the newest journal segment kept for the same reason."""
        self.retry_seconds = RETRY_SECONDS
        """Time between attempts to insert the rows of the kept segments."""
        self._retry_at = 0.0
        self._pacer = Pacer()
        self._queued_rows = 0
        self._writing: list[tuple[int, LogEntry]] = []
        """The batch the writer takes out of the queue, until its insert ends."""
        self._wake = threading.Condition()
        self._change_lock = threading.Lock()
        """Held by the writer while it inserts a batch, and by `flushed`."""
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._spill_lock = threading.Lock()
        self._spill_db: duckdb.DuckDBPyConnection | None = None
        self._spill_writer: pa.ipc.RecordBatchStreamWriter | None = None
        self._spill_sink: pa.OSFile | None = None
        self._table_rows = 0
        self.written_rows = 0
        """Rows inserted into DuckDB since the start, spilled rows included."""
        self.spilled_rows = 0
        """Rows written to a spill file because the queue was full."""
        self.lost_rows = 0
        """Rows that could neither be inserted nor spilled; logged as errors, and
        kept in the journal until the writer or the next start inserts them."""
        self.failed_writes = 0
        """Batches that DuckDB rejected and that were spilled to retry later."""

    def unwritten(self, model: str, request_ids: set[str]) -> list[LogEntry]:
        """Return the entries of `request_ids` of `model` not yet in the table.

        These are the queued entries and the batch being inserted. An entry
        leaves this set only after its insert committed, so a reader that calls
        this and then reads the table finds every entry in one or the other.
        NOTE: entries that went to a spill file are in neither until the
        writer loads the file; `has_spilled` returns whether any are waiting.
        """
        with self._wake:
            items = [*self._writing, *self._queue]
        return [
            entry
            for _, entry in items
            if entry.model == model and entry.request_id in request_ids
        ]

    def has_spilled(self) -> bool:
        """Return whether rows wait in a spill file, out of the table's reach."""
        return self._spill_pending()

    @property
    def queued_rows(self) -> int:
        """Rows waiting in memory for the writer."""
        return self._queued_rows

    @property
    def running(self) -> bool:
        """True while the writer thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def thread_id(self) -> int | None:
        """Kernel id of the worker thread while it runs, else None."""
        thread = self._thread
        return thread.native_id if thread is not None and thread.is_alive() else None

    def start(self) -> None:
        """Create the table, load what a crash left and start the writer thread.

        Spill files are loaded before the journal, so that a row in both is
        found in the table and inserted once.
        """
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        self.journal.folder.mkdir(parents=True, exist_ok=True)
        db = self._catalog.db.cursor()
        try:
            create_table(db)
            remove_rolled(db, self.home)
            self._expire_logged(db)
            (self._table_rows,) = db.execute(
                "SELECT count(*) FROM predictions"
            ).fetchall()[0]
            self._catch_up(db)
            if not self._spill_files():
                recovered = recover_journal(db, self.home)
                self.written_rows += recovered
                self._table_rows += recovered
            else:
                logger.warning(
                    "spill files not loaded; journal segments left for the next "
                    "start folder=%s",
                    self.journal.folder,
                )
        finally:
            db.close()
        self._spill_db = self._catalog.db.cursor()
        self._thread = threading.Thread(
            target=self._run, name="prediction-log", daemon=True
        )
        self._thread.start()
        logger.info(
            "prediction log started table_rows=%d spill_files=%d",
            self._table_rows,
            len(self._spill_files()),
        )

    def append(self, entry: LogEntry) -> None:
        """Queue `entry` for the writer, or spill it when the queue is full.

        Never waits for the database. An entry larger than the whole queue is
        still queued when the queue is empty. The entry is in the journal or in
        a spill file when this returns. Encoding an Arrow entry for the journal
        copies its tables, so a caller on an event loop should run the append
        of a large Arrow entry in a worker thread.
        """
        if self.sensitive is not None:
            entry = _encrypted_entry(entry, *self.sensitive)
        rows = entry.rows
        # Encoding outside the lock keeps the writer and other requests from
        # waiting on it. An entry that ends up spilled was encoded for nothing.
        record = encode_entry(entry)
        with self._wake:
            fits = self._queued_rows + rows <= self.config.queue_max_rows
            if (fits or not self._queue) and not self._stopping:
                # The journal write and the queueing share the lock, so the
                # writer never deletes a segment whose entry is not queued yet.
                sequence = self.journal.write(entry, record)
                self._queue.append((sequence, entry))
                self._queued_rows += rows
                if self._queued_rows >= self.config.batch_rows:
                    self._wake.notify()
                return
        self._spill([entry])

    def stop(self) -> None:
        """Write every queued and spilled row, then stop the writer thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            # No deadline here: rows still queued would be lost, so the service
            # manager's stop timeout is the only limit.
            self._thread.join(_STOP_PROGRESS_SECONDS)
            while self._thread.is_alive():
                logger.warning(
                    "prediction log still writing queued_rows=%d; waiting",
                    self._queued_rows,
                )
                self._thread.join(_STOP_PROGRESS_SECONDS)
        self._close_spill()
        # Every queued row is inserted or spilled now, unless a batch was lost.
        self.journal.close(remove=not self._retained and not self._queue)
        if self._spill_db is not None:
            self._spill_db.close()
            self._spill_db = None
        logger.info(
            "prediction log stopped written_rows=%d spilled_rows=%d queued_rows=%d",
            self.written_rows,
            self.spilled_rows,
            self._queued_rows,
        )

    def _run(self) -> None:
        db = self._catalog.db.cursor()
        try:
            while True:
                batch, stopping = self._next_batch()
                with self._change_lock:
                    with self._wake:
                        # An erasure that ran meanwhile inserted the batch.
                        batch = self._writing
                    db, done = self._write_step(db, batch, stopping)
                if done:
                    return
        except BaseException:
            logger.exception("prediction log writer failed")
            raise
        finally:
            db.close()

    def _write_step(
        self,
        db: duckdb.DuckDBPyConnection,
        batch: list[tuple[int, LogEntry]],
        stopping: bool,
    ) -> tuple[duckdb.DuckDBPyConnection, bool]:
        """Insert one batch and do the upkeep after it.

        Returns:
            The cursor to go on with, and whether the writer is done.
        """
        inserted = self._write(db, batch) if batch else True
        with self._wake:
            self._writing = []
        self._release_journal()
        self.journal.sync_if_due()
        self.journal.prepare()
        if not inserted:
            # A failed statement can leave the cursor unusable, so
            # the writer goes on with a new one.
            db.close()
            db = self._catalog.db.cursor()
        elif batch and self._table_rows > self.config.roll_rows:
            self._roll(db)
        elif not batch and self._spill_pending():
            self._catch_up(db)
        if self._retained and (stopping or time.monotonic() >= self._retry_at):
            self._retry_retained()
        if stopping and not batch:
            self._catch_up(db)
            return db, True
        return db, False

    @contextlib.contextmanager
    def flushed(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Write every queued and spilled row, then hold off the writer.

        While the context is open, the ``predictions`` table and its Parquet
        files contain every row appended before it opened, and no journal
        segment or spill file contains any of them. Requests go on being
        served: new entries are journaled and queued, and the writer inserts
        them after the context closes. Yields a cursor of the catalog.

        Raises:
            StorageError: The queued rows or spill files could not be
                written; they stay queued or on disk.
        """
        with self._change_lock:
            db = self._catalog.db.cursor()
            try:
                self._write_pending(db)
                yield db
            finally:
                db.close()

    def _write_pending(self, db: duckdb.DuckDBPyConnection) -> None:
        with self._wake:
            items = [*self._writing, *self._queue]
            self._writing = []
            self._queue.clear()
            self._queued_rows = 0
            self.journal.rotate()
            boundary = self.journal.sequence
        if items and not self._write(db, items):
            raise StorageError(
                "the prediction log could not write its queued rows, so they are "
                "kept in a spill file or the journal; retry when the log is writable"
            )
        if self._retained:
            self._retry_retained()
        if not self._catch_up(db) or self._retained:
            raise StorageError(
                "the prediction log could not load its spill files or journal "
                "segments; retry when the catalog is writable"
            )
        self.journal.release_before(boundary)

    def _release_journal(self) -> None:
        """Delete the journal segments whose entries are all inserted or spilled."""
        with self._wake:
            oldest = self._queue[0][0] if self._queue else self.journal.sequence
        if self._retained:
            oldest = min(oldest, self._retained)
        self.journal.release_before(oldest)

    def _spill_pending(self) -> bool:
        return self._spill_writer is not None or bool(self._spill_files())

    def _next_batch(self) -> tuple[list[tuple[int, LogEntry]], bool]:
        """Wait for a full batch, the flush interval or a stop; take a batch."""
        deadline = time.monotonic() + self.config.flush_seconds
        with self._wake:
            while (
                self._queued_rows < self.config.batch_rows
                and not self._stopping
                and (remaining := deadline - time.monotonic()) > 0
            ):
                self._wake.wait(remaining)
            batch: list[tuple[int, LogEntry]] = []
            rows = 0
            while self._queue and (not batch or rows < self.config.batch_rows):
                item = self._queue.popleft()
                batch.append(item)
                rows += item[1].rows
            self._queued_rows -= rows
            self._writing = batch
            self.journal.rotate_if_due()
            return batch, self._stopping

    def _write(
        self, db: duckdb.DuckDBPyConnection, items: list[tuple[int, LogEntry]]
    ) -> bool:
        """Insert a batch, or spill it when DuckDB fails; return whether it was
        inserted.

        The batch goes in as one transaction of statements of at most
        ``batch_rows`` rows each, so a large Arrow request is converted and
        inserted a slice at a time, and a failure inserts none of its rows.
        """
        batch = [entry for _, entry in items]
        inserted = 0
        try:
            db.begin()
            for table in log_tables(
                batch, db, self.config.batch_rows, tick=self._pacer.tick
            ):
                insert_rows(db, table)
                inserted += table.num_rows
            db.commit()
        except Exception:
            _roll_back(db)
            # A failed batch goes to a spill file, which is retried later, so a
            # transient database error loses nothing.
            self.failed_writes += 1
            logger.exception(
                "prediction log write failed rows=%d; spilling them to retry",
                sum(e.rows for e in batch),
            )
            try:
                self._spill(batch)
            except Exception:
                # The journal keeps the rows, and the next start loads them.
                self.lost_rows += sum(e.rows for e in batch)
                if not self._retained:
                    self._retained = items[0][0]
                    self._retry_at = time.monotonic() + self.retry_seconds
                self._retained_newest = max(self._retained_newest, items[-1][0])
                logger.exception(
                    "prediction log spill failed rows=%d; the journal keeps them, "
                    "and the writer retries them",
                    sum(e.rows for e in batch),
                )
            return False
        self.written_rows += inserted
        self._table_rows += inserted
        return True

    def expire(self) -> int:
        """Delete the rolled files older than ``keep_days``; return how many.

        Holds off the writer and erasures meanwhile, like `flushed`.
        """
        with self._change_lock:
            db = self._catalog.db.cursor()
            try:
                return self._expire(db)
            finally:
                db.close()

    def _expire(self, db: duckdb.DuckDBPyConnection) -> int:
        keep_days = self.config.keep_days
        expired = expire_rolled(db, self.home, keep_days)
        if expired:
            view = self._catalog.cursor()
            try:
                record_expiry(view, expired, keep_days)
            finally:
                view.close()
        return len(expired)

    def _roll(self, db: duckdb.DuckDBPyConnection) -> None:
        try:
            roll_over(db, self.home, self.config.roll_rows)
            (self._table_rows,) = db.execute(
                "SELECT count(*) FROM predictions"
            ).fetchall()[0]
        except Exception:
            # The rows stay in the table, and the next write tries again.
            logger.exception("prediction log roll-over failed; retrying later")
            return
        self._expire_logged(db)

    def _expire_logged(self, db: duckdb.DuckDBPyConnection) -> None:
        try:
            self._expire(db)
        except Exception:
            # The files stay, and the next roll-over or daily job tries again.
            logger.exception("prediction log retention failed; retrying later")

    def _spill(self, entries: list[LogEntry]) -> None:
        rows = sum(entry.rows for entry in entries)
        with self._spill_lock:
            assert self._spill_db is not None, "start the prediction log first"
            if self._spill_writer is None:
                path = self.spill_dir / f"spill-{time.time_ns()}.arrow"
                self._spill_sink = pa.OSFile(str(path), "wb")
                self._spill_writer = pa.ipc.new_stream(self._spill_sink, LOG_SCHEMA)
                logger.warning("prediction log queue full; spilling to file=%s", path)
            for table in log_tables(entries, self._spill_db, self.config.batch_rows):
                self._spill_writer.write_table(table)
            self._spill_sink.flush()
            self.spilled_rows += rows

    def _close_spill(self) -> list[Path]:
        """Close the open spill file and return every closed spill file."""
        with self._spill_lock:
            if self._spill_writer is not None:
                self._spill_writer.close()
                self._spill_sink.close()
                self._spill_writer = None
                self._spill_sink = None
            return self._spill_files()

    def _spill_files(self) -> list[Path]:
        return sorted(self.spill_dir.glob("spill-*.arrow"))

    def _catch_up(self, db: duckdb.DuckDBPyConnection) -> bool:
        """Insert the rows of every closed spill file and delete the file.

        Returns:
            True when every closed spill file was loaded.
        """
        for path in self._close_spill():
            try:
                table = read_spill(path)
                insert_rows(db, table)
            except (duckdb.Error, pa.ArrowException, OSError):
                logger.exception(
                    "spill file catch-up failed file=%s; retrying later", path
                )
                return False
            path.unlink()
            self.written_rows += table.num_rows
            self._table_rows += table.num_rows
            logger.info("spill file loaded file=%s rows=%d", path, table.num_rows)
        if self._table_rows > self.config.roll_rows:
            self._roll(db)
        return True

    def _retry_retained(self) -> None:
        """Insert the missing rows of the journal segments kept after lost batches.

        Spill files are loaded first, because rows of a batch that failed can be
        in a spill file as well as in a kept segment, and `insert_segment` skips
        rows already logged.
        """
        self._retry_at = time.monotonic() + self.retry_seconds
        with self._wake:
            # Segments from this sequence on are open or have queued entries.
            below = self._queue[0][0] if self._queue else self.journal.sequence
        if self._retained_newest >= below:
            return
        paths = self.journal.closed_paths(self._retained, below)
        inserted = 0
        db = self._catalog.db.cursor()
        try:
            if not self._catch_up(db):
                return
            for path in paths:
                inserted += insert_segment(db, self.home, path)
        except (duckdb.Error, pa.ArrowException, OSError):
            logger.exception(
                "journal segment retry failed; retrying in %.0f s", self.retry_seconds
            )
            return
        finally:
            self.written_rows += inserted
            self._table_rows += inserted
            db.close()
        logger.info(
            "journal segments kept after lost batches inserted segments=%d rows=%d",
            len(paths),
            inserted,
        )
        self._retained = self._retained_newest = 0


def _roll_back(db: duckdb.DuckDBPyConnection) -> None:
    """End the open transaction of `db`, if any, without its changes."""
    try:
        db.rollback()
    except duckdb.Error:
        # The failure came before BEGIN or after the transaction ended.
        logger.debug("prediction log rollback found no transaction")


def _encrypted_entry(
    entry: LogEntry, columns: frozenset[str], cipher: ColumnCipher
) -> LogEntry:
    """Return `entry` with the input values of `columns` encrypted."""
    if isinstance(entry.inputs, list):
        if not any(
            isinstance(row, dict) and not columns.isdisjoint(row)
            for row in entry.inputs
        ):
            # Most requests send none of the columns; they are logged as
            # they are, without copying every row.
            return entry
        inputs: list[Any] | pa.Table = encrypt_rows(entry.inputs, columns, cipher)
    else:
        inputs = encrypt_table(entry.inputs, columns, cipher)
    return dataclasses.replace(entry, inputs=inputs)


def read_spill(path: Path) -> pa.Table:
    """Read every complete batch of a spill file, even when the last one is cut."""
    batches = []
    with pa.OSFile(str(path), "rb") as source:
        try:
            reader = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:
            return LOG_SCHEMA.empty_table()
        while True:
            try:
                batches.append(reader.read_next_batch())
            except StopIteration:
                break
            except pa.ArrowInvalid:
                logger.warning("spill file ends in a cut batch file=%s", path)
                break
    return pa.Table.from_batches(batches, LOG_SCHEMA)
