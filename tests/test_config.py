"""Configuration loading: schema errors naming key and file, and the home folder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from support import model_table

from appliance.config import load_config
from appliance.errors import ConfigError

MODEL = model_table("flights", "late", "classification", "lightgbm")


def write_toml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def with_model(**changes: Any) -> dict[str, dict[str, Any]]:
    """Return ``{"m": MODEL}`` with keys changed, or removed when set to None."""
    table = {**MODEL, **changes}
    return {"m": {k: v for k, v in table.items() if v is not None}}


def test_config_valid_file_loads(write_config) -> None:
    path = write_config(with_model(), server={"port": 9001})
    config = load_config(path)

    assert config.path == path.resolve()
    assert config.server.port == 9001
    assert config.model("m").target == "late"
    assert config.model("m").params == {"n_estimators": 20}
    assert config.model("m").split.method == "stratified"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('logging = "DEBUG"\n', "'logging'"),
        ("[server]\nprot = 8080\n", "'server.prot'"),
        ('[storage]\nhome = "x"\nroot = "y"\n', "'storage.root'"),
        (
            '[models.m]\ndataset = "d"\ntarget = "t"\ntask = "regression"\n'
            'label = "t"\n',
            "'models.m.label'",
        ),
        (
            '[models.m]\ndataset = "d"\ntarget = "t"\ntask = "regression"\n'
            "[models.m.split]\nratio = 0.3\n",
            "'models.m.split.ratio'",
        ),
        ('[security]\ntrusted_key = "a.pub"\n', "'security.trusted_key'"),
    ],
)
def test_config_unknown_key_named(tmp_path: Path, text: str, key: str) -> None:
    path = write_toml(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError, match=f"unknown key {re.escape(key)}") as caught:
        load_config(path)
    assert str(path) in str(caught.value)


def test_top_level_unknown_key_lists_known(tmp_path: Path) -> None:
    text = '[model.iris]\ndataset = "iris"\ntarget = "species"\n'
    path = write_toml(tmp_path / "config.toml", text)

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    message = str(caught.value)
    assert "unknown key 'model'" in message
    assert (
        "known keys: datasets, feature_views, ingest, log_level, models, "
        "monitoring, predictions, security, server, storage" in message
    )


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('[server]\nport = "8080"\n', "'server.port'", "an integer"),
        ("[server]\nmax_rows = 1.5\n", "'server.max_rows'", "an integer"),
        ("[server]\nhost = 127\n", "'server.host'", "a string"),
        ("[storage]\nhome = 5\n", "'storage.home'", "a string"),
        ("log_level = true\n", "'log_level'", "a string"),
        (
            '[models.m]\ndataset = "d"\ntarget = "t"\ntask = "regression"\n'
            'features = "a"\n',
            "'models.m.features'",
            "a list",
        ),
        (
            '[models.m]\ndataset = "d"\ntarget = "t"\ntask = "regression"\n'
            "features = [1, 2]\n",
            "'models.m.features'",
            "a string",
        ),
        (
            '[models.m]\ndataset = "d"\ntarget = "t"\ntask = "regression"\n'
            '[models.m.split]\ntest_size = "half"\n',
            "'models.m.split.test_size'",
            "a number",
        ),
        (
            '[monitoring]\nstreaming = "yes"\n',
            "'monitoring.streaming'",
            "true or false",
        ),
        ('[security]\ntrusted_keys = "a.pub"\n', "'security.trusted_keys'", "a list"),
        ("[security]\ntrusted_keys = [1]\n", "'security.trusted_keys'", "a string"),
    ],
)
def test_config_wrong_type_named(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    path = write_toml(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError, match=f"{re.escape(key)} in .* must be {expected}"):
        load_config(path)


def test_security_keys_relative_to_config(tmp_path: Path) -> None:
    text = '[security]\nsigning_key = "keys/box.key"\ntrusted_keys = ["/etc/a.pub"]\n'
    config = load_config(write_toml(tmp_path / "config.toml", text))
    assert config.security.signing_key == tmp_path / "keys" / "box.key"
    assert config.security.trusted_keys == (Path("/etc/a.pub"),)


def test_config_wrong_type_names_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "config.toml", '[server]\nport = "8080"\n')
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_config(path)


@pytest.mark.parametrize(
    ("task", "algorithm"),
    [
        ("regression", "logistic_regression"),
        ("classification", "linear_regression"),
        ("classification", "xgboost"),
    ],
)
def test_config_algorithm_invalid_for_task(
    write_config, task: str, algorithm: str
) -> None:
    path = write_config(with_model(task=task, algorithm=algorithm))
    with pytest.raises(ConfigError) as caught:
        load_config(path)

    message = str(caught.value)
    assert "'models.m'" in message
    assert f"algorithm {algorithm!r}" in message
    assert f"task {task!r}" in message
    assert str(path) in message


def test_config_invalid_task_named(write_config) -> None:
    path = write_config(with_model(task="clustering"))
    with pytest.raises(ConfigError, match=r"'clustering' for 'models\.m\.task'"):
        load_config(path)


@pytest.mark.parametrize("key", ["dataset", "target", "task"])
def test_config_missing_key_named(write_config, key: str) -> None:
    path = write_config(with_model(**{key: None}))
    with pytest.raises(ConfigError) as caught:
        load_config(path)

    message = str(caught.value)
    assert f"missing key 'models.m.{key}'" in message
    assert str(path) in message


@pytest.mark.parametrize(
    ("server", "wording"),
    [
        ({"port": 70000}, "port must be within 0..65535"),
        ({"max_rows": 0}, "max_rows must be at least 1"),
        ({"max_body_bytes": 10}, "max_body_bytes must be at least 1024"),
    ],
)
def test_config_impossible_value_named(
    write_config, server: dict[str, int], wording: str
) -> None:
    path = write_config(server=server)
    with pytest.raises(ConfigError, match=f"invalid 'server' in .*{wording}"):
        load_config(path)


def test_config_target_in_features(write_config) -> None:
    path = write_config(with_model(features=["distance", "late"]))
    with pytest.raises(ConfigError, match="target 'late' is also listed in features"):
        load_config(path)


def test_config_missing_file_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=re.escape(f"{path} not found")):
        load_config(path)


def test_config_folder_named(tmp_path: Path) -> None:
    expected = f"configuration file {tmp_path} could not be read (Is a directory)"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(tmp_path)


def test_config_invalid_toml_named(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "config.toml", "[server\nport = 1\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path} is not valid TOML")):
        load_config(path)


def test_config_undeclared_model_named(write_config) -> None:
    config = load_config(write_config(with_model()))
    with pytest.raises(ConfigError, match="model 'other' is not declared.*: m$"):
        config.model("other")


def test_config_env_selects_file(write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(server={"port": 9002})
    monkeypatch.setenv("APPLIANCE_CONFIG", str(path))
    assert load_config().server.port == 9002


def test_home_env_overrides_storage(
    write_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(home=tmp_path / "from-file")
    monkeypatch.setenv("APPLIANCE_HOME", str(tmp_path / "from-env"))
    assert load_config(path).storage.home == (tmp_path / "from-env").resolve()


def test_home_from_file_without_env(write_config, tmp_path: Path) -> None:
    path = write_config(home=tmp_path / "from-file")
    assert load_config(path).storage.home == (tmp_path / "from-file").resolve()


def test_home_relative_to_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_toml(tmp_path / "etc" / "config.toml", '[storage]\nhome = "data"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    assert load_config(path).storage.home == (tmp_path / "etc" / "data").resolve()


def test_home_relative_env_uses_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_toml(tmp_path / "etc" / "config.toml", '[storage]\nhome = "data"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("APPLIANCE_HOME", "env-home")

    assert load_config(path).storage.home == (elsewhere / "env-home").resolve()


def test_home_tilde_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    path = write_toml(tmp_path / "config.toml", '[storage]\nhome = "~/appliance"\n')
    assert load_config(path).storage.home == (tmp_path / "user" / "appliance").resolve()


def test_log_level_unknown_name_rejected(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('log_level = "LOUD"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"'LOUD' for 'log_level'.*DEBUG, INFO"):
        load_config(path)


def test_config_home_file_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = write_toml(tmp_path / "not-a-folder", "")
    path = write_toml(tmp_path / "config.toml", '[storage]\nhome = "not-a-folder"\n')

    with pytest.raises(ConfigError, match=rf"from {re.escape(str(path))}\) is a file"):
        load_config(path)
    monkeypatch.setenv("APPLIANCE_HOME", str(home))
    with pytest.raises(ConfigError, match=r"\(from APPLIANCE_HOME\) is a file"):
        load_config(write_toml(tmp_path / "other.toml", ""))


@pytest.mark.parametrize("seconds", [-1, 3601])
def test_journal_fsync_seconds_out_of_range(tmp_path: Path, seconds: int) -> None:
    text = (
        f'[storage]\nhome = "home"\n[predictions]\njournal_fsync_seconds = {seconds}\n'
    )
    path = write_toml(tmp_path / "config.toml", text)
    with pytest.raises(
        ConfigError, match=r"journal_fsync_seconds must be within \[0, 3600\]"
    ):
        load_config(path)


def test_journal_fsync_seconds_zero_loads(tmp_path: Path) -> None:
    text = '[storage]\nhome = "home"\n[predictions]\njournal_fsync_seconds = 0\n'
    config = load_config(write_toml(tmp_path / "config.toml", text))
    assert config.predictions.journal_fsync_seconds == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('""', r"'datasets\.flights\.subject_keys' in .* must be a list, got ''"),
        ("[7]", r"'datasets\.flights\.subject_keys' in .* must be a string, got 7"),
        ('[""]', r"subject_keys lists an empty column name; list the columns"),
        (
            '["tailnum", "tailnum"]',
            r"subject_keys lists 'tailnum' twice; list each column once",
        ),
        (
            '["tailnun"]',
            r"subject_keys lists 'tailnun', which is not a column of "
            r"\[datasets\.flights\.contract\.columns\] \(declared: tailnum, year\); "
            "correct the name",
        ),
    ],
)
def test_subject_keys_invalid_named(tmp_path: Path, value: str, expected: str) -> None:
    text = (
        f"[datasets.flights]\nsubject_keys = {value}\n"
        '[datasets.flights.contract.columns.tailnum]\ntype = "VARCHAR"\n'
        '[datasets.flights.contract.columns.year]\ntype = "BIGINT"\n'
    )
    path = write_toml(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_config(path)
    assert "'datasets.flights" in str(caught.value)
    assert str(path) in str(caught.value)


def test_subject_keys_valid_loads(tmp_path: Path) -> None:
    text = (
        '[datasets.flights]\nsubject_keys = ["tailnum"]\n'
        '[datasets.flights.contract.columns.tailnum]\ntype = "VARCHAR"\n'
        '[datasets.planes]\nsubject_keys = ["tailnum", "owner"]\n'
    )
    config = load_config(write_toml(tmp_path / "config.toml", text))
    assert config.dataset("flights").subject_keys == ("tailnum",)
    assert config.dataset("planes").subject_keys == ("tailnum", "owner")


@pytest.mark.parametrize("key", ["subject_keys", "sensitive"])
def test_dataset_key_in_security_moved(tmp_path: Path, key: str) -> None:
    path = write_toml(tmp_path / "config.toml", f'[security]\n{key} = ["tailnum"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert f"unknown key 'security.{key}'" in message
    assert f'[datasets.flights] {key} = ["tailnum"]' in message


def test_window_rows_one_rejected(tmp_path: Path) -> None:
    text = (
        '[models.m]\ndataset = "d"\ntarget = "y"\ntask = "regression"\n'
        "[models.m.retrain]\nwindow_rows = 1\n"
    )
    path = write_toml(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "window_rows must be at least 2, got 1" in str(caught.value)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("url", "expected", "hidden"),
    [
        ("not a url", "webhook_url 'not a url' is not a URL", None),
        (
            "hooks.example.com/services/T0/s3cret",
            "webhook_url 'hooks.example.com...' is not a URL",
            "s3cret",
        ),
        ("alice:s3cret@hooks.example.com", "webhook_url 'alice...' is not", "s3cret"),
        (
            "ftp://alice:s3cret@hooks.example.com",
            "webhook_url has the scheme 'ftp', but only http:// and https://",
            "s3cret",
        ),
        ("https://", "webhook_url starts with https:// but names no valid host", None),
    ],
    ids=["words", "no_scheme", "no_scheme_password", "ftp", "no_host"],
)
def test_webhook_url_invalid_named(
    tmp_path: Path, url: str, expected: str, hidden: str | None
) -> None:
    text = f'[monitoring]\nwebhook_url = "{url}"\n'
    path = write_toml(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert expected in message
    assert "give a URL such as https://hooks.example.com/alerts" in message
    if hidden is not None:
        assert hidden not in message


def test_webhook_url_http_loads(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9000/alerts"
    path = write_toml(
        tmp_path / "config.toml", f'[monitoring]\nwebhook_url = "{url}"\n'
    )
    assert load_config(path).monitoring.webhook_url == url
