"""Wall and CPU time of each step of an ingest, logged at DEBUG.

A line such as ``ingest step dataset=flights step=report wall_ms=80.1
cpu_ms=112.4`` shows where an ingest spends its time. The CPU time is the
whole process's (`time.process_time`), so it includes DuckDB's worker
threads and any other thread of the process, such as the daemon's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)


@contextmanager
def timed_step(dataset: str, step: str) -> Iterator[None]:
    """Log the wall and CPU milliseconds of the enclosed step at DEBUG."""
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "ingest step dataset=%s step=%s wall_ms=%.1f cpu_ms=%.1f",
                dataset,
                step,
                (time.perf_counter() - wall) * 1000,
                (time.process_time() - cpu) * 1000,
            )
