"""Resident memory of a started daemon with one model, read from /proc.

The bound is generous on purpose: it fails on a leak or a heavy import
added to the daemon's start, not on allocator noise.
"""

from __future__ import annotations

import ctypes.util
import re
from pathlib import Path
from typing import Any

import pytest

from appliance.memory import process_memory

STARTED_RSS_BOUND_MB = 400
"""Upper bound of the started daemon's resident memory. The daemon of this
test measured about 177 MB on Linux x86_64 with Python 3.11."""

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads /proc/PID/status (Linux)"
)


def test_started_daemon_rss_under_bound(start_daemon: Any) -> None:
    daemon = start_daemon()

    memory = process_memory(daemon.process.pid)

    assert memory["VmRSS"] < STARTED_RSS_BOUND_MB, memory
    logged = re.search(r"daemon ready .* rss_mb=([\d.]+)", daemon.log())
    assert logged is not None, daemon.log()
    assert 0 < float(logged.group(1)) < STARTED_RSS_BOUND_MB


def test_daemon_memory_settings_off_starts(start_daemon: Any) -> None:
    daemon = start_daemon(
        server={"catalog_memory_mb": 0, "malloc_arenas": 0, "malloc_trim_seconds": 0}
    )

    memory = process_memory(daemon.process.pid)

    assert memory["VmRSS"] < STARTED_RSS_BOUND_MB, memory


@pytest.mark.skipif(
    ctypes.util.find_library("c") is None, reason="the system pool needs glibc"
)
def test_daemon_arrow_pool_is_system(start_daemon: Any) -> None:
    daemon = start_daemon()

    logged = re.search(r"daemon ready .* arrow_pool=(\w+)", daemon.log())

    # mimalloc, pyarrow's default, keeps the pages a large Arrow request
    # freed; glibc's heap goes back to the system with the periodic trim.
    assert logged is not None, daemon.log()
    assert logged.group(1) == "system"
