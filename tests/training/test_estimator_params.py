"""Estimator parameters from the config: typos are rejected, not ignored.

The config rejects what its table covers when it loads, and training checks
the rest with the libraries themselves.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pipeline_support import train_on

from appliance._param_checks import LIGHTGBM_UNUSED
from appliance._param_table import LIGHTGBM_PARAMS
from appliance.errors import ConfigError, TrainingError

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
    with pytest.raises(ConfigError) as raised:
        train_on(tmp_path, DATA, text)
    message = str(raised.value)
    assert (
        ": [models.m.params] n_estimatorz is not a parameter of LGBMClassifier; "
        "did you mean 'n_estimators'? known parameters (LightGBM also takes their "
        "aliases): "
    ) in message
    assert ", num_leaves, " in message
    assert ", lambda_l1, " in message


def test_lightgbm_unknown_name_rejected(tmp_path: Path) -> None:
    text = MODEL.format(algorithm="lightgbm", params="bogus_param = 3")
    with pytest.raises(ConfigError) as raised:
        train_on(tmp_path, DATA, text)
    message = str(raised.value)
    assert (
        ": [models.m.params] bogus_param is not a parameter of LGBMClassifier; "
        "known parameters (LightGBM also takes their aliases): "
    ) in message
    assert "did you mean" not in message


def test_lightgbm_typo_suggests_main_name(tmp_path: Path) -> None:
    # The alias num_leaf is closer to num_leafs than num_leaves is.
    text = MODEL.format(algorithm="lightgbm", params="num_leafs = 7")
    with pytest.raises(ConfigError) as raised:
        train_on(tmp_path, DATA, text)
    assert "num_leafs is not a parameter of LGBMClassifier; did you mean " in str(
        raised.value
    )
    assert "did you mean 'num_leaves'? " in str(raised.value)


def test_model_key_below_params_hinted(tmp_path: Path) -> None:
    for line in ('event_timestamp = "t"', 'task = "classification"'):
        key = line.split(" ")[0]
        text = MODEL.format(algorithm="lightgbm", params=line)
        with pytest.raises(ConfigError) as raised:
            train_on(tmp_path, DATA, text)
        assert (
            f": [models.m.params] {key} is not a parameter of LGBMClassifier but a "
            "key of [models.m]: TOML puts every key below the [models.m.params] "
            f"header into that table, so move {key} above the header"
        ) in str(raised.value)


def test_command_line_names_left_out(tmp_path: Path) -> None:
    text = MODEL.format(algorithm="lightgbm", params="bogus_param = 3")
    with pytest.raises(ConfigError) as raised:
        train_on(tmp_path, DATA, text)
    listed = str(raised.value).split("known parameters")[1]
    for name in ("config", "data", "machines", "output_model", "header"):
        assert f" {name}," not in listed
        assert not listed.endswith(f" {name}")
    assert ", num_leaves, " in listed


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('output_model = "m.txt"', "only LightGBM's command-line program reads it"),
        ('model_out = "m.txt"', "only LightGBM's command-line program reads it"),
        ("header = true", "LightGBM reads it only when it loads the data from a file"),
        ('machines = "a:1,b:2"', "it sets up LightGBM's training on several machines"),
    ],
)
def test_command_line_name_rejected(tmp_path: Path, line: str, reason: str) -> None:
    key = line.split(" ")[0]
    text = MODEL.format(algorithm="lightgbm", params=line)
    with pytest.raises(ConfigError) as raised:
        train_on(tmp_path, DATA, text)
    assert (
        f": [models.m.params] {key} is a LightGBM parameter that the appliance "
        f"cannot use: {reason}; remove it"
    ) in str(raised.value)


def test_unused_names_are_lightgbm_params() -> None:
    assert set(LIGHTGBM_UNUSED) <= set(LIGHTGBM_PARAMS)


@pytest.mark.parametrize(
    ("algorithm", "params", "expected"),
    [
        (
            "lightgbm",
            "num_leaves = -5",
            "[models.m.params] num_leaves = -5 is invalid for lightgbm: it must be "
            "an integer in the range (1, 131072]; fix the value in the config file",
        ),
        (
            "lightgbm",
            'learning_rate = "fast"',
            "[models.m.params] learning_rate = 'fast' is invalid for lightgbm: it "
            "must be a number in the range (0, inf); fix the value in the config file",
        ),
        (
            "lightgbm",
            "num_trees = 0",
            "[models.m.params] num_trees = 0 is invalid for lightgbm: it must be an "
            "integer in the range (0, inf); fix the value in the config file",
        ),
        (
            "lightgbm",
            'min_child_samples = "x"',
            "[models.m.params] min_child_samples = 'x' is invalid for lightgbm: it "
            "must be an integer in the range [0, inf); fix the value in the config "
            "file",
        ),
        (
            "random_forest",
            "n_estimators = -5",
            "[models.m.params] n_estimators = -5 is invalid for random_forest: it "
            "must be an integer in the range [1, inf); fix the value in the config "
            "file",
        ),
        (
            "logistic_regression",
            "C = -1",
            "[models.m.params] C = -1 is invalid for logistic_regression: it must "
            "be a number in the range (0, inf); fix the value in the config file",
        ),
    ],
)
def test_invalid_value_names_key_and_value(
    tmp_path: Path, algorithm: str, params: str, expected: str
) -> None:
    text = MODEL.format(algorithm=algorithm, params=params)
    with pytest.raises(ConfigError) as raised:
        train_on(tmp_path, DATA, text)
    assert str(raised.value).endswith(f"config.toml: {expected}")


def test_unlisted_lightgbm_value_checked_by_training(tmp_path: Path) -> None:
    # The config has no rule for top_rate, so LightGBM's own check rejects it.
    text = MODEL.format(algorithm="lightgbm", params="top_rate = 2.0")
    with pytest.raises(TrainingError) as raised:
        train_on(tmp_path, DATA, text)
    assert str(raised.value) == (
        "[models.m.params] top_rate = 2.0 is invalid for lightgbm: Check failed: "
        "(top_rate) <= (1.0); fix the value in the config file"
    )


@pytest.mark.parametrize(
    ("algorithm", "params"),
    [
        ("lightgbm", "num_leaves = 7\nlearning_rate = 0.2\nn_estimators = 5"),
        ("lightgbm", "lambda_l2 = 0.5\nn_estimators = 5"),
        ("lightgbm", "monotone_constraints = [1]\nn_estimators = 5"),
        ("random_forest", 'n_estimators = 5\nmax_features = "sqrt"'),
    ],
)
def test_valid_values_train(tmp_path: Path, algorithm: str, params: str) -> None:
    text = MODEL.format(algorithm=algorithm, params=params)
    _, result = train_on(tmp_path, DATA, text)
    assert result.model_version.version == 1


def test_lightgbm_alias_is_accepted(tmp_path: Path) -> None:
    text = MODEL.format(algorithm="lightgbm", params="num_iterations = 5")
    _, result = train_on(tmp_path, DATA, text)
    assert result.model_version.version == 1


def test_random_forest_unknown_parameter_rejected(tmp_path: Path) -> None:
    text = MODEL.format(algorithm="random_forest", params="n_estimatorz = 5")
    with pytest.raises(ConfigError) as raised:
        train_on(tmp_path, DATA, text)
    assert str(raised.value).endswith(
        "config.toml: [models.m.params] n_estimatorz is not a parameter of "
        "RandomForestClassifier; did you mean 'n_estimators'? known parameters: "
        "bootstrap, ccp_alpha, class_weight, criterion, max_depth, max_features, "
        "max_leaf_nodes, max_samples, min_impurity_decrease, min_samples_leaf, "
        "min_samples_split, min_weight_fraction_leaf, monotonic_cst, n_estimators, "
        "n_jobs, oob_score, random_state, verbose, warm_start"
    )


def test_lightgbm_list_value_checked_by_fit(tmp_path: Path) -> None:
    text = MODEL.format(algorithm="lightgbm", params="monotone_constraints = [1, 1, 1]")
    with pytest.raises(TrainingError, match="^fitting model 'm' failed: "):
        train_on(tmp_path, DATA, text)


@pytest.mark.parametrize("key", ["n_estimators", "num_iterations"])
def test_rounds_probe_fits_one_round(key: str) -> None:
    import time

    from lightgbm import LGBMClassifier

    from appliance.config import ModelConfig
    from appliance.training._params import check_params

    cfg = ModelConfig(
        name="m",
        dataset="d",
        target="y",
        task="classification",
        algorithm="lightgbm",
        params={key: 1_000_000},
    )
    started = time.perf_counter()

    check_params(cfg, LGBMClassifier, {key: 1_000_000}, 2)

    # A million rounds on the probe's 20 rows would take minutes.
    assert time.perf_counter() - started < 5.0


@pytest.mark.parametrize(
    ("algorithm", "space", "expected"),
    [
        (
            "lightgbm",
            "num_leaves = [7, 1]",
            "[models.m.search.space] num_leaves = 1 is invalid for lightgbm: it "
            "must be an integer in the range (1, 131072]; fix the value in the "
            "config file",
        ),
        (
            "lightgbm",
            "learning_rate = {low = 0.0, high = 0.3}",
            "[models.m.search.space] learning_rate = 0.0 is invalid for lightgbm: "
            "it must be a number in the range (0, inf); fix the value in the "
            "config file",
        ),
        (
            "random_forest",
            "max_depht = [3, 5]",
            "[models.m.search.space] max_depht is not a parameter of "
            "RandomForestClassifier; did you mean 'max_depth'? known parameters: ",
        ),
        (
            "logistic_regression",
            "C = {low = 0.0, high = 1.0}",
            "[models.m.search.space] C = 0.0 is invalid for logistic_regression: "
            "it must be a number in the range (0, inf)",
        ),
    ],
)
def test_search_space_checked_at_load(
    tmp_path: Path, algorithm: str, space: str, expected: str
) -> None:
    text = MODEL.format(algorithm=algorithm, params="")
    text += f'[models.m.search]\nmethod = "random"\n[models.m.search.space]\n{space}\n'

    with pytest.raises(ConfigError) as raised:
        train_on(tmp_path, DATA, text)

    assert expected in str(raised.value)
    assert not (tmp_path / "home" / "catalog.duckdb").exists()


def test_valid_search_space_loads(tmp_path: Path) -> None:
    from pipeline_support import write_config

    from appliance.config import load_config

    space = "num_leaves = [3, 7]\nlearning_rate = {low = 0.01, high = 0.3, log = true}"
    text = MODEL.format(algorithm="lightgbm", params="")
    text += f'[models.m.search]\nmethod = "random"\n[models.m.search.space]\n{space}\n'

    config = load_config(write_config(tmp_path, text))

    assert config.model("m").search is not None
