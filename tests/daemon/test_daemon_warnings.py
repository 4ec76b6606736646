"""A real daemon serves its routes without a warning from Litestar.

The daemon runs with ``PYTHONWARNINGS=default``, so every warning, the
deprecation warnings included, reaches its log.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from daemon_support import MODEL


def test_daemon_logs_no_litestar_warning(
    start_daemon: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONWARNINGS", "default")
    daemon = start_daemon()

    negative = httpx.get(
        daemon.base + f"/v1/models/{MODEL}/drift", params={"history": -1}
    )
    newest = httpx.get(
        daemon.base + "/v1/predictions",
        params={"model": MODEL, "limit": 1, "newest_first": "true"},
    )
    resolved = httpx.get(
        daemon.base + f"/v1/admin/registry/models/{MODEL}/resolve",
        params={"reference": "1"},
    )
    assert daemon.stop() == 0
    log = daemon.log()

    assert negative.status_code == 400
    assert negative.json()["parameters"] == ["history"]
    assert newest.status_code == 200
    assert newest.json() == {"predictions": []}
    assert resolved.status_code == 200
    assert resolved.json()["version"]["version"] == 1
    assert "LitestarDeprecationWarning" not in log
    assert "LitestarWarning" not in log
