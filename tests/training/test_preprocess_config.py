"""Configuration checks of preprocessing, derived features and exportability."""

from __future__ import annotations

import pytest

from appliance.config import load_config
from appliance.errors import ConfigError
from pipeline_support import write_config

BASE = """
[models.m]
dataset = "d"
target = "y"
task = "classification"
algorithm = "lightgbm"
"""


def _load(tmp_path, extra: str):
    return load_config(write_config(tmp_path, BASE + extra))


def test_config_reads_preprocess_settings(tmp_path):
    config = _load(
        tmp_path,
        'features = ["a", "c"]\ncategorical = ["c"]\n[models.m.preprocess]\n'
        'numeric_impute = "constant"\nnumeric_fill = 7\nscale = "minmax"\n'
        'categorical_impute = "constant"\ncategorical_fill = "none given"\n'
        'encoding = "ordinal"\nmin_frequency = 2\n',
    )
    settings = config.model("m").preprocess
    assert settings.numeric_impute == "constant"
    assert settings.numeric_fill == 7.0
    assert settings.scale == "minmax"
    assert settings.categorical_fill == "none given"
    assert settings.encoding == "ordinal"
    assert settings.min_frequency == 2


def test_config_rejects_mean_for_categories(tmp_path):
    with pytest.raises(ConfigError, match="categorical_impute"):
        _load(tmp_path, '[models.m.preprocess]\ncategorical_impute = "mean"\n')


def test_config_rejects_unknown_scaler(tmp_path):
    with pytest.raises(ConfigError, match="models.m.preprocess.scale"):
        _load(tmp_path, '[models.m.preprocess]\nscale = "robust"\n')


def test_config_rejects_empty_categorical_fill(tmp_path):
    with pytest.raises(ConfigError, match="categorical_fill"):
        _load(tmp_path, '[models.m.preprocess]\ncategorical_fill = ""\n')


@pytest.mark.parametrize(
    ("params", "step"),
    [
        ("linear_tree = true", "params.linear_tree"),
        ("zero_as_missing = true", "params.zero_as_missing"),
        ('categorical_feature = "auto"', "params.categorical_feature"),
        ('objective = "cross_entropy"', "params.objective"),
    ],
)
def test_config_rejects_unexportable_lightgbm_params(tmp_path, params, step):
    with pytest.raises(ConfigError, match=step):
        _load(tmp_path, f"[models.m.params]\n{params}\n")


def test_config_accepts_derived_feature(tmp_path):
    config = _load(
        tmp_path,
        'features = ["a", "dep_hour"]\n[models.m.derive]\n'
        'dep_hour = "sched_dep_time // 100"\n',
    )
    assert config.model("m").derive == {"dep_hour": "sched_dep_time // 100"}


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("a - avg(a) OVER ()", "window function"),
        ("sum(a)", "aggregate"),
        ("a + random()", "random"),
        ("date_diff('day', t, now())", "time of the query"),
        ("(SELECT 1)", "subquery"),
        ("a +", "not a valid SQL expression"),
    ],
)
def test_config_rejects_derived_feature_not_row_wise(tmp_path, expression, reason):
    extra = f'features = ["a", "x"]\n[models.m.derive]\nx = "{expression}"\n'
    with pytest.raises(ConfigError, match=reason):
        _load(tmp_path, extra)


def test_config_allows_window_in_derived_target(tmp_path):
    extra = 'features = ["a"]\n[models.m.derive]\ny = "a > avg(a) OVER ()"\n'
    config = _load(tmp_path, extra)
    assert "y" in config.model("m").derive


def test_config_group_split_needs_column(tmp_path):
    with pytest.raises(ConfigError, match="'group' needs 'column'"):
        _load(tmp_path, '[models.m.split]\nmethod = "group"\n')


def test_config_rejects_check_on_categorical(tmp_path):
    extra = (
        'features = ["a", "c"]\ncategorical = ["c"]\n[models.m.checks]\nc = {min = 0}\n'
    )
    with pytest.raises(ConfigError, match="checks.c"):
        _load(tmp_path, extra)
