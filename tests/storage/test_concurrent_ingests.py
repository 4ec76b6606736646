"""Writers of the same version folder at once, on cursors of one connection.

An ingest of the same files, or a compaction of the same chain, computes the
same version id and so the same lake folder. The daemon runs its workers on
cursors of one connection, as these tests do, each in its own thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from support import WriteFile

from appliance.config import DatasetConfig
from appliance.errors import StorageError
from appliance.storage import (
    Catalog,
    DatasetVersion,
    _chain_compaction,
    compact_chain,
    ingest,
    latest_version,
    list_versions,
    scan_sql,
)
from appliance.storage import _ingest as ingest_module
from appliance.storage._lake_write import UNCOMMITTED

# Long enough for a second writer to reach the catalog when nothing stops it.
SECOND_WRITER_WAIT_SECONDS = 2.0
THREAD_TIMEOUT_SECONDS = 60.0


def _parquet_files(version: DatasetVersion) -> list[Path]:
    return sorted(version.path.rglob("*.parquet"))


def _rows(catalog: Catalog, version: DatasetVersion) -> list[tuple[Any, ...]]:
    return catalog.db.execute(f"{scan_sql(version)} ORDER BY ALL").fetchall()


class _RecordOrder:
    """Make the writer named ``first`` commit before ``second`` records.

    `first` waits at its catalog record until `second` reaches its own, or
    for `SECOND_WRITER_WAIT_SECONDS` when something keeps `second` away, so
    `second` has written its rows to the shared folder before `first` commits.
    """

    def __init__(self, record: Callable[..., Any]) -> None:
        self.record = record
        self.first_waits = threading.Event()
        self.second_waits = threading.Event()
        self.first_done = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "first":
            self.first_waits.set()
            self.second_waits.wait(SECOND_WRITER_WAIT_SECONDS)
            try:
                return self.record(*args, **kwargs)
            finally:
                self.first_done.set()
        self.second_waits.set()
        self.first_done.wait(THREAD_TIMEOUT_SECONDS)
        return self.record(*args, **kwargs)


def _run_two(
    catalog: Catalog, order: _RecordOrder, work: Callable[[Catalog], Any]
) -> dict[str, Any]:
    """Run `work` in thread ``first``, then in ``second`` once ``first`` waits.

    Returns:
        The result, or the exception raised, of each thread by name.
    """
    outcomes: dict[str, Any] = {}

    def run(name: str) -> None:
        view = catalog.cursor()
        try:
            outcomes[name] = work(view)
        except Exception as exc:
            outcomes[name] = exc
        finally:
            view.close()

    first = threading.Thread(target=run, args=("first",), name="first")
    first.start()
    assert order.first_waits.wait(THREAD_TIMEOUT_SECONDS)
    second = threading.Thread(target=run, args=("second",), name="second")
    second.start()
    first.join(THREAD_TIMEOUT_SECONDS)
    second.join(THREAD_TIMEOUT_SECONDS)
    assert not first.is_alive()
    assert not second.is_alive()
    return outcomes


def test_same_files_at_once_keep_files(
    catalog: Catalog, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_file("a.csv", "id,km\n1,2.5\n2,4.0\n")
    order = _RecordOrder(ingest_module._record_new)
    monkeypatch.setattr(ingest_module, "_record_new", order)

    outcomes = _run_two(catalog, order, lambda view: ingest(view, "trips", [path]))

    versions = list_versions(catalog, "trips")
    assert len(versions) == 1
    assert _parquet_files(versions[0]) != []
    assert _rows(catalog, versions[0]) == [(1, 2.5), (2, 4.0)]
    first, second = outcomes["first"], outcomes["second"]
    assert not isinstance(first, Exception), first
    assert not isinstance(second, Exception), second
    assert first.created
    assert not second.created
    assert second.version.version == first.version.version


def test_appends_at_once_keep_chain(
    catalog: Catalog, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(catalog, "trips", [write_file("a.csv", "id,km\n1,2.5\n")])
    paths = {
        "first": write_file("b.csv", "id,km\n2,4.0\n"),
        "second": write_file("c.csv", "id,km\n3,6.0\n"),
    }
    order = _RecordOrder(ingest_module._record_new)
    monkeypatch.setattr(ingest_module, "_record_new", order)

    def append(view: Catalog) -> Any:
        name = threading.current_thread().name
        return ingest(view, "trips", [paths[name]], "append")

    outcomes = _run_two(catalog, order, append)

    assert not isinstance(outcomes["first"], Exception), outcomes["first"]
    assert not isinstance(outcomes["second"], Exception), outcomes["second"]
    latest = latest_version(catalog, "trips")
    assert latest is not None
    # Each append reads its parent's rows, so the latest has all three.
    assert _rows(catalog, latest) == [(1, 2.5), (2, 4.0), (3, 6.0)]


def test_compactions_at_once_keep_files(
    catalog: Catalog, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(catalog, "trips", [write_file("a.csv", "id,km\n1,2.5\n")])
    ingest(catalog, "trips", [write_file("b.csv", "id,km\n2,4.0\n")], "append")
    settings = DatasetConfig(name="trips")
    order = _RecordOrder(_chain_compaction._record)
    monkeypatch.setattr(_chain_compaction, "_record", order)

    outcomes = _run_two(catalog, order, lambda view: compact_chain(view, settings))

    latest = latest_version(catalog, "trips")
    assert latest is not None
    assert latest.report.get(_chain_compaction.COMPACTED) is not None
    assert _parquet_files(latest) != []
    assert _rows(catalog, latest) == [(1, 2.5), (2, 4.0)]
    first, second = outcomes["first"], outcomes["second"]
    assert not isinstance(first, Exception), first
    assert not isinstance(second, Exception), second
    assert first.created
    assert not second.created


def test_failed_record_keeps_folder_read_by_version(
    catalog: Catalog, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version that retention removed keeps its folder while an append
    version reads it. A replace of its files that fails to record writes to
    that folder, and must leave it."""
    settings = DatasetConfig(name="trips", keep_versions=1)
    a = write_file("a.csv", "id,km\n1,2.5\n")
    first = ingest(catalog, "trips", [a], settings=settings)
    second = ingest(
        catalog, "trips", [write_file("b.csv", "id,km\n2,4.0\n")], "append", settings
    )
    assert second.removed == [first.version.version]

    def disk_full(*args: object) -> None:
        raise duckdb.IOException("No space left on device")

    monkeypatch.setattr(ingest_module, "record_version", disk_full)
    with pytest.raises(StorageError, match="No space left on device"):
        ingest(catalog, "trips", [a], settings=settings)

    assert _parquet_files(first.version) != []
    assert not (first.version.path / UNCOMMITTED).exists()
    assert _rows(catalog, second.version) == [(1, 2.5), (2, 4.0)]
