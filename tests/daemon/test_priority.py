"""The daemon lowers the priority of its background threads."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest


def _nice(pid: int, thread: int) -> int:
    stat = Path(f"/proc/{pid}/task/{thread}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


def _nice_values(pid: int) -> dict[int, int]:
    threads = [int(p.name) for p in Path(f"/proc/{pid}/task").iterdir()]
    return {thread: _nice(pid, thread) for thread in threads}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_background_threads_run_at_lower_priority(start_daemon: Any) -> None:
    daemon = start_daemon(server={"background_nice": 7})
    pid = daemon.process.pid
    values = _nice_values(pid)
    main = values[pid]
    lowered = [t for t, nice in values.items() if nice == min(19, main + 7)]

    # DuckDB's workers and the log writer, monitoring and ingest threads.
    assert len(lowered) >= 4
    assert pid not in lowered
    assert "background threads lowered by=7" in daemon.log()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_background_priority_off(start_daemon: Any) -> None:
    daemon = start_daemon(server={"background_nice": 0})
    pid = daemon.process.pid
    values = _nice_values(pid)

    assert set(values.values()) == {values[pid]}
