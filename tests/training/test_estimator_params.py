"""Estimator parameters from the config: typos are rejected, not ignored."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pipeline_support import train_on

from appliance.errors import TrainingError

MODEL = """
[models.m]
dataset = "d"
target = "y"
task = "classification"
algorithm = "{algorithm}"

[models.m.params]
{params}
"""
DATA = pd.DataFrame(
    {"x": [float(i % 7) for i in range(60)], "y": [i % 2 for i in range(60)]}
)


def test_lightgbm_typo_names_the_parameter(tmp_path: Path) -> None:
    text = MODEL.format(algorithm="lightgbm", params="n_estimatorz = 5")
    with pytest.raises(TrainingError, match=r"params\.n_estimatorz.*'n_estimators'"):
        train_on(tmp_path, DATA, text)


def test_lightgbm_alias_is_accepted(tmp_path: Path) -> None:
    text = MODEL.format(algorithm="lightgbm", params="num_iterations = 5")
    _, result = train_on(tmp_path, DATA, text)
    assert result.model_version.version == 1


def test_random_forest_unknown_parameter_rejected(tmp_path: Path) -> None:
    text = MODEL.format(algorithm="random_forest", params="n_estimatorz = 5")
    with pytest.raises(TrainingError, match="n_estimatorz"):
        train_on(tmp_path, DATA, text)
