"""The daemon's memory settings: DuckDB limit, malloc arenas and trims, RSS."""

from __future__ import annotations

import asyncio
import ctypes.util
from pathlib import Path
from typing import Any

import duckdb
import pytest

from appliance.config import MonitoringConfig, ServerConfig
from appliance.memory import (
    limit_duckdb,
    limit_malloc_arenas,
    process_memory,
    trim_malloc,
    trim_periodically,
)
from appliance.monitoring import ModelInfo, MonitoringService

GLIBC = ctypes.util.find_library("c") is not None and Path("/proc/self").exists()
INFO = ModelInfo("m", 1, "classification", ("x",), (), (0, 1))


def test_limit_duckdb_sets_memory_limit() -> None:
    db = duckdb.connect()
    limit_duckdb(db, 64)
    cursor = db.cursor()

    (value,) = cursor.execute("SELECT current_setting('memory_limit')").fetchone()

    # DuckDB reads "64MB" as 64 * 1000**2 bytes and shows it in MiB.
    assert value == "61.0 MiB"


def test_limit_duckdb_zero_keeps_default() -> None:
    db = duckdb.connect()
    (default,) = db.execute("SELECT current_setting('memory_limit')").fetchone()

    limit_duckdb(db, 0)

    (value,) = db.execute("SELECT current_setting('memory_limit')").fetchone()
    assert value == default


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_process_memory_reads_proc() -> None:
    memory = process_memory()

    assert set(memory) == {"VmRSS", "RssAnon", "RssFile", "VmHWM"}
    assert memory["VmRSS"] > 1.0
    assert memory["VmHWM"] >= memory["VmRSS"]


def test_process_memory_missing_process_empty() -> None:
    assert process_memory(2**31) == {}


@pytest.mark.skipif(not GLIBC, reason="glibc malloc only")
def test_malloc_arena_limit_and_trim_run() -> None:
    assert limit_malloc_arenas(0) is False
    assert limit_malloc_arenas(8) is True
    assert isinstance(trim_malloc(), bool)


@pytest.mark.skipif(not GLIBC, reason="glibc malloc only")
def test_trim_periodically_runs_and_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance import memory

    calls: list[int] = []
    monkeypatch.setattr(memory, "trim_malloc", lambda: calls.append(1) or True)

    async def run() -> None:
        async with trim_periodically(0.01):
            await asyncio.sleep(0.2)

    asyncio.run(run())

    assert len(calls) >= 2


@pytest.mark.parametrize(
    ("name", "value"),
    [("catalog_memory_mb", -1), ("malloc_arenas", -2), ("malloc_trim_seconds", -0.5)],
)
def test_server_memory_settings_negative_rejected(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"{name} must be 0 or more"):
        ServerConfig(**{name: value})


def test_monitoring_recent_rows_negative_rejected() -> None:
    with pytest.raises(ValueError, match="recent_rows must be 0 or more, got -1"):
        MonitoringConfig(recent_rows=-1)


def test_recent_rows_evicted_go_to_lookup(tmp_path: Path) -> None:
    service = MonitoringService(tmp_path, MonitoringConfig(recent_rows=2))
    for index in range(3):
        output = {"label": 0, "probabilities": {"0": 0.75, "1": 0.25}}
        service.submit(INFO, f"request-{index}", [{"x": 1.0}], [output])
    requested: list[list[str]] = []

    def lookup(model: str, request_ids: list[str]) -> dict:
        requested.append(request_ids)
        return {(rid, 0): (1, [0.75, 0.25], None) for rid in request_ids}

    labels = [{"request_id": f"request-{i}", "row": 0, "label": 0} for i in range(3)]
    result = service.apply_labels(INFO, labels, lookup)

    assert service.recent_rows == 2
    assert requested == [["request-0"]]
    assert result["stored"] == 3


def test_memory_setting_change_needs_restart() -> None:
    import dataclasses

    from appliance._reload_checks import check_reloadable
    from appliance.config import Config
    from appliance.errors import ConfigError

    old = Config(path=Path("config.toml"))
    new = dataclasses.replace(
        old, server=dataclasses.replace(old.server, catalog_memory_mb=128)
    )

    with pytest.raises(ConfigError, match="server.catalog_memory_mb: 0 -> 128;"):
        check_reloadable(old, new)
