"""Missing values of predict inputs, over HTTP and the CLI.

Model ``trips`` reads ``distance`` (DOUBLE), ``hour`` (BIGINT) and
``carrier`` (VARCHAR). Its dataset reads ``n/a`` as missing besides the
default null values, so a CSV file scored by ``appliance predict`` must too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import Daemon, run_appliance, start_daemon, stop_daemon

from appliance.config import load_config
from appliance.storage import Catalog, ingest
from appliance.training import train_model

MODEL = "trips"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
CONFIG = """
[storage]
home = "home"

[datasets.trips]
null_values = ["", "NA", "null", "NULL", "n/a"]

[models.trips]
dataset = "trips"
target = "late"
task = "classification"
algorithm = "lightgbm"

[models.trips.params]
n_estimators = 10
"""
CSV_MISSING = (
    "a CSV file is read with the empty field, 'NA', 'null', 'NULL' and 'n/a' "
    "(the null_values of [datasets.trips]) and the text 'NaN' as missing values"
)


@dataclass(frozen=True)
class TripsHome:
    config_path: Path
    home: Path
    folder: Path


@pytest.fixture(scope="module")
def trips_home(tmp_path_factory: pytest.TempPathFactory) -> TripsHome:
    """Ingest 400 trips and train model ``trips`` on them."""
    folder = tmp_path_factory.mktemp("trips")
    config_path = folder / "config.toml"
    config_path.write_text(CONFIG)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("APPLIANCE_HOME", raising=False)
        patch.delenv("APPLIANCE_CONFIG", raising=False)
        config = load_config(config_path)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "distance": rng.uniform(100, 3000, 400).round(1),
            "hour": rng.integers(0, 24, 400),
            "carrier": rng.choice(["AA", "UA", "DL"], 400),
        }
    )
    frame["late"] = (frame["hour"] > 15).astype(int)
    source = folder / "trips.csv"
    frame.to_csv(source, index=False)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "trips", [source], settings=config.dataset("trips"))
    train_model(config, MODEL)
    return TripsHome(config_path, config.storage.home, folder)


@pytest.fixture(scope="module")
def trips_daemon(
    trips_home: TripsHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    log = tmp_path_factory.mktemp("trips_daemon") / "stderr.log"
    running = start_daemon(trips_home.config_path, trips_home.home, log)
    try:
        yield running
    finally:
        stop_daemon(running)


@pytest.fixture
def client(trips_daemon: Daemon) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=trips_daemon.base_url, trust_env=False, timeout=30.0
    ) as http:
        yield http


def post_json(client: httpx.Client, hour: str, distance: str = "120.5") -> Any:
    """Post two rows, the second with `hour` and `distance` written as raw JSON."""
    body = (
        '{"rows": [{"distance": 300, "hour": 3, "carrier": "AA"}, '
        f'{{"distance": {distance}, "hour": {hour}, "carrier": "UA"}}]}}'
    )
    return client.post(
        f"/v1/models/{MODEL}/predict",
        content=body.encode(),
        headers={"content-type": "application/json"},
    )


def post_arrow(client: httpx.Client, columns: dict[str, pa.Array]) -> Any:
    """Post an Arrow stream of two rows with `columns` over the defaults."""
    table = pa.table(
        {
            "distance": pa.array([300.0, 120.5]),
            "hour": pa.array([3, 4]),
            "carrier": pa.array(["AA", "UA"]),
            **columns,
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return client.post(
        f"/v1/models/{MODEL}/predict",
        content=sink.getvalue().to_pybytes(),
        headers={"content-type": ARROW_STREAM},
    )


def predict_file(home: TripsHome, name: str, text: str) -> Any:
    """Write `text` to a CSV file and score it with ``appliance predict``."""
    source = home.folder / name
    source.write_text(text)
    output = home.folder / f"{source.stem}_scored.csv"
    output.unlink(missing_ok=True)
    result = run_appliance(
        home.config_path, home.home, "predict", MODEL, str(source), str(output)
    )
    return result, source, output


# --- missing values --------------------------------------------------------------


def test_predict_csv_dataset_null_values_missing(trips_home: TripsHome) -> None:
    text = "distance,hour,carrier\n300,3,AA\nnull,4,UA\nNA,NULL,\nn/a,n/a,n/a\n,5,DL\n"

    result, _, output = predict_file(trips_home, "nulls.csv", text)

    assert result.returncode == 0, result.stderr
    assert "scored 5 rows" in result.stdout
    scored = pd.read_csv(output, keep_default_na=False, na_values=[""])
    assert scored["distance"].isna().tolist() == [False, True, True, True, True]
    assert scored["hour"].isna().tolist() == [False, False, True, True, False]
    assert scored["carrier"].isna().tolist() == [False, False, True, True, False]
    assert scored["prediction"].notna().all()


def test_predict_csv_other_text_names_null_values(trips_home: TripsHome) -> None:
    text = "distance,hour,carrier\n300,3,AA\nnull,4,UA\n-,5,UA\n"

    result, source, output = predict_file(trips_home, "dash.csv", text)

    assert result.returncode != 0
    assert (
        f"{source}, line 4, column 'distance' of model '{MODEL}' must be a number "
        f"or null, got '-'; {CSV_MISSING}"
    ) in result.stderr
    assert not output.exists()


def test_explain_csv_dataset_null_values_missing(trips_home: TripsHome) -> None:
    source = trips_home.folder / "explain.csv"
    source.write_text("distance,hour,carrier\n300,3,AA\nn/a,NA,null\n")

    result = run_appliance(
        trips_home.config_path,
        trips_home.home,
        "explain",
        MODEL,
        str(source),
        "--json",
    )

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_predict_parquet_null_text_names_missing(trips_home: TripsHome) -> None:
    source = trips_home.folder / "nulls.parquet"
    table = pa.table(
        {"distance": ["300", "null"], "hour": [3, 4], "carrier": ["AA", "UA"]}
    )
    pq.write_table(table, source)
    output = trips_home.folder / "nulls_scored.parquet"

    result = run_appliance(
        trips_home.config_path,
        trips_home.home,
        "predict",
        MODEL,
        str(source),
        str(output),
    )

    assert result.returncode != 0
    assert (
        f"{source}, row 2, column 'distance' of model '{MODEL}' must be a number "
        "or null, got 'null'; a Parquet file is read with only null and the text "
        "'NaN' as missing values"
    ) in result.stderr


def test_predict_json_null_text_names_missing(client: httpx.Client) -> None:
    response = post_json(client, "4", distance='"NA"')

    assert response.status_code == 422
    body = response.json()
    assert (body["row"], body["column"]) == (1, "distance")
    assert body["error"] == (
        f"row 1, column 'distance' of model '{MODEL}' must be a number or null, "
        "got 'NA'; a JSON request reads only null and the text 'NaN' as missing "
        "values"
    )


def test_predict_arrow_null_text_names_missing(client: httpx.Client) -> None:
    response = post_arrow(client, {"distance": pa.array(["300", "NULL"])})

    assert response.status_code == 422
    body = response.json()
    assert (body["row"], body["column"]) == (1, "distance")
    assert body["error"].endswith(
        "got 'NULL'; an Arrow request reads only null and the text 'NaN' as "
        "missing values"
    )
