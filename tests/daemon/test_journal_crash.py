"""Acknowledged predictions survive a SIGKILL of the daemon via the journal."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
from daemon_support import MODEL, Daemon, logged_rows, row, run_cli

from appliance.predictions import query
from appliance.storage import Catalog

PREDICT = f"/v1/models/{MODEL}/predict"
REQUESTS = 120
WORKERS = 8
# The writer waits up to a minute for a batch of this size, so before the
# kill no row reaches DuckDB and every logged row comes from the journal.
IDLE_WRITER = {"flush_seconds": 60.0, "batch_rows": 100_000}


def rows_of(index: int) -> list[dict[str, Any]]:
    """Return 1 to 3 rows for request `index`, so row indexes are checked too."""
    return [row(index * 3 + offset) for offset in range(1 + index % 3)]


def send_concurrently(daemon: Daemon, count: int) -> Counter[tuple[str, int]]:
    """Send `count` requests from `WORKERS` threads; return every acknowledged
    ``(request_id, row_index)``."""

    def send(index: int) -> list[tuple[str, int]]:
        with httpx.Client(base_url=daemon.base, timeout=30) as client:
            response = client.post(PREDICT, json={"rows": rows_of(index)})
        assert response.status_code == 200, response.text
        body = response.json()
        return [(body["request_id"], i) for i in range(len(body["predictions"]))]

    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(send, range(count)))
    return Counter(key for keys in results for key in keys)


def journal_files(home: Path) -> list[Path]:
    return sorted((home / "predictions" / "journal").glob("journal-*.bin"))


def test_sigkill_keeps_acknowledged_rows(start_daemon: Any) -> None:
    daemon = start_daemon(predictions=IDLE_WRITER)
    acknowledged = send_concurrently(daemon, REQUESTS)
    daemon.kill()
    assert journal_files(daemon.home)

    restarted = start_daemon()
    assert restarted.stop() == 0
    logged = Counter(logged_rows(daemon.home))
    assert sum(acknowledged.values()) == REQUESTS * 2
    assert max(logged.values()) == 1
    assert logged == acknowledged
    assert "journal segment recovered" in restarted.log()
    assert journal_files(daemon.home) == []


def test_tail_after_sigkill_notes_journal(start_daemon: Any) -> None:
    daemon = start_daemon(predictions=IDLE_WRITER)
    acknowledged = send_concurrently(daemon, 12)
    daemon.kill()

    tailed = run_cli(daemon.config, "predictions", "tail", MODEL)

    assert tailed.returncode == 0, tailed.stderr
    assert sum(acknowledged.values()) == 24
    assert (
        f"note: the prediction journal in {daemon.home / 'predictions' / 'journal'} "
        "contains 24 rows of a daemon that did not stop cleanly"
    ) in tailed.stderr


def test_sigkill_while_writing_no_duplicates(start_daemon: Any) -> None:
    daemon = start_daemon(predictions={"flush_seconds": 0.05, "batch_rows": 7})
    acknowledged = send_concurrently(daemon, REQUESTS)
    daemon.kill()

    restarted = start_daemon()
    assert restarted.stop() == 0
    logged = Counter(logged_rows(daemon.home))
    assert max(logged.values()) == 1
    assert logged == acknowledged


def test_sigkill_keeps_arrow_rows(start_daemon: Any) -> None:
    daemon = start_daemon(predictions=IDLE_WRITER)
    rows = [row(i) for i in range(40)]
    rows[3]["x1"] = None
    sink = pa.BufferOutputStream()
    table = pa.Table.from_pylist(rows)
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    request_ids = []
    with httpx.Client(base_url=daemon.base) as client:
        for _ in range(3):
            response = client.post(
                PREDICT,
                content=sink.getvalue().to_pybytes(),
                headers={"content-type": "application/vnd.apache.arrow.stream"},
            )
            assert response.status_code == 200
            request_ids.append(response.headers["x-request-id"])
    daemon.kill()

    restarted = start_daemon()
    assert restarted.stop() == 0
    with Catalog(daemon.home, read_only=True) as catalog:
        logged = query(catalog, limit=1000)
    assert len(logged) == 120
    assert Counter(r["request_id"] for r in logged) == dict.fromkeys(request_ids, 40)
    first = [r for r in logged if r["request_id"] == request_ids[0]]
    inputs = [
        json.loads(r["input"]) for r in sorted(first, key=lambda r: r["row_index"])
    ]
    assert inputs == rows


def test_cut_journal_record_skipped(start_daemon: Any) -> None:
    daemon = start_daemon(predictions=IDLE_WRITER)
    request_ids = []
    with httpx.Client(base_url=daemon.base) as client:
        for index in range(10):
            response = client.post(PREDICT, json={"rows": [row(index)]})
            assert response.status_code == 200
            request_ids.append(response.json()["request_id"])
    daemon.kill()
    (segment,) = journal_files(daemon.home)
    size = segment.stat().st_size
    with segment.open("r+b") as file:
        file.truncate(size - 5)

    restarted = start_daemon()
    assert restarted.stop() == 0
    logged = [request_id for request_id, _ in logged_rows(daemon.home)]
    assert sorted(logged) == sorted(request_ids[:-1])
    assert "journal ends in a cut record" in restarted.log()
    assert journal_files(daemon.home) == []


def test_clean_stop_leaves_no_journal(start_daemon: Any) -> None:
    daemon = start_daemon(predictions=IDLE_WRITER)
    with httpx.Client(base_url=daemon.base) as client:
        for index in range(5):
            assert client.post(PREDICT, json={"rows": [row(index)]}).status_code == 200
    assert len(journal_files(daemon.home)) == 1
    assert daemon.stop() == 0
    assert journal_files(daemon.home) == []
    assert len(logged_rows(daemon.home)) == 5
