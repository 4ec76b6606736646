"""The pacer of background loops."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from appliance.pacing import Pacer, lower_priority, pause, thread_ids


def test_pacer_pauses_after_chunk() -> None:
    pacer = Pacer(chunk_seconds=0.001)
    started = time.perf_counter()
    while pacer.pauses < 20 and time.perf_counter() - started < 10.0:
        pacer.tick()
    elapsed = time.perf_counter() - started

    assert pacer.pauses == 20
    assert elapsed >= 0.020


def test_pacer_quiet_within_chunk() -> None:
    pacer = Pacer(chunk_seconds=3600.0)
    for _ in range(1000):
        pacer.tick()

    assert pacer.pauses == 0


def test_pause_releases_gil() -> None:
    """With forced switches off, only a pause lets another thread take the GIL.

    The other thread gives it back right away, after each count."""
    counts = [0]
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            counts[0] += 1
            time.sleep(0)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    worker = threading.Thread(target=count)
    try:
        worker.start()
        before = counts[0]
        deadline = time.perf_counter() + 5.0
        while counts[0] == before and time.perf_counter() < deadline:
            pause()
        progressed = counts[0] - before
    finally:
        stop.set()
        sys.setswitchinterval(interval)
        worker.join()

    assert progressed > 0


def _nice(thread: int) -> int:
    # Field 19 of /proc/self/task/TID/stat, counted after the command name,
    # which ends with the last ")".
    stat = open(f"/proc/self/task/{thread}/stat").read()
    return int(stat.rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_lower_priority_changes_only_given_threads() -> None:
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        own = _nice(threading.get_native_id())
        assert worker.native_id in thread_ids()

        changed = lower_priority([worker.native_id], 5)

        assert changed == 1
        assert _nice(worker.native_id) == min(19, own + 5)
        assert _nice(threading.get_native_id()) == own
    finally:
        release.set()
        worker.join()


def test_lower_priority_skips_ended_threads_and_zero() -> None:
    worker = threading.Thread(target=lambda: None)
    worker.start()
    worker.join()
    assert worker.native_id is not None
    # join() returns before the kernel removes the thread's task entry.
    deadline = time.monotonic() + 10
    while worker.native_id in thread_ids() and time.monotonic() < deadline:
        time.sleep(0.01)

    assert lower_priority([worker.native_id], 5) == 0
    assert lower_priority([threading.get_native_id()], 0) == 0
