"""The daemon's memory: allocator settings, DuckDB limits and resident size.

The daemon is meant for small boxes, so it can bound what grows with
traffic: the catalog connection's DuckDB buffers (``[server]
catalog_memory_mb``, off by default) and glibc's per-thread malloc arenas
(``[server] malloc_arenas``). It also hands freed heap memory back to the
system (``[server] malloc_trim_seconds``), and makes pyarrow allocate from
that heap too, so the trim covers Arrow buffers.
Every function is a no-op where its facility is missing (no glibc, no
``/proc``), so the daemon runs the same elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_M_ARENA_MAX = -8
"""``mallopt`` parameter number of ``M_ARENA_MAX`` in glibc's ``malloc.h``."""
_STATUS_FIELDS = ("VmRSS", "RssAnon", "RssFile", "VmHWM")


def _glibc() -> Any | None:
    """Return the C library when it is glibc, else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()


def limit_malloc_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas at `count` for threads that start from now on.

    glibc gives each thread that allocates its own arena, up to 8 per CPU,
    and each arena keeps its freed memory. Call this before the daemon starts
    its threads. 0 leaves glibc's default.

    Returns:
        True when the cap was set.
    """
    if count <= 0 or _LIBC is None:
        return False
    done = bool(_LIBC.mallopt(_M_ARENA_MAX, count))
    logger.debug("malloc arenas limited count=%d done=%s", count, done)
    return done


def trim_malloc() -> bool:
    """Return freed glibc heap memory at the top of each arena to the system.

    Returns:
        True when glibc released some memory.
    """
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))


def use_system_arrow_pool() -> bool:
    """Make pyarrow allocate from glibc's heap instead of its bundled mimalloc.

    mimalloc keeps the pages that worker threads have freed, and neither
    ``malloc_trim`` nor ``MemoryPool.release_unused`` returns them. After a
    300,000-row Arrow predict request the daemon stayed about 250 MB larger
    with mimalloc (pyarrow 26.0.1, see "Notes: memory" in
    docs/benchmarks.md). glibc's heap goes back to the system with the
    periodic trim. Call this before pyarrow's first allocation.

    Returns:
        True when pyarrow's default pool is now the system allocator; False
        without glibc, where the default pool stays.
    """
    if _LIBC is None:
        return False
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    return True


def limit_duckdb(db: Any, memory_mb: int) -> None:
    """Set DuckDB's ``memory_limit`` of the database behind connection `db`.

    The limit belongs to the database, so it covers every cursor of `db`.
    0 leaves DuckDB's default, 80% of the machine's RAM.
    """
    if memory_mb > 0:
        db.execute(f"SET memory_limit = '{int(memory_mb)}MB'")


def process_memory(pid: int | str = "self") -> dict[str, float]:
    """Return the resident memory of a process from ``/proc/PID/status``, in MB.

    Keys: ``VmRSS`` (resident), ``RssAnon`` (anonymous, such as heaps),
    ``RssFile`` (mapped files, such as shared libraries) and ``VmHWM`` (peak
    resident). Empty where ``/proc`` is missing.
    """
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    found = re.findall(r"^(\w+):\s+(\d+) kB$", text, re.MULTILINE)
    return {key: int(kb) / 1024 for key, kb in found if key in _STATUS_FIELDS}


@contextlib.asynccontextmanager
async def trim_periodically(seconds: float) -> AsyncIterator[None]:
    """Run `trim_malloc` every `seconds` in a worker thread until the exit.

    A trim walks every arena under its lock, so it runs off the event loop.
    """
    if seconds <= 0 or _LIBC is None:
        yield
        return

    async def loop() -> None:
        while True:
            await asyncio.sleep(seconds)
            before = process_memory().get("VmRSS", 0.0)
            released = await asyncio.to_thread(trim_malloc)
            logger.debug(
                "malloc trimmed released=%s rss_mb_before=%.1f rss_mb=%.1f",
                released,
                before,
                process_memory().get("VmRSS", 0.0),
            )

    task = asyncio.create_task(loop(), name="malloc-trim")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
