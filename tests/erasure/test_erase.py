"""Erasure of a tail number from every place the appliance stores rows.

A home with two versions of flights (the second appended, with quarantined
rows), a plane feature view, a trained model and a prediction log whose rows
are rolled to Parquet or still in the journal after a SIGKILL. Every check
reads real files: the catalog, the lake, the journal and the buffer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from support import load_config_text, run_appliance, start_daemon, stop_daemon

from appliance.storage import Catalog, ingest, list_versions

SUBJECT = "N7EX42Q"
OTHERS = ("N200AA", "N300BB")
CONFIG = """
[storage]
home = "home"

[predictions]
batch_rows = 5
roll_rows = 4
flush_seconds = 60

[ingest]
flush_rows = 100000
flush_seconds = 3600

[feature_views.planes]
sql = "SELECT tailnum, seats FROM planes"
entities = ["tailnum"]

[models.late]
dataset = "flights"
target = "late"
task = "classification"
algorithm = "logistic_regression"
features = ["distance", "seats"]
feature_views = ["planes"]
"""


def write_home(root: Path) -> Path:
    """Ingest flights twice (append), planes, and train ``late``."""
    config = load_config_text(root, CONFIG)
    tails = (SUBJECT, *OTHERS)
    first = ["tailnum,distance,late"]
    for i in range(60):
        first.append(f"{tails[i % 3]},{100 + (i * 37) % 900},{str(i % 2 == 0).lower()}")
    second = [
        "tailnum,distance,late",
        f"{SUBJECT},555,true",
        f"{OTHERS[0]},666,false",
        f"{SUBJECT},777,false",
        f"{SUBJECT},not-a-number,true",
        f"{OTHERS[1]},also-bad,false",
    ]
    files = {
        "first.csv": "\n".join(first) + "\n",
        "second.csv": "\n".join(second) + "\n",
        "planes.csv": f"tailnum,seats\n{SUBJECT},150\n{OTHERS[0]},200\n"
        f"{OTHERS[1]},50\n",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "flights", [root / "first.csv"])
        ingest(catalog, "flights", [root / "second.csv"], "append")
        ingest(catalog, "planes", [root / "planes.csv"])
    result = run_appliance(root / "config.toml", config.storage.home, "train", "late")
    assert result.returncode == 0, result.stderr
    return root / "config.toml"


def erase_cli(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``appliance erase ARGS`` on the home beside `config_path`."""
    return run_appliance(config_path, config_path.parent / "home", "erase", *args)


def files_containing(home: Path, text: str) -> list[Path]:
    """Return every file under `home` whose bytes contain `text`."""
    needle = text.encode()
    return [
        path
        for path in sorted(home.rglob("*"))
        if path.is_file() and needle in path.read_bytes()
    ]


def lake_rows(home: Path, where: str = "true") -> int:
    """Count the rows of the latest flights version that match `where`."""
    with Catalog(home, read_only=True) as catalog:
        from appliance.storage import scan_sql

        latest = list_versions(catalog, "flights")[0]
        sql = f"SELECT count(*) FROM ({scan_sql(latest)}) WHERE {where}"
        return catalog.db.execute(sql).fetchall()[0][0]


def predict(base_url: str, tails: list[str]) -> dict[str, Any]:
    rows = [{"tailnum": tail, "distance": 300 + i} for i, tail in enumerate(tails)]
    response = httpx.post(
        f"{base_url}/v1/models/late/predict",
        json={"rows": rows},
        timeout=30,
        trust_env=False,
    )
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def logged_inputs(home: Path) -> list[dict[str, Any]]:
    """Return every logged input row, from the table and its Parquet files."""
    with Catalog(home, read_only=True) as catalog:
        from appliance.predictions import query

        rows = query(catalog, limit=100_000)
    return [json.loads(row["input"]) for row in rows]


@pytest.fixture(scope="module")
def crashed_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose daemon was killed with rows rolled to Parquet and rows
    still only in the journal."""
    root = tmp_path_factory.mktemp("erase")
    config_path = write_home(root)
    home = root / "home"
    daemon = start_daemon(config_path, home, root / "daemon.log")
    try:
        # Five rows fill a batch, and the table then has more than roll_rows,
        # so they are rolled over to a Parquet file.
        predict(daemon.base_url, [SUBJECT, OTHERS[0], SUBJECT, OTHERS[1], SUBJECT])
        parquet = home / "predictions" / "parquet"
        wait_for(lambda: any(parquet.glob("*.parquet")))
        # Two rows stay queued (below batch_rows) and in the journal.
        predict(daemon.base_url, [SUBJECT, OTHERS[0]])
    finally:
        os.kill(daemon.process.pid, signal.SIGKILL)
        daemon.process.wait(timeout=30)
    return config_path


def test_erase_dry_run_changes_nothing(crashed_home: Path) -> None:
    home = crashed_home.parent / "home"
    before = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    result = erase_cli(
        crashed_home, "flights", "--where", f"tailnum={SUBJECT}", "--dry-run", "--json"
    )
    assert result.returncode == 0, result.stderr
    receipt = json.loads(result.stdout)
    assert receipt["dry_run"] is True
    assert sorted(receipt["removed"]["dataset_versions"].values()) == [2, 20]
    assert receipt["removed"]["quarantine"] == 1
    assert receipt["removed"]["predictions_parquet"] == 2
    assert receipt["removed"]["predictions_table"] == 1
    # The journal may still contain inserted rows too, so a row can be
    # counted in two places. The unwritten request contains one matching row.
    assert receipt["removed"]["predictions_journal"] >= 1
    assert receipt["models"] == ["late v1"]
    after = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    assert after == before
    assert SUBJECT not in result.stdout + result.stderr


def test_erase_unknown_column(crashed_home: Path) -> None:
    result = erase_cli(crashed_home, "flights", "--where", "tail_number=N1")
    assert result.returncode == 1
    assert "column 'tail_number' is not in dataset 'flights'" in result.stderr
    assert "tailnum" in result.stderr


def test_erase_removes_every_copy(crashed_home: Path) -> None:
    home = crashed_home.parent / "home"
    others_before = lake_rows(home, f"tailnum <> '{SUBJECT}'")
    assert files_containing(home, SUBJECT), "the value must be stored before"
    result = erase_cli(
        crashed_home, "flights", "--where", f"tailnum={SUBJECT}", "--json"
    )
    assert result.returncode == 0, result.stderr
    receipt = json.loads(result.stdout)
    removed = receipt["removed"]
    assert sorted(removed["dataset_versions"].values()) == [2, 20]
    assert removed["quarantine"] == 1
    assert removed["predictions_parquet"] == 2
    # One row from the table and one recovered from the journal first.
    assert removed["predictions_table"] == 2
    assert removed["predictions_journal"] >= 1
    assert receipt["total"] == 27
    assert receipt["models"] == ["late v1"]
    assert SUBJECT not in result.stderr
    assert receipt["subject_sha256"] in result.stderr

    # The plane's row is in dataset planes, a place of its own.
    assert [p.name for p in files_containing(home, SUBJECT)] == [
        "catalog.duckdb",
        "data_0.parquet",
    ]
    planes = erase_cli(crashed_home, "planes", "--where", f"tailnum={SUBJECT}")
    assert planes.returncode == 0, planes.stderr
    assert files_containing(home, SUBJECT) == []
    assert lake_rows(home, f"tailnum = '{SUBJECT}'") == 0
    assert lake_rows(home, f"tailnum <> '{SUBJECT}'") == others_before
    inputs = logged_inputs(home)
    assert [row["tailnum"] for row in inputs].count(OTHERS[0]) == 2
    assert len(inputs) == 3
    assert list((home / "predictions" / "journal").glob("*.bin")) == []


def test_erase_recorded_in_versions(crashed_home: Path) -> None:
    home = crashed_home.parent / "home"
    result = run_appliance(crashed_home, home, "datasets", "show", "flights")
    assert result.returncode == 0, result.stderr
    assert "redacted" in result.stdout
    assert "rows_removed=2" in result.stdout
    with Catalog(home, read_only=True) as catalog:
        versions = list_versions(catalog, "flights")
    latest, first = versions
    assert latest.row_count == 63 - 22
    assert first.row_count == 40
    assert latest.report["accepted"] == 1
    assert latest.redactions[0]["rows_removed"] == 2
    assert first.redactions[0]["rows_removed"] == 20
    assert latest.redactions[0]["erasure_id"] == first.redactions[0]["erasure_id"]
    assert all(Path(glob).parent.exists() for glob in latest.files)


def test_erase_recorded_in_audit_log(crashed_home: Path) -> None:
    home = crashed_home.parent / "home"
    result = run_appliance(
        crashed_home, home, "audit", "list", "--action", "dataset.erase", "--json"
    )
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    # The flights erasure, then the planes one of the same tail number.
    assert [(e["target"], e["outcome"]) for e in entries] == [
        ("flights", "ok"),
        ("planes", "ok"),
    ]
    assert [e["details"]["rows"] for e in entries] == [27, 1]
    assert len(entries[0]["details"]["subject_sha256"]) == 64
    assert SUBJECT not in result.stdout


def test_erase_no_match_gives_zeros(crashed_home: Path) -> None:
    result = erase_cli(crashed_home, "flights", "--where", "tailnum=N000NONE", "--json")
    assert result.returncode == 0, result.stderr
    receipt = json.loads(result.stdout)
    assert receipt["total"] == 0
    assert receipt["removed"]["dataset_versions"] == {}
    listed = erase_cli(crashed_home, "--list", "--json")
    receipts = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["total"] for r in receipts] == [0, 1, 27]
    assert SUBJECT not in listed.stdout


def test_training_reads_redacted_version(crashed_home: Path) -> None:
    home = crashed_home.parent / "home"
    result = run_appliance(crashed_home, home, "train", "late")
    assert result.returncode == 0, result.stderr
    with Catalog(home, read_only=True) as catalog:
        latest = list_versions(catalog, "flights")[0]
        (run_version, rows) = catalog.db.execute(
            "SELECT dataset_version, metrics_json FROM runs WHERE model = 'late' "
            "AND model_version = 2"
        ).fetchall()[0]
    assert run_version == latest.version
    schema = json.loads((home / "models" / "late" / "2" / "schema.json").read_text())
    assert schema["rows_train"] + schema["rows_test"] == latest.row_count


def test_erase_while_daemon_serves(tmp_path: Path) -> None:
    config_path = write_home(tmp_path)
    home = tmp_path / "home"
    daemon = start_daemon(config_path, home, tmp_path / "daemon.log")
    client = httpx.Client(base_url=daemon.base_url, trust_env=False, timeout=60)
    try:
        buffered = [
            {"tailnum": t, "distance": 1, "late": False}
            for t in (SUBJECT, OTHERS[0], SUBJECT)
        ]
        response = client.post("/v1/datasets/flights/rows", json={"rows": buffered})
        assert response.status_code == 202, response.text
        first = predict(daemon.base_url, [SUBJECT, OTHERS[0]])
        labels = [
            {"request_id": first["request_id"], "row": i, "label": p["label"]}
            for i, p in enumerate(first["predictions"])
        ]
        feedback = client.post("/v1/models/late/feedback", json={"labels": labels})
        assert feedback.status_code == 200, feedback.text
        seats = client.post(
            "/v1/models/late/predict",
            json={"rows": [{"tailnum": SUBJECT, "distance": 5}]},
        ).json()
        assert "warnings" not in seats

        dry = client.post(
            "/v1/admin/erase",
            json={"dataset": "planes", "keys": {"tailnum": SUBJECT}, "dry_run": True},
        )
        assert dry.status_code == 200, dry.text
        assert dry.json()["receipt"]["removed"]["dataset_versions"] != {}

        sent: list[int] = []
        stop = threading.Event()

        posted: list[int] = []

        def keep_predicting() -> None:
            while not stop.is_set():
                predict(daemon.base_url, [OTHERS[1]])
                sent.append(1)
                row = {"tailnum": OTHERS[1], "distance": 9999, "late": True}
                response = httpx.post(
                    f"{daemon.base_url}/v1/datasets/flights/rows",
                    json={"rows": [row]},
                    trust_env=False,
                )
                assert response.status_code == 202, response.text
                posted.append(1)

        worker = threading.Thread(target=keep_predicting)
        worker.start()
        try:
            flights = client.post(
                "/v1/admin/erase",
                json={"dataset": "flights", "keys": {"tailnum": SUBJECT}},
            )
            planes = client.post(
                "/v1/admin/erase",
                json={"dataset": "planes", "keys": {"tailnum": SUBJECT}},
            )
        finally:
            stop.set()
            worker.join()
        assert flights.status_code == 200, flights.text
        removed = flights.json()["receipt"]["removed"]
        assert removed["buffer"] == 2
        assert removed["predictions_table"] + removed["predictions_parquet"] == 2
        assert removed["labels"] == 1
        assert planes.json()["receipt"]["removed"]["dataset_versions"] != {}

        rows = client.get("/v1/datasets/flights/rows").json()
        assert rows["buffered"] == 1 + len(posted)
        assert len(posted) >= 1
        after = client.post(
            "/v1/models/late/predict",
            json={"rows": [{"tailnum": SUBJECT, "distance": 5}]},
        ).json()
        assert any("planes" in w for w in after.get("warnings", [])), after
        wal = home / "buffer" / "flights" / "wal.jsonl"
        assert SUBJECT not in wal.read_text()
        assert OTHERS[0] in wal.read_text()

        unknown = client.post(
            "/v1/admin/erase",
            json={"dataset": "flights", "keys": {"tail": SUBJECT}},
        )
        assert unknown.status_code == 422, unknown.text
        assert "column 'tail' is not in dataset 'flights'" in unknown.text
        listed = client.get("/v1/admin/erasures", params={"dataset": "flights"})
        assert [r["dataset"] for r in listed.json()["receipts"]] == ["flights"]
        assert SUBJECT not in listed.text
    finally:
        client.close()
        stop_daemon(daemon)
    assert SUBJECT not in (tmp_path / "daemon.log").read_text()
    inputs = logged_inputs(home)
    assert [r["tailnum"] for r in inputs].count(OTHERS[1]) == len(sent)
    # The buffer was flushed at the stop, with every row posted meanwhile.
    assert lake_rows(home, "distance = 9999") == len(posted)
    tails = [r["tailnum"] for r in inputs]
    assert tails.count(SUBJECT) == 1  # sent after the erasure, so it stays
    # The next start compacts the catalog, and the erased bytes go with it.
    assert (home / "catalog.compact").exists()
    daemon = start_daemon(config_path, home, tmp_path / "daemon2.log")
    stop_daemon(daemon)
    assert not (home / "catalog.compact").exists()
    with duckdb.connect(str(home / "catalog.duckdb"), read_only=True) as db:
        (count,) = db.execute("SELECT count(*) FROM erasures").fetchall()[0]
        (labels_left,) = db.execute("SELECT count(*) FROM labels").fetchall()[0]
    assert count == 2
    assert labels_left == 1


def test_erase_output_names_row_copies(tmp_path: Path) -> None:
    config = load_config_text(tmp_path, '[storage]\nhome = "home"\n')
    first, more = tmp_path / "first.csv", tmp_path / "more.csv"
    first.write_text("station,temp\nS2,1.0\nS2,2.0\nS3,3.0\n")
    more.write_text("station,temp\nS2,4.0\nS3,5.0\n")
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "sensor", [first])
        ingest(catalog, "sensor", [more], "append")
    daemon = start_daemon(config.path, config.storage.home, tmp_path / "daemon.log")
    try:
        compact = run_appliance(
            config.path, config.storage.home, "datasets", "compact", "sensor"
        )
        erased = erase_cli(config.path, "sensor", "--where", "station=S2")
        listed = erase_cli(config.path, "--list", "--json")
    finally:
        stop_daemon(daemon)
    with Catalog(config.storage.home, read_only=True) as catalog:
        latest = list_versions(catalog, "sensor")[0].version

    assert compact.returncode == 0, compact.stderr
    assert erased.returncode == 0, erased.stderr
    lines = erased.stdout.splitlines()
    folders = [line for line in lines if "dataset_versions folder version=" in line]
    assert sorted(line.split()[1] for line in folders) == ["1", "2", "3"]
    assert (
        "  total 6 rows: 6 row copies in 3 version folders of the lake, "
        "and 0 rows in the other places"
    ) in lines
    (receipt,) = [json.loads(line) for line in listed.stdout.splitlines()]
    (note,) = [n for n in receipt["notes"] if n.startswith("the latest version")]
    assert f"note: {note}" in lines
    assert note.startswith(f"the latest version sensor@{latest} read 3 of the")
    assert "the 6 rows under dataset_versions count a row once per" in note
    assert receipt["total"] == 6
    assert sorted(receipt["removed"]["dataset_versions"].values()) == [1, 2, 3]
