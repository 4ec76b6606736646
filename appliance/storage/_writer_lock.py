"""One writer of a dataset's versions at a time within a process.

An ingest or a compaction decides what to write from the dataset's latest
version, and names the new version's folder by a hash of its inputs. Two of
them at once, on cursors of one catalog connection as the daemon's workers
use, would both read the same latest version. Two ingests of the same files
would write the same folder, and the one whose COMMIT fails on the duplicate
version would delete the folder that the other one recorded. Two appends of
other files would both name that latest version as their parent, so the
newer one would lack the other's rows. `dataset_writer` makes such writers
of one dataset take turns, so the second one finds the first one's version.

A lock within the process is enough, because DuckDB locks the catalog file:
while a process has it open, other processes cannot open it at all, not
even read-only.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from appliance.storage._catalog import Catalog

logger = logging.getLogger(__name__)

# A lock lives while a writer holds it or waits for it, so a dataset name
# that is only ever rejected leaves no entry behind.
_locks: weakref.WeakValueDictionary[tuple[str, str], threading.RLock] = (
    weakref.WeakValueDictionary()
)
_locks_guard = threading.Lock()


@contextmanager
def dataset_writer(catalog: Catalog, dataset: str) -> Iterator[None]:
    """Hold the writer lock of `dataset` in `catalog`'s file for the block.

    Every catalog object and cursor of one catalog file shares the lock. It
    is reentrant, so a writer may call another writer of the dataset in its
    own thread. A writer waits without a time limit, as long as the writer
    before it runs.
    """
    key = (str(catalog.path.resolve()), dataset)
    with _locks_guard:
        lock = _locks.get(key)
        if lock is None:
            lock = threading.RLock()
            _locks[key] = lock
    if not lock.acquire(blocking=False):
        logger.info("dataset writer waits for another writer dataset=%s", dataset)
        started = time.monotonic()
        lock.acquire()
        logger.info(
            "dataset writer waited dataset=%s wait_s=%.2f",
            dataset,
            time.monotonic() - started,
        )
    try:
        yield
    finally:
        lock.release()
