"""The pacer of background loops."""

from __future__ import annotations

import sys
import threading
import time

from appliance.pacing import Pacer, pause


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
