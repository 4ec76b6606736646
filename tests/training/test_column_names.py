"""Column names that skl2onnx would rewrite keep their names as ONNX inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_support import load_model, train_on
from sklearn.datasets import load_wine

MODEL = """
[models.m]
dataset = "d"
target = "target"
task = "classification"
algorithm = "{algorithm}"

[models.m.params]
{params}
"""
PARAMS = {
    "lightgbm": "n_estimators = 10",
    "random_forest": "n_estimators = 10",
    "logistic_regression": "",
}


@pytest.mark.parametrize("algorithm", sorted(PARAMS))
def test_special_column_names_train_and_predict(tmp_path: Path, algorithm: str) -> None:
    data = load_wine(as_frame=True).frame.rename(
        columns={"hue": "hue (ratio)", "proline": "proline mg/L"}
    )
    text = MODEL.format(algorithm=algorithm, params=PARAMS[algorithm])
    config, result = train_on(tmp_path, data, text)
    model = load_model(config)

    names = [spec["name"] for spec in model.inputs]
    assert "od280/od315_of_diluted_wines" in names
    assert "hue (ratio)" in names
    assert "proline mg/L" in names
    assert result.parity <= 1e-5

    rows = data.drop(columns=["target"]).head(3).to_dict(orient="records")
    predictions = model.predict_rows(rows)
    assert len(predictions) == 3
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-6 for p in predictions)
    assert len(set(names)) == len(names)
