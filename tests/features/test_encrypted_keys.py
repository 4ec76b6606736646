"""A feature view keyed by an encrypted column, served by a running daemon.

The tail numbers are stored as AES-SIV ciphertext. A request sends them in
plaintext, and no file under the home contains one afterwards: not the lake,
the catalog, the quarantine, the ingest buffer or the prediction log.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from support import (
    free_port,
    load_config_text,
    run_appliance,
    start_daemon,
    stop_daemon,
)

from appliance.cli._decrypt import decrypt_predictions
from appliance.config import Config
from appliance.crypto import KEY_FILE, column_cipher
from appliance.errors import ColumnKeyError, TrainingError
from appliance.features import FeatureServer
from appliance.predictions import parquet_dir
from appliance.storage import Catalog, ingest
from appliance.training import train_model

CONFIG = """
[storage]
home = "home"

[ingest]
flush_rows = 1

[predictions]
roll_rows = 1
queue_max_rows = 1

[datasets.flights]
sensitive = ["tailnum"]

[datasets.planes]
sensitive = ["tailnum"]

[datasets.planes.contract.columns.tailnum]
type = "VARCHAR"
regex = "^N[0-9]SECRET$"

[feature_views.planes]
sql = "SELECT tailnum, year AS year_built, seats FROM planes"
entities = ["tailnum"]

[models.late]
dataset = "flights"
target = "late"
task = "classification"
algorithm = "random_forest"
features = ["distance", "seats"]
feature_views = ["planes"]

[models.late.params]
n_estimators = 20
"""
TAILS = {"N1SECRET": 150, "N2SECRET": 200, "N3SECRET": 50}
"""Tail numbers with their seats; each tail number is a plaintext to look for."""
BAD_TAIL = "BADTAIL77"
"""A tail number that breaks the contract's regex, posted to be quarantined."""
POSTED_TAIL = "N8SECRET"
FLUSH_TIMEOUT_SECONDS = 30.0


def write_files(folder: Path) -> tuple[Path, Path]:
    tails = list(TAILS)
    flights = ["tailnum,distance,late"]
    for i in range(120):
        late = str(TAILS[tails[i % 3]] > 100 or i % 7 == 0).lower()
        flights.append(f"{tails[i % 3]},{100 + (i * 37) % 900},{late}")
    planes = ["tailnum,year,seats"] + [f"{t},2005,{s}" for t, s in TAILS.items()]
    flights_csv, planes_csv = folder / "flights.csv", folder / "planes.csv"
    flights_csv.write_text("\n".join(flights) + "\n")
    planes_csv.write_text("\n".join(planes) + "\n")
    return flights_csv, planes_csv


def ingest_encrypted(config: Config, dataset: str, path: Path) -> None:
    """Ingest `path` into `dataset` with the configured column key."""
    with Catalog(config.storage.home) as catalog:
        ingest(
            catalog,
            dataset,
            [path],
            settings=config.dataset(dataset),
            cipher=column_cipher(config),
        )


def files_containing(root: Path, texts: list[str]) -> list[str]:
    """Return ``PATH: TEXT`` for every file under `root` whose bytes contain a text."""
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {t}" for t in texts if t.encode() in data]
    return found


def predict(base: str, row: dict) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/models/late/predict", json={"rows": [row]}, trust_env=False
    )


def wait_flushed(base: str, dataset: str, versions: int) -> bool:
    """Wait until `dataset` has `versions` versions."""
    deadline = time.monotonic() + FLUSH_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        listed = httpx.get(f"{base}/v1/admin/datasets", trust_env=False).json()
        found = [v for v in listed["datasets"] if v["dataset"] == dataset]
        if len(found) >= versions:
            return True
        time.sleep(0.2)
    return False


def train_encrypted(tmp_path: Path) -> tuple[Config, Path]:
    """Ingest both datasets encrypted, train model ``late`` and write rows to score.

    Returns the config and the CSV of one row per tail number to score.
    """
    config = load_config_text(tmp_path, CONFIG)
    flights_csv, planes_csv = write_files(tmp_path)
    ingest_encrypted(config, "flights", flights_csv)
    ingest_encrypted(config, "planes", planes_csv)
    train_model(config, "late")
    rows_csv = tmp_path / "rows.csv"
    rows_csv.write_text("tailnum,distance\n" + "".join(f"{t},500\n" for t in TAILS))
    return config, rows_csv


def test_encrypted_key_serves_and_stays_encrypted(tmp_path: Path) -> None:
    config, rows_csv = train_encrypted(tmp_path)
    config_path, home = tmp_path / "config.toml", config.storage.home
    daemon = start_daemon(config_path, home, tmp_path / "daemon.log")
    base = daemon.base_url
    try:
        keys_only = {t: predict(base, {"tailnum": t, "distance": 500}) for t in TAILS}
        given = {
            t: predict(base, {"tailnum": t, "distance": 500, "seats": s})
            for t, s in TAILS.items()
        }
        unknown = predict(base, {"tailnum": "N9SECRET", "distance": 500})
        invalid = predict(base, {"tailnum": ["N8SECRET"], "distance": 500})
        posted = httpx.post(
            f"{base}/v1/datasets/flights/rows",
            json={"rows": [{"tailnum": POSTED_TAIL, "distance": 10, "late": True}]},
            trust_env=False,
        )
        bad = httpx.post(
            f"{base}/v1/datasets/planes/rows",
            json={"rows": [{"tailnum": BAD_TAIL, "year": 2001, "seats": 9}]},
            trust_env=False,
        )
        flushed = wait_flushed(base, "flights", 2) and wait_flushed(base, "planes", 2)
        running = files_containing(home, [*TAILS, POSTED_TAIL, BAD_TAIL])
        scored = tmp_path / "scored.parquet"
        batch = run_appliance(
            config_path, home, "predict", "late", str(rows_csv), str(scored)
        )
        tail = ("predictions", "tail", "late", "-n", "100", "--json")
        served_log = run_appliance(config_path, home, *tail)
        served_plain = run_appliance(config_path, home, *tail, "--decrypt")
    finally:
        stop_daemon(daemon)
    query = ("predictions", "query", "--model", "late", "--limit", "100")
    queried = run_appliance(config_path, home, *query)
    queried_plain = run_appliance(config_path, home, *query, "--decrypt")
    stopped = files_containing(home, [*TAILS, POSTED_TAIL, BAD_TAIL, "N9SECRET"])
    rows = run_appliance(
        config_path, home, "datasets", "rows", "flights", "--decrypt", "--limit", "500"
    )
    quarantine = run_appliance(
        config_path, home, "datasets", "quarantine", "planes", "--decrypt"
    )
    shown = run_appliance(config_path, home, "datasets", "show", "planes")

    for tail in TAILS:
        assert keys_only[tail].status_code == 200, keys_only[tail].text
        assert "warnings" not in keys_only[tail].json(), keys_only[tail].text
        assert (
            keys_only[tail].json()["predictions"] == given[tail].json()["predictions"]
        )
    assert unknown.status_code == 200, unknown.text
    assert invalid.status_code == 422, invalid.text
    assert "N8SECRET" in invalid.json()["error"]
    logged = (tmp_path / "daemon.log").read_text()
    assert "invalid value of sensitive column 'tailnum'" in logged
    assert "N8SECRET" not in logged
    assert "N9SECRET" not in logged
    assert "warnings" in unknown.json(), unknown.text
    assert posted.status_code == 202, posted.text
    assert bad.status_code == 202, bad.text
    assert flushed
    assert batch.returncode == 0, batch.stderr
    scored_rows = pq.read_table(scored).to_pylist()
    assert [row["tailnum"] for row in scored_rows] == list(TAILS)
    for row in scored_rows:
        sent = given[row["tailnum"]].json()["predictions"][0]
        assert row["seats"] == TAILS[row["tailnum"]], row
        assert row["prediction"] == sent["label"], row
    assert list(parquet_dir(home).rglob("*.parquet")), "no rolled prediction log"
    assert running == []
    assert stopped == []
    assert rows.returncode == 0, rows.stderr
    assert POSTED_TAIL in rows.stdout
    assert "N1SECRET" in rows.stdout
    assert quarantine.returncode == 0, quarantine.stderr
    assert BAD_TAIL in quarantine.stdout
    assert shown.returncode == 0, shown.stderr
    assert "encrypted   tailnum (AES-SIV)" in shown.stdout
    assert served_log.returncode == 0, served_log.stderr
    assert served_plain.returncode == 0, served_plain.stderr
    assert queried.returncode == 0, queried.stderr
    assert queried_plain.returncode == 0, queried_plain.stderr
    lines = served_plain.stdout.splitlines()
    decrypted = {json.loads(line)["input"]["tailnum"] for line in lines}
    for tail_number in TAILS:
        assert tail_number not in served_log.stdout
        assert tail_number in decrypted
        assert tail_number not in queried.stdout
        assert tail_number in queried_plain.stdout
    assert "input" in queried_plain.stdout.splitlines()[0]


def test_daemon_start_rejects_other_key(tmp_path: Path) -> None:
    config = load_config_text(tmp_path, CONFIG)
    _, planes_csv = write_files(tmp_path)
    ingest_encrypted(config, "planes", planes_csv)
    key_file = config.storage.home / KEY_FILE
    key_file.write_text(base64.b64encode(bytes(64)).decode())
    config_path, home = tmp_path / "config.toml", config.storage.home

    served = run_appliance(config_path, home, "serve", "--port", str(free_port()))
    rows = run_appliance(config_path, home, "datasets", "rows", "planes", "--decrypt")

    assert served.returncode != 0
    assert "is not the key that encrypted planes@" in served.stderr
    assert rows.returncode != 0
    assert "does not decrypt with the column key" in rows.stderr
    assert "N1SECRET" not in rows.stdout


def test_lost_key_folder_leaves_no_key(tmp_path: Path) -> None:
    config = load_config_text(tmp_path, CONFIG)
    _, planes_csv = write_files(tmp_path)
    ingest_encrypted(config, "planes", planes_csv)
    keys = (config.storage.home / KEY_FILE).parent
    shutil.rmtree(keys)
    config_path, home = tmp_path / "config.toml", config.storage.home

    served = run_appliance(config_path, home, "serve", "--port", str(free_port()))

    assert served.returncode != 0
    assert f"the home's key folder {keys} lost its column key" in served.stderr
    assert "restore" in served.stderr
    assert "Traceback" not in served.stderr
    assert list(keys.iterdir()) == []


def test_setting_change_keeps_plaintext_lookups(tmp_path: Path) -> None:
    plain_text = CONFIG.replace('sensitive = ["tailnum"]', "sensitive = []")
    plain = load_config_text(tmp_path, plain_text)
    flights_csv, planes_csv = write_files(tmp_path)
    with Catalog(plain.storage.home) as catalog:
        ingest(catalog, "flights", [flights_csv])
        ingest(catalog, "planes", [planes_csv])
    config = load_config_text(tmp_path, CONFIG)

    served = FeatureServer(config).fill("late", [{"tailnum": "N1SECRET"}])
    ingest_encrypted(config, "planes", planes_csv)
    with pytest.raises(TrainingError, match=r"which flights@\w+ stores in plaintext"):
        train_model(config, "late")

    assert served[0]["seats"] == 150
    assert served[0]["tailnum"] == "N1SECRET"


def test_batch_predict_rejects_other_key(tmp_path: Path) -> None:
    config, rows_csv = train_encrypted(tmp_path)
    planes_csv = tmp_path / "planes.csv"
    config_path, home = tmp_path / "config.toml", config.storage.home
    (home / KEY_FILE).write_text(base64.b64encode(bytes(64)).decode())

    scored = tmp_path / "scored.parquet"
    batch = run_appliance(
        config_path, home, "predict", "late", str(rows_csv), str(scored)
    )
    ingested = run_appliance(config_path, home, "ingest", "planes", str(planes_csv))

    other_key = "is not the key that encrypted "
    assert batch.returncode != 0
    assert other_key in batch.stderr
    assert "restore that key file or set [security] column_key to it" in batch.stderr
    assert not scored.exists()
    assert ingested.returncode != 0
    assert other_key in ingested.stderr


def logged_row(tmp_path: Path) -> tuple[Config, dict[str, Any]]:
    """Ingest planes encrypted and return the config and a logged row of N1SECRET."""
    config = load_config_text(tmp_path, CONFIG)
    _, planes_csv = write_files(tmp_path)
    ingest_encrypted(config, "planes", planes_csv)
    sealed = column_cipher(config).encrypt_text("N1SECRET")
    return config, {"request_id": "r1", "row_index": 0, "input": {"tailnum": sealed}}


def test_decrypt_predictions_names_plaintext_row(tmp_path: Path) -> None:
    config, row = logged_row(tmp_path)
    rows = [row]
    plain = {"request_id": "r2", "row_index": 3, "input": {"tailnum": "N2SECRET"}}

    decrypt_predictions(config, rows)
    with pytest.raises(ColumnKeyError) as caught:
        decrypt_predictions(config, [plain])

    assert rows[0]["input"] == {"tailnum": "N1SECRET"}
    message = str(caught.value)
    assert "input column 'tailnum' of request r2 (row 3)" in message
    assert "'predictions query --since TIME'" in message
    assert "N2SECRET" not in message


def test_decrypt_predictions_rejects_other_key(tmp_path: Path) -> None:
    config, row = logged_row(tmp_path)
    sealed = row["input"]["tailnum"]
    (config.storage.home / KEY_FILE).write_text(base64.b64encode(bytes(64)).decode())

    with pytest.raises(ColumnKeyError, match="is not the key that encrypted planes@"):
        decrypt_predictions(config, [row])
    assert row["input"] == {"tailnum": sealed}
