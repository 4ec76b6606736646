"""The batch drift check of a model that joins a feature view.

Model ``late`` reads ``temp`` and the view's derived ``temp_f`` from the
weather view, a derived column ``km`` of its own, and filters its rows with
``where``. Its reference must be the rows as training joined them, at the
dataset versions training read. Logged rows copy the training rows, so an
unshifted window drifts nowhere, and 40 degrees added to ``temp`` and
``temp_f`` drift both. The log contains no ``km``, so the check computes it
from the logged ``distance``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from support import (
    WebhookReceiver,
    load_config_text,
    run_appliance,
    start_daemon,
    stop_daemon,
    write_flights_week,
)

from appliance.config import Config
from appliance.monitoring import MonitoringStore, _logged_rows, run_drift_check, run_job
from appliance.predictions import create_table
from appliance.storage import CHAMPION, Catalog, get_version, ingest, set_alias
from appliance.training import sample_trained_rows, train_model

CONFIG = """
[storage]
home = "home"

[monitoring]
min_samples = 20
drift_window_rows = 56

[feature_views.weather]
sql = "SELECT origin, CAST(time_hour AS TIMESTAMPTZ) AS time_hour, temp FROM weather"
entities = ["origin"]
timestamp = "time_hour"

[feature_views.weather.derive]
temp_f = "temp * 1.8 + 32"

[models.late]
dataset = "flights"
target = "late"
task = "classification"
algorithm = "random_forest"
features = ["distance", "km", "temp", "temp_f"]
feature_views = ["weather"]
event_timestamp = "time_hour"
where = "distance > 0"

[models.late.derive]
km = "distance * 1.609"

[models.late.params]
n_estimators = 10
"""
ROWS = 56
"""Rows of `write_flights_week`: seven days of one flight every three hours."""
SHIFT = 40.0
WAIT_SECONDS = 30.0


def _trained(tmp_path: Path, text: str = CONFIG) -> tuple[Config, pd.DataFrame]:
    """Return the config of a trained home and its flights joined with weather."""
    config = load_config_text(tmp_path, text)
    flights_csv, weather_csv = write_flights_week(tmp_path)
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "flights", [flights_csv])
        ingest(catalog, "weather", [weather_csv])
    train_model(config, "late")
    flights = pd.read_csv(flights_csv)
    weather = pd.read_csv(weather_csv)
    rows = flights.merge(weather, on=["origin", "time_hour"])
    rows["temp_f"] = rows["temp"] * 1.8 + 32
    return config, rows


def _request_rows(
    rows: pd.DataFrame, shift: float = 0.0, distance_shift: int = 0
) -> list[dict]:
    """Return the logged input rows of `rows`: the request columns plus the
    view's columns that the daemon fills in, with `shift` added to them and
    `distance_shift` added to ``distance``."""
    return [
        {
            "origin": row.origin,
            "time_hour": row.time_hour,
            "distance": int(row.distance) + distance_shift,
            "temp": float(row.temp) + shift,
            "temp_f": float(row.temp_f) + shift,
        }
        for row in rows.itertuples()
    ]


def _log_inputs(home: Path, rows: list[dict], first_id: int = 0) -> None:
    with Catalog(home) as catalog:
        create_table(catalog.db)
        for i, row in enumerate(rows, start=first_id):
            catalog.db.execute(
                "INSERT INTO predictions (request_id, row_index, model, version, "
                "predicted_at, input, output, latency_ms) "
                "VALUES (?, 0, 'late', 1, now(), ?, '{}', 1.0)",
                [f"r{i}", json.dumps(row)],
            ).fetchall()


def test_check_joins_feature_views(tmp_path: Path) -> None:
    config, rows = _trained(tmp_path)
    home = config.storage.home
    _log_inputs(home, _request_rows(rows))
    same = run_drift_check(config, "late")
    _log_inputs(home, _request_rows(rows, SHIFT), first_id=ROWS)
    shifted = run_drift_check(config, "late")

    assert same.version == 1
    assert same.version_source == "latest"
    assert same.rows == ROWS
    assert same.report is not None
    scores = {f.feature: f for f in same.report.features}
    assert scores["temp"].reference_rows == ROWS
    assert scores["temp"].status == "ok"
    assert scores["temp_f"].status == "ok"
    assert scores["distance"].status == "ok"
    assert scores["km"].status == "ok"
    assert same.report.drifted == []
    assert shifted.report is not None
    assert shifted.report.drifted == ["temp", "temp_f"]
    assert shifted.alert is not None
    assert shifted.alert_opened


def test_check_computes_model_derived(tmp_path: Path) -> None:
    config, rows = _trained(tmp_path)
    home = config.storage.home
    _log_inputs(home, _request_rows(rows, distance_shift=5000))
    check = run_drift_check(config, "late")

    assert check.report is not None
    scores = {f.feature: f for f in check.report.features}
    assert scores["km"].current_rows == ROWS
    assert scores["km"].status == "drift"
    assert check.report.drifted == ["distance", "km"]


def test_check_leaves_out_unfit_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, rows = _trained(tmp_path)
    logged = _request_rows(rows)
    logged[3]["distance"] = 1e20
    _log_inputs(config.storage.home, logged)
    check = run_drift_check(config, "late")

    assert check.report is not None
    scores = {f.feature: f for f in check.report.features}
    assert scores["km"].status == "ok"
    assert scores["km"].current_rows == ROWS - 1
    assert scores["distance"].current_rows == ROWS
    assert check.unfit is not None
    assert check.unfit.rows == 1
    assert check.unfit.first.request_id == "r3"
    assert check.unfit.first.column == "distance"
    assert check.unfit.first.value == 1e20
    assert "unfit_rows=1 request_id=r3 row=0 column=distance" in caplog.text


def test_check_every_row_unfit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, rows = _trained(tmp_path)
    logged = [{**row, "distance": 1e20} for row in _request_rows(rows)]
    _log_inputs(config.storage.home, logged)
    check = run_drift_check(config, "late")
    printed = run_appliance(
        tmp_path / "config.toml", config.storage.home, "drift", "late", "--check"
    )

    assert check.report is not None
    scores = {f.feature: f for f in check.report.features}
    assert scores["km"].status == "insufficient data"
    assert scores["km"].current_rows == 0
    assert scores["temp"].status == "ok"
    assert check.unfit is not None
    assert check.unfit.rows == ROWS
    assert check.unfit.first.request_id == "r0"
    assert check.unfit.first.column == "distance"
    assert check.unfit.first.value == 1e20
    assert "no logged row fits the request types" in caplog.text
    assert printed.returncode == 0, printed.stderr
    assert f"left out: all {ROWS} logged rows" in printed.stdout


def test_check_leaves_out_rows_duckdb_rejects(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # hour() needs time_hour cast to its dataset type, and BIGINT * 1000
    # overflows for a distance above 9.2e15.
    text = CONFIG.replace(
        'features = ["distance", "km", "temp", "temp_f"]',
        'features = ["distance", "km", "hour", "metres", "temp"]',
    ).replace(
        'km = "distance * 1.609"',
        'km = "distance * 1.609"\nhour = "hour(time_hour)"\nmetres = "distance * 1000"',
    )
    config, rows = _trained(tmp_path, text)
    logged = _request_rows(rows)
    logged[10]["time_hour"] = "yesterday"
    logged[20]["distance"] = 10**16
    logged[30]["time_hour"] = "2013-02-30T00:00:00Z"
    _log_inputs(config.storage.home, logged)
    check = run_drift_check(config, "late")

    assert check.report is not None
    scores = {f.feature: f for f in check.report.features}
    assert scores["hour"].current_rows == ROWS - 3
    assert scores["hour"].status == "ok"
    assert scores["metres"].current_rows == ROWS - 3
    assert scores["km"].current_rows == ROWS - 3
    assert check.unfit is not None
    assert check.unfit.rows == 3
    assert check.unfit.first.request_id == "r10"
    assert check.unfit.first.column == "time_hour"
    assert check.unfit.first.value == "yesterday"
    assert "TIMESTAMP" in check.unfit.first.error
    assert "unfit_rows=3 request_id=r10 row=0 column=time_hour" in caplog.text


def test_check_split_queries_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_logged_rows, "SPLIT_QUERIES", 4)
    text = CONFIG.replace(
        'features = ["distance", "km", "temp", "temp_f"]',
        'features = ["distance", "km", "metres", "temp"]',
    ).replace(
        'km = "distance * 1.609"', 'km = "distance * 1.609"\nmetres = "distance * 1000"'
    )
    config, rows = _trained(tmp_path, text)
    logged = _request_rows(rows)
    for index in (10, 20, 30):
        logged[index]["distance"] = 10**16
    _log_inputs(config.storage.home, logged)

    check = run_drift_check(config, "late")

    assert check.report is not None
    assert check.unfit is not None
    assert 3 <= check.unfit.rows < ROWS
    assert "stopped splitting parts after 4 queries" in check.unfit.first.error
    scores = {f.feature: f for f in check.report.features}
    assert scores["metres"].current_rows == ROWS - check.unfit.rows


def test_check_reads_trained_versions(tmp_path: Path) -> None:
    config, rows = _trained(tmp_path)
    home = config.storage.home
    warmer = tmp_path / "warmer.csv"
    weather = pd.read_csv(tmp_path / "weather.csv")
    weather.assign(temp=weather["temp"] + SHIFT).to_csv(warmer, index=False)
    with Catalog(home) as catalog:
        ingest(catalog, "weather", [warmer], "replace")
    _log_inputs(home, _request_rows(rows))

    check = run_drift_check(config, "late")

    assert check.report is not None
    assert check.report.tested == 4
    assert check.report.drifted == []


def test_sample_matches_training_rows(tmp_path: Path) -> None:
    config = load_config_text(tmp_path, CONFIG)
    flights_csv, weather_csv = write_flights_week(tmp_path)
    with flights_csv.open("a") as out:
        out.write("EWR,2013-02-01T01:00:00Z,150,\n")
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "flights", [flights_csv])
        ingest(catalog, "weather", [weather_csv])
    trained = train_model(config, "late")
    schema = json.loads((trained.model_version.path / "schema.json").read_text())
    inputs = (["distance", "km", "temp", "temp_f"], [])
    cfg = config.model("late")

    with Catalog(config.storage.home) as catalog:
        every = sample_trained_rows(
            catalog, cfg, config.feature_views, schema, inputs, 1000
        )
        sample = sample_trained_rows(
            catalog, cfg, config.feature_views, schema, inputs, 10
        )
        again = sample_trained_rows(
            catalog, cfg, config.feature_views, schema, inputs, 10
        )

    assert schema["rows_unlabelled"] == 1
    assert len(every) == schema["rows_train"] + schema["rows_test"]
    assert every["temp"].notna().all()
    assert (every["temp_f"] == every["temp"] * 1.8 + 32).all()
    assert len(sample) == 10
    pd.testing.assert_frame_equal(sample, again)


def test_check_uses_champion_version(tmp_path: Path) -> None:
    config, rows = _trained(tmp_path)
    home = config.storage.home
    train_model(config, "late")
    with Catalog(home) as catalog:
        set_alias(catalog, "late", CHAMPION, 1, "test", "champion")
        challenger = get_version(catalog, "late", 2)
    (challenger.path / "model.onnx").write_bytes(b"damaged")
    _log_inputs(home, _request_rows(rows))

    check = run_drift_check(config, "late")
    printed = run_appliance(tmp_path / "config.toml", home, "drift", "late", "--check")

    assert check.version == 1
    assert check.version_source == "champion"
    assert check.report is not None
    assert check.report.drifted == []
    assert printed.returncode == 0, printed.stderr
    assert "reference: version 1, the champion" in printed.stdout


def test_check_names_latest_without_champion(tmp_path: Path) -> None:
    config, rows = _trained(tmp_path)
    _log_inputs(config.storage.home, _request_rows(rows))

    printed = run_appliance(
        tmp_path / "config.toml", config.storage.home, "drift", "late", "--check"
    )
    as_json = run_appliance(
        tmp_path / "config.toml",
        config.storage.home,
        "drift",
        "late",
        "--check",
        "--json",
    )

    assert printed.returncode == 0, printed.stderr
    assert (
        "reference: version 1, the latest registered version, because no "
        "champion alias is set" in printed.stdout
    )
    assert as_json.returncode == 0, as_json.stderr
    checked = json.loads(as_json.stdout)
    assert checked["version"] == 1
    assert checked["version_source"] == "latest"


def _logged(client: httpx.Client, rows: int) -> bool:
    deadline = time.monotonic() + WAIT_SECONDS
    params = {"model": "late", "limit": 1000}
    while time.monotonic() < deadline:
        found = client.get("/v1/predictions", params=params).json()["predictions"]
        if len(found) >= rows:
            return True
        time.sleep(0.2)
    return False


def test_check_through_daemon_fills_views(tmp_path: Path) -> None:
    config, rows = _trained(tmp_path)
    home = config.storage.home
    path = tmp_path / "config.toml"
    requests = [
        {"origin": r["origin"], "time_hour": r["time_hour"], "distance": r["distance"]}
        for r in _request_rows(rows)
    ]
    daemon = start_daemon(path, home, tmp_path / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            filled = client.post("/v1/models/late/predict", json={"rows": requests})
            logged = _logged(client, ROWS)
            same = run_appliance(path, home, "drift", "late", "--check", "--json")
            warm = client.post(
                "/v1/models/late/predict",
                json={"rows": _request_rows(rows, SHIFT)},
            )
            logged_warm = _logged(client, 2 * ROWS)
            shifted = run_appliance(path, home, "drift", "late", "--check", "--json")
    finally:
        assert stop_daemon(daemon) == 0

    assert filled.status_code == 200, filled.text
    assert warm.status_code == 200, warm.text
    assert logged
    assert logged_warm
    assert same.returncode == 0, same.stderr
    first = json.loads(same.stdout)
    assert first["rows"] == ROWS
    assert first["tested"] == 4
    assert first["drifted"] == []
    assert shifted.returncode == 0, shifted.stderr
    second = json.loads(shifted.stdout)
    assert second["drifted"] == ["temp", "temp_f"]
    assert second["alert_opened"] is True
    assert "drift checked model=late version=1" in daemon.log.read_text()


def test_check_through_daemon_names_unfit_rows(tmp_path: Path) -> None:
    window = CONFIG.replace("drift_window_rows = 56", "drift_window_rows = 60")
    config, rows = _trained(tmp_path, window)
    home = config.storage.home
    path = tmp_path / "config.toml"
    # Rows an older version logged, before the daemon logs ROWS newer ones.
    unfit = _request_rows(rows.head(4))
    unfit[0]["distance"] = "far"
    unfit[1]["distance"] = 1e20
    unfit[2]["temp"] = "warm"
    unfit[3]["distance"] = "far"
    _log_inputs(home, unfit)
    requests = [
        {"origin": r["origin"], "time_hour": r["time_hour"], "distance": r["distance"]}
        for r in _request_rows(rows, distance_shift=5000)
    ]
    daemon = start_daemon(path, home, tmp_path / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            served = client.post("/v1/models/late/predict", json={"rows": requests})
            logged = _logged(client, ROWS + 4)
            checked = run_appliance(path, home, "drift", "late", "--check", "--json")
    finally:
        assert stop_daemon(daemon) == 0

    assert served.status_code == 200, served.text
    assert logged
    assert checked.returncode == 0, checked.stderr
    result = json.loads(checked.stdout)
    scores = {f["feature"]: f for f in result["features"]}
    assert result["rows"] == ROWS + 4
    assert scores["km"]["status"] == "drift"
    assert scores["km"]["current_rows"] == ROWS
    assert scores["distance"]["current_rows"] == ROWS + 2
    assert scores["temp"]["current_rows"] == ROWS + 3
    assert result["drifted"] == ["distance", "km"]
    assert result["unfit_rows"] == 4
    first = result["first_unfit_row"]
    assert first["request_id"] == "r0"
    assert first["row"] == 0
    assert first["column"] == "distance"
    assert first["value"] == "far"
    assert "unfit_rows=4 request_id=r0 row=0 column=distance" in daemon.log.read_text()


def test_failed_scheduled_check_alerts(
    tmp_path: Path, webhook: WebhookReceiver
) -> None:
    settings = f'[monitoring]\nwebhook_url = "{webhook.url}"\nwebhook_retries = 0\n'
    config, rows = _trained(tmp_path, CONFIG.replace("[monitoring]\n", settings))
    home = config.storage.home
    _log_inputs(home, _request_rows(rows))
    with Catalog(home) as catalog:
        onnx = get_version(catalog, "late", 1).path / "model.onnx"
    signed = onnx.read_bytes()
    job = (str(home), "drift:late", 3600.0, "appliance.monitoring._checks:check_drift")
    args = (str(tmp_path / "config.toml"), "late")

    onnx.write_bytes(b"damaged")
    run_job(*job, *args)
    run_job(*job, *args)
    with MonitoringStore(home) as store:
        failed = store.last_job_runs("drift:late")
        (opened,) = [a for a in store.list_alerts() if a.kind == "job"]
    onnx.write_bytes(signed)
    run_job(*job, *args)
    with MonitoringStore(home) as store:
        finished = store.last_job_runs("drift:late")
        resolved = store.get_alert(opened.id)

    assert failed[-1]["outcome"] == "failed"
    assert opened.subject == "drift:late"
    assert opened.severity == "warning"
    assert opened.count == 2
    assert opened.message.startswith("scheduled job drift:late failed: SignatureError")
    assert "appliance drift late --check" in opened.message
    sent = [b for b in webhook.bodies if b["kind"] == "job" and b["status"] == "open"]
    assert [b["id"] for b in sent] == [opened.id]
    assert finished[-1]["outcome"] == "finished"
    assert resolved.status.value == "resolved"
    assert resolved.resolution == (
        "resolved automatically: scheduled job drift:late finished"
    )


def test_check_names_removed_view_dataset(tmp_path: Path) -> None:
    config, rows = _trained(tmp_path)
    home = config.storage.home
    path = tmp_path / "config.toml"
    _log_inputs(home, _request_rows(rows))
    with Catalog(home) as catalog:
        schema = json.loads(
            (get_version(catalog, "late", 1).path / "schema.json").read_text()
        )
    weather = schema["feature_versions"]["weather"]

    removed = run_appliance(
        path, home, "datasets", "remove", "weather", "--ignore-dependents"
    )
    checked = run_appliance(path, home, "drift", "late", "--check")

    assert removed.returncode == 0, removed.stderr
    assert checked.returncode == 1
    assert "Traceback" not in checked.stderr
    assert (
        f"dataset version weather@{weather} that the feature views of model "
        "'late' read at training is not in the catalog" in checked.stderr
    )
    assert "train the model again" in checked.stderr
