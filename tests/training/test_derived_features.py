"""Derived features: computed by DuckDB at training and again at serving."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from pipeline_support import load_model, native_pipeline, train_on

from appliance.errors import IntegrityError, TrainingError
from appliance.serving import OnnxModel, rows_to_columns

MODEL = """
[models.m]
dataset = "d"
target = "y"
task = "regression"
algorithm = "random_forest"
features = ["a", "hour_of_day", "a_or_zero", "label", "rooms_per_area"]
categorical = ["label"]
params = { n_estimators = 20 }
[models.m.derive]
hour_of_day = "hour(t)"
a_or_zero = "coalesce(a, 0) * 2"
label = "upper(name)"
rooms_per_area = "rooms / area"
"""


ROW = {"a": 1.5, "t": "2024-03-01 10:00:00", "name": "x", "rooms": 2, "area": 40.0}
"""A request row of the columns `MODEL` reads."""


def _data(rows: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    data = pd.DataFrame(
        {
            "a": rng.normal(size=rows),
            "t": pd.date_range("2024-03-01", periods=rows, freq="37min"),
            "name": rng.choice(["x", "y", None], size=rows),
            "rooms": pd.array(rng.integers(1, 6, rows), dtype="Int64"),
            "area": rng.uniform(20, 90, rows),
        }
    )
    data.loc[::7, "a"] = np.nan
    data.loc[::11, "rooms"] = pd.NA
    data["y"] = data["a"].fillna(0) + data["t"].dt.hour / 10
    return data


def test_derived_features_equal_at_training_and_serving(tmp_path):
    data = _data()
    config, result = train_on(tmp_path, data, MODEL)
    model = load_model(config)
    _, frame = native_pipeline(config, "m", data)

    rows = [
        {
            "a": None if pd.isna(r.a) else r.a,
            "t": str(r.t),
            "name": None if pd.isna(r.name) else r.name,
            "rooms": None if pd.isna(r.rooms) else int(r.rooms),
            "area": r.area,
        }
        for r in data.itertuples()
    ]
    columns, _ = rows_to_columns("m", model.request, rows)
    served = model.derived_features(columns)
    with_training = pd.concat([frame.x_train, frame.x_test], ignore_index=True)
    expected = _expected(data)

    assert [c["name"] for c in model.request] == ["a", "area", "name", "rooms", "t"]
    assert sorted(model.derive) == [
        "a_or_zero",
        "hour_of_day",
        "label",
        "rooms_per_area",
    ]
    for name in ["hour_of_day", "a_or_zero", "rooms_per_area"]:
        np.testing.assert_array_equal(served[name], expected[name])
    assert served["label"].tolist() == expected["label"].tolist()
    assert sorted(with_training["hour_of_day"]) == sorted(expected["hour_of_day"])
    assert result.parity <= 1e-5


def _expected(data: pd.DataFrame) -> dict[str, np.ndarray]:
    rooms = data["rooms"].astype("float64").to_numpy()
    return {
        "hour_of_day": data["t"].dt.hour.to_numpy(dtype=np.float64),
        "a_or_zero": data["a"].fillna(0).to_numpy() * 2,
        "rooms_per_area": rooms / data["area"].to_numpy(),
        "label": data["name"].str.upper().fillna("").to_numpy(dtype=object),
    }


def test_derived_feature_served_over_json_matches_native(tmp_path):
    data = _data()
    config, _ = train_on(tmp_path, data, MODEL)
    model = load_model(config)
    pipeline, _ = native_pipeline(config, "m", data)
    row = {"a": None, "t": "2024-03-01 13:30:00", "name": "y", "rooms": 3, "area": 60.0}

    served = model.predict_request([row])[0][0]["value"]
    native = pipeline.predict(
        pd.DataFrame(
            {
                "a": [np.nan],
                "hour_of_day": [13.0],
                "a_or_zero": [0.0],
                "rooms_per_area": [0.05],
                "label": ["Y"],
            }
        )
    )[0]
    assert served == pytest.approx(native, abs=1e-5 * max(1.0, abs(native)))


def test_nullable_integer_column_exports_integer_input(tmp_path):
    data = _data()
    models = MODEL.replace(
        'features = ["a", "hour_of_day", "a_or_zero", "label", "rooms_per_area"]',
        'features = ["rooms", "area"]',
    ).replace('categorical = ["label"]\n', "")
    config, _ = train_on(tmp_path, data, models)
    model = load_model(config)
    assert model.request == [
        {"name": "rooms", "type": "integer", "sql_type": "BIGINT"},
        {"name": "area", "type": "number", "sql_type": "DOUBLE"},
    ]


def test_group_split_keeps_groups_apart(tmp_path):
    data = _data().assign(site=lambda d: np.arange(len(d)) % 10)
    models = MODEL + '[models.m.split]\nmethod = "group"\ncolumn = "site"\n'
    config, result = train_on(tmp_path, data, models)
    assert result.rows_test > 0
    assert result.rows_train + result.rows_test == len(data)
    # Whole groups of 12 rows move together.
    assert result.rows_test % 12 == 0


def test_training_rejects_values_outside_checks(tmp_path):
    data = _data()
    data.loc[5, "area"] = -3.0
    models = MODEL + "[models.m.checks]\narea = { min = 0 }\n"
    models = models.replace('"rooms_per_area"]', '"rooms_per_area", "area"]')
    with pytest.raises(TrainingError, match="feature 'area'.*-3.0 at row"):
        train_on(tmp_path, data, models)


def test_stored_nan_reads_as_missing_in_derived(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from appliance.config import load_config
    from appliance.storage import Catalog, ingest
    from appliance.training import train_model

    data = _data()
    table = pa.Table.from_pandas(data, preserve_index=False)
    stored_nan = pa.array(data["a"].to_numpy(), from_pandas=False)
    table = table.set_column(table.column_names.index("a"), "a", stored_nan)
    assert table.column("a").null_count == 0
    pq.write_table(table, tmp_path / "d.parquet")
    from pipeline_support import write_config

    config = load_config(write_config(tmp_path, MODEL))
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "d", [tmp_path / "d.parquet"])
    train_model(config, "m")
    _, frame = native_pipeline(config, "m", data)
    both = pd.concat([frame.x_train, frame.x_test], ignore_index=True)

    missing = both["a"].isna()
    assert missing.sum() == data["a"].isna().sum()
    assert (both.loc[missing, "a_or_zero"] == 0.0).all()


def test_derived_check_catches_serving_difference(tmp_path, monkeypatch):
    from appliance.errors import ExportError
    from appliance.serving import OnnxModel

    original = OnnxModel.derived_features

    def shifted(self, columns):
        result = original(self, columns)
        result["hour_of_day"] = result["hour_of_day"] + 1.0
        return result

    monkeypatch.setattr(OnnxModel, "derived_features", shifted)
    with pytest.raises(ExportError, match="derived feature 'hour_of_day'"):
        train_on(tmp_path, _data(), MODEL)


def test_derived_features_from_parallel_threads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    config, _ = train_on(tmp_path, _data(), MODEL)
    model = load_model(config)
    row = {"a": 1.5, "t": "2024-03-01 13:30:00", "name": "y", "rooms": 3, "area": 60.0}

    def hour_of_day(offset: int) -> float:
        hour = offset % 24
        columns, _ = rows_to_columns(
            "m", model.request, [{**row, "t": f"2024-03-01 {hour:02d}:30:00"}]
        )
        return float(model.derived_features(columns)["hour_of_day"][0])

    with ThreadPoolExecutor(max_workers=4) as pool:
        hours = list(pool.map(hour_of_day, range(48)))
    assert hours == [float(i % 24) for i in range(48)]


def test_derived_time_zone_fixed_to_utc(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    import time as time_module

    time_module.tzset()
    try:
        data = _data().assign(t=lambda d: d["t"].dt.tz_localize("UTC"))
        config, _ = train_on(tmp_path, data, MODEL)
        model = load_model(config)
        _, frame = native_pipeline(config, "m", data)
        columns, _ = rows_to_columns(
            "m",
            model.request,
            [
                {
                    "a": 1.0,
                    "t": "2024-03-01T02:30:00Z",
                    "name": "x",
                    "rooms": 1,
                    "area": 9.0,
                }
            ],
        )
        served = model.derived_features(columns)
    finally:
        monkeypatch.delenv("TZ")
        time_module.tzset()

    assert model.request[-1] == {
        "name": "t",
        "type": "sql",
        "sql_type": "TIMESTAMP WITH TIME ZONE",
    }
    assert served["hour_of_day"].tolist() == [2.0]
    trained = pd.concat([frame.x_train, frame.x_test])["hour_of_day"]
    assert sorted(trained) == sorted(data["t"].dt.hour.astype(float))


@pytest.mark.parametrize("entry", ["derive", "sql_type"])
def test_schema_sql_with_statement_rejected(tmp_path, entry):
    config, result = train_on(tmp_path, _data(), MODEL)
    model = load_model(config)
    written = tmp_path / "copied.csv"
    schema = copy.deepcopy(model.schema)
    if entry == "derive":
        schema["derive"]["a_or_zero"] = (
            f"1) AS x FROM request_rows); COPY (SELECT 42) TO '{written}'; "
            "SELECT * FROM (SELECT (1"
        )
    else:
        # The last request column's cast ends the query that computes the
        # derived columns, so the text after it runs as statements of its own.
        schema["request"][-1]["sql_type"] = (
            f'TIMESTAMP) AS "t" FROM request_rows)); COPY (SELECT 42) TO '
            f"'{written}'; SELECT * FROM (SELECT * FROM (SELECT CAST(NULL AS "
            "TIMESTAMP"
        )
    onnx_bytes = (result.model_version.path / "model.onnx").read_bytes()

    with pytest.raises(IntegrityError) as raised:
        served = OnnxModel(onnx_bytes, schema)
        served.derived_features(rows_to_columns("m", served.request, [ROW])[0])

    assert "schema of model 'm' version 1" in str(raised.value)
    assert not written.exists()
