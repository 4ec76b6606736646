"""Pacing of background Python work beside the request thread.

The prediction log writer and the streaming monitors run Python code in
threads of the serving process, which on a small box often has one core. A
request that arrives while such a thread runs waits twice: for the GIL, until
the interpreter forces a switch, and then for the core, until the scheduler
runs the request thread. Background loops therefore work in short chunks and
pause between them: `pause` releases the GIL and yields the core, so a waiting
request runs after about one chunk.
"""

from __future__ import annotations

import os
import time

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
