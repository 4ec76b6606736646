"""Large feeds run through onnxruntime in chunks, with the same outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pipeline_support import load_model, train_on

from appliance.serving import _onnx

MODEL = """
[models.m]
dataset = "d"
target = "y"
task = "{task}"
algorithm = "lightgbm"
categorical = ["color"]

[models.m.params]
n_estimators = 20
min_child_samples = 5
"""


def points(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    x = rng.normal(size=rows)
    color = rng.choice(["red", "green", "blue"], size=rows)
    return pd.DataFrame({"x": x, "color": color, "y": x + (color == "red")})


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_chunked_run_matches_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: str
) -> None:
    data = points(400)
    if task == "classification":
        data["y"] = (data["y"] > 0.3).astype(int)
    config, _ = train_on(tmp_path, data, MODEL.format(task=task))
    model = load_model(config)
    feed, _ = model.feed_table(pa.Table.from_pandas(data.drop(columns=["y"])))

    whole = model.run(feed)
    monkeypatch.setattr(_onnx, "RUN_CHUNK_ROWS", 7)
    chunked = model.run(feed)

    assert whole.shape == chunked.shape
    assert whole.shape[0] == 400
    np.testing.assert_array_equal(chunked, whole)
