"""Pacing of background Python work beside the request thread.

The prediction log writer and the streaming monitors run Python code in
threads of the serving process, which on a small box often has one core. A
request that arrives while such a thread runs waits twice: for the GIL, until
the interpreter forces a switch, and then for the core, until the scheduler
runs the request thread. Background loops therefore work in short chunks and
pause between them: `pause` releases the GIL and yields the core, so a waiting
request runs after about one chunk.

On Linux the daemon also lowers the scheduling priority of its background
threads (`lower_priority`), so that the kernel runs a request thread that
wakes up at once instead of letting a background thread finish its time slice.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable

logger = logging.getLogger(__name__)

CHUNK_SECONDS = 0.0002
"""Length of background work after which `Pacer.tick` pauses."""


class Pacer:
    """Pauses a background loop after every `chunk_seconds` of its work.

    The loop calls `tick` after each small unit of work, such as a few rows;
    a unit should take well under `chunk_seconds`.
    """

    def __init__(self, chunk_seconds: float = CHUNK_SECONDS) -> None:
        self.chunk_seconds = chunk_seconds
        self._since = time.perf_counter()
        self.pauses = 0
        """Pauses made so far."""

    def tick(self) -> None:
        """Pause when the work since the last pause took `chunk_seconds`."""
        if time.perf_counter() - self._since >= self.chunk_seconds:
            pause()
            self.pauses += 1
            self._since = time.perf_counter()


def pause() -> None:
    """Release the GIL and let another runnable thread have the core."""
    if _sched_yield is not None:
        _sched_yield()
    else:
        time.sleep(0)


_sched_yield = getattr(os, "sched_yield", None)


def thread_ids() -> set[int]:
    """Return the kernel ids of this process's threads; empty without ``/proc``."""
    try:
        return {int(name) for name in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def lower_priority(threads: Iterable[int], increment: int) -> int:
    """Raise the nice value of each thread of this process in `threads`.

    The new value is the calling thread's nice value plus `increment`, at
    most 19.
    Linux keeps a nice value per thread, so the other threads of the process
    keep theirs. Elsewhere this does nothing, because there the same call
    would change the whole process. A thread that is not (or no longer) one
    of this process is skipped.

    Returns:
        Number of threads changed.
    """
    if increment <= 0 or not sys.platform.startswith("linux"):
        return 0
    nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + increment)
    changed = 0
    for thread in threads:
        # Thread ids and process ids share one number space, so the id of an
        # ended thread may now belong to another process, which is left alone.
        if not os.path.exists(f"/proc/self/task/{thread}"):
            continue
        try:
            os.setpriority(os.PRIO_PROCESS, thread, nice)
        except (ProcessLookupError, PermissionError) as exc:
            logger.debug("priority unchanged thread=%d error=%s", thread, exc)
            continue
        changed += 1
    return changed
