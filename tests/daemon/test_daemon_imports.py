"""The serving daemon runs without the training libraries, pandas, SciPy or River,
also after explaining predictions.

Each of them maps its own shared libraries into a process that imports it, so
``/proc/PID/maps`` of the daemon shows, from outside, whether it was imported.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_support import MODEL, row

MARKERS = {
    "sklearn": "/sklearn/",
    "lightgbm": "/lightgbm/",
    "matplotlib": "/matplotlib/",
    "pandas": "/pandas/",
    "scipy.stats": "/scipy/stats/",
    "scipy.special": "/scipy/special/",
    "river": "/river/",
}
"""Module, and a path part of the shared libraries it loads."""

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps (Linux)"
)


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_markers_detect_an_import() -> None:
    import lightgbm  # noqa: F401
    import matplotlib.pyplot  # noqa: F401
    import pandas  # noqa: F401
    import river._river_rust  # noqa: F401
    import scipy.stats  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    maps = mapped_files(os.getpid())
    for module, marker in MARKERS.items():
        assert marker in maps, f"{module} imported but {marker} not mapped"


def test_daemon_after_predictions_loads_no_training_library(
    start_daemon: Any,
) -> None:
    daemon = start_daemon()
    # 600 rows fill a 500-row window of every drift detector, so the
    # detectors' tests run too.
    rows = [row(i) for i in range(600)]
    response = httpx.post(
        f"{daemon.base}/v1/models/{MODEL}/predict", json={"rows": rows}, timeout=30
    )
    assert response.status_code == 200
    for index in range(20):
        response = httpx.post(
            f"{daemon.base}/v1/models/{MODEL}/predict",
            json={"rows": [row(index)]},
            timeout=30,
        )
        assert response.status_code == 200
    explained = httpx.post(
        f"{daemon.base}/v1/models/{MODEL}/explain",
        json={"rows": rows[:100]},
        timeout=30,
    )
    assert explained.status_code == 200, explained.text
    wait_monitored(daemon.base, 620)

    maps = mapped_files(daemon.process.pid)
    assert "/onnxruntime/" in maps
    for module, marker in MARKERS.items():
        assert marker not in maps, f"the daemon imported {module}"


def wait_monitored(base: str, rows: int) -> None:
    """Wait until the streaming monitors have seen `rows` predicted rows."""
    deadline = time.monotonic() + 30
    seen = 0
    while time.monotonic() < deadline:
        status = httpx.get(f"{base}/v1/models/{MODEL}/drift", timeout=10).json()
        seen = status.get("stream", {}).get("rows", 0)
        if seen >= rows:
            return
        time.sleep(0.1)
    raise AssertionError(f"the monitors saw {seen} rows, expected {rows}")
