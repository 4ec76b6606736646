"""The ``python -m appliance`` command: ingest, batch predict, train, serve."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest
from support import (
    DATASETS,
    MODELS,
    TrainedHome,
    json_rows,
    model_table,
    start_daemon,
    stop_daemon,
    write_config_file,
)

from appliance.config import DEFAULT_CONFIG
from appliance.serving import OnnxModel, class_key
from appliance.signing import trusted_keys

SMALL = pd.DataFrame(
    {
        "id": [1, 2, 3, 4, 5],
        "price": [1.5, None, 3.25, 4.0, 5.5],
        "colour": ["red", "blue", None, "red", "green"],
    }
)
TOLERANCE = 1e-6


def version_id(*paths: Path) -> str:
    """Return the dataset version id of files: a sha256 over their sha256s."""
    hashes = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:16]


def error_line(stderr: str) -> str:
    """Return the one ``error:`` line that the CLI prints for an ApplianceError."""
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


# --- ingest ----------------------------------------------------------------------


def test_cli_ingest_prints_version(cli, write_config, tmp_path: Path) -> None:
    source = tmp_path / "small.csv"
    SMALL.to_csv(source, index=False)

    result = cli(write_config(), tmp_path / "home", "ingest", "small", str(source))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"small@{version_id(source)} rows=5 mode=replace accepted=5 quarantined=0 "
        "(created)\n"
    )


def test_cli_ingest_uses_env_home(cli, write_config, tmp_path: Path) -> None:
    source = tmp_path / "small.csv"
    SMALL.to_csv(source, index=False)
    config = write_config(home=tmp_path / "home-in-file")

    result = cli(config, tmp_path / "home-in-env", "ingest", "small", str(source))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "home-in-env" / "catalog.duckdb").is_file()
    assert not (tmp_path / "home-in-file").exists()


def test_cli_ingest_twice_unchanged(cli, write_config, tmp_path: Path) -> None:
    source = tmp_path / "small.jsonl"
    SMALL.to_json(source, orient="records", lines=True)
    config, home = write_config(), tmp_path / "home"
    cli(config, home, "ingest", "small", str(source))

    again = cli(config, home, "ingest", "small", str(source))
    assert again.returncode == 0, again.stderr
    assert again.stdout == (
        f"small@{version_id(source)} rows=5 (unchanged, already ingested)\n"
    )

    listed = cli(config, home, "datasets", "list", "--json")
    versions = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [v["version"] for v in versions] == [version_id(source)]


def test_cli_ingest_new_version_parent(cli, write_config, tmp_path: Path) -> None:
    first = tmp_path / "first.parquet"
    second = tmp_path / "second.parquet"
    SMALL.to_parquet(first, index=False)
    SMALL.head(3).to_parquet(second, index=False)
    config, home = write_config(), tmp_path / "home"
    cli(config, home, "ingest", "small", str(first))
    cli(config, home, "ingest", "small", str(second))

    listed = cli(config, home, "datasets", "list", "--json")
    newest, oldest = [json.loads(line) for line in listed.stdout.splitlines()]
    assert newest["version"] == version_id(second)
    assert newest["parent"] == version_id(first)
    assert newest["rows"] == 3
    assert oldest["parent"] is None


def bad_inputs(case: str, folder: Path) -> tuple[list[Path], Path]:
    """Write the files of one bad-input case and return them with the file at fault."""
    good = folder / "good.csv"
    SMALL.to_csv(good, index=False)
    bad = {
        "missing": folder / "absent.csv",
        "empty": folder / "empty.csv",
        "xlsx": folder / "sheet.xlsx",
        "garbage_parquet": folder / "garbage.parquet",
        "mixed": folder / "other.parquet",
    }[case]
    if case == "empty":
        bad.write_bytes(b"")
    elif case == "xlsx":
        bad.write_bytes(b"PK\x03\x04 not really a workbook")
    elif case == "garbage_parquet":
        bad.write_text("this is text, not Parquet\n" * 20)
    elif case == "mixed":
        SMALL.to_parquet(bad, index=False)
        return [good, bad], bad
    return [bad], bad


BAD_CASES = ["missing", "empty", "xlsx", "garbage_parquet", "mixed"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_cli_ingest_bad_file_exits(
    cli, write_config, tmp_path: Path, case: str
) -> None:
    paths, bad = bad_inputs(case, tmp_path)
    result = cli(write_config(), tmp_path / "home", "ingest", "small", *map(str, paths))

    assert result.returncode == 1
    assert result.stdout == ""
    assert str(bad) in error_line(result.stderr)


def test_cli_ingest_without_paths_usage(cli, write_config, tmp_path: Path) -> None:
    result = cli(write_config(), tmp_path / "home", "ingest", "small")
    assert result.returncode == 2
    assert "the following arguments are required: paths" in result.stderr


def test_cli_help_names_default_config() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert f"else {DEFAULT_CONFIG}, not a config.toml in the current folder" in text


def test_cli_log_level_invalid_usage(cli, write_config, tmp_path: Path) -> None:
    result = cli(
        write_config(), tmp_path / "home", "--log-level", "LOUD", "models", "list"
    )

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert (
        "argument --log-level: invalid log level 'LOUD'; use one of DEBUG, INFO, "
        "WARNING, ERROR, CRITICAL" in result.stderr
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--as-of", "tomorrow"],
            "argument --as-of: invalid time 'tomorrow'; use ISO 8601 such as",
        ),
        (
            ["--trigger", "drift", "--force"],
            "--force applies to the manual trigger only, not --trigger drift",
        ),
    ],
    ids=["as_of_not_time", "force_not_manual"],
)
def test_cli_retrain_invalid_usage(
    cli, write_config, tmp_path: Path, options: list[str], message: str
) -> None:
    (tmp_path / "home").mkdir()
    table = model_table("flights", "late", "classification", "logistic_regression")
    config = write_config({"late": table})

    result = cli(config, tmp_path / "home", "retrain", "late", *options)

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            ["audit", "list", "--limit", "0"],
            "argument --limit: invalid entry count '0'; use a whole number of 1",
        ),
        (
            ["tui", "--refresh", "nan"],
            "argument --refresh: invalid refresh 'nan'; use a number of seconds",
        ),
    ],
    ids=["audit_limit_zero", "tui_refresh_nan"],
)
def test_cli_invalid_option_usage(
    cli, write_config, tmp_path: Path, command: list[str], message: str
) -> None:
    (tmp_path / "home").mkdir()

    result = cli(write_config(), tmp_path / "home", *command)

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr


def test_cli_log_level_any_case(cli, write_config, tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    result = cli(
        write_config(), tmp_path / "home", "--log-level", "debug", "models", "list"
    )

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["models", "verify", "late@"],
        ["models", "sign", "late@"],
        ["models", "card", "late@", "card.html"],
        ["models", "export", "late@", "out"],
        ["predict", "late@", "in.csv", "out.csv"],
        ["explain", "late@", "in.csv"],
    ],
)
def test_cli_empty_version_usage(
    cli, write_config, tmp_path: Path, command: list[str]
) -> None:
    result = cli(write_config(), tmp_path / "home", *command)

    assert result.returncode == 2
    assert "invalid model reference 'late@': nothing follows the '@'" in result.stderr
    assert "as late@1 or late@champion" in result.stderr


def test_cli_reference_without_name_usage(cli, write_config, tmp_path: Path) -> None:
    result = cli(write_config(), tmp_path / "home", "models", "verify", "@1")

    assert result.returncode == 2
    assert "invalid model reference '@1'; start it with the model name" in (
        result.stderr
    )


# --- batch predict ---------------------------------------------------------------


def scoring_frame(frames: dict[str, pd.DataFrame], name: str) -> pd.DataFrame:
    """Return 40 rows of the model's dataset, target and an extra column included."""
    frame = frames[MODELS[name][0]].head(40).copy()
    frame["comment"] = [f"row {i}" for i in range(len(frame))]
    return frame


def feature_rows(frame: pd.DataFrame, name: str) -> list[dict]:
    target = DATASETS[MODELS[name][0]][0]
    return json_rows(frame.drop(columns=[target, "comment"]))


def score(
    cli, trained: TrainedHome, name: str, source: Path, output: Path
) -> subprocess.CompletedProcess[str]:
    """Run ``appliance predict NAME SOURCE OUTPUT`` on the trained home."""
    args = ["predict", name, str(source), str(output)]
    return cli(trained.config_path, trained.home, *args)


def load_onnx(trained: TrainedHome, name: str) -> OnnxModel:
    version = trained.results[name].model_version
    trusted = trusted_keys(trained.config)
    return OnnxModel.load(version.path, version.sha256, trusted=trusted)


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("binary_random_forest", "csv"),
        ("multiclass_lightgbm", "csv"),
        ("multiclass_logistic_regression", "parquet"),
    ],
)
def test_cli_predict_classifier_file(
    cli,
    trained: TrainedHome,
    frames: dict[str, pd.DataFrame],
    tmp_path: Path,
    name: str,
    suffix: str,
) -> None:
    frame = scoring_frame(frames, name)
    source = tmp_path / f"in.{suffix}"
    if suffix == "csv":
        frame.to_csv(source, index=False)
    else:
        frame.to_parquet(source, index=False)
    output = tmp_path / "out.parquet"

    result = score(cli, trained, name, source, output)
    assert result.returncode == 0, result.stderr
    assert f"scored {len(frame)} rows with {name} version 1" in result.stdout

    model = load_onnx(trained, name)
    keys = [class_key(c) for c in model.classes]
    scored = pq.ParquetFile(output).read().to_pandas()
    probability_columns = [f"probability_{k}" for k in keys]
    expected_columns = [*frame.columns, "prediction", *probability_columns]
    assert list(scored.columns) == expected_columns
    assert scored["comment"].tolist() == frame["comment"].tolist()

    expected = model.predict_rows(feature_rows(frame, name))
    assert scored["prediction"].tolist() == [p["label"] for p in expected]
    for key in keys:
        want = [p["probabilities"][key] for p in expected]
        got = scored[f"probability_{key}"].tolist()
        assert got == pytest.approx(want, abs=TOLERANCE)


def test_cli_predict_regression_file(
    cli, trained: TrainedHome, frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    name = "regression_lightgbm"
    frame = scoring_frame(frames, name)
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    output = tmp_path / "out.parquet"

    result = score(cli, trained, name, source, output)
    assert result.returncode == 0, result.stderr

    scored = pq.ParquetFile(output).read().to_pandas()
    assert list(scored.columns) == [*frame.columns, "prediction"]
    expected = load_onnx(trained, name).predict_rows(feature_rows(frame, name))
    want = [p["value"] for p in expected]
    assert scored["prediction"].tolist() == pytest.approx(want, abs=TOLERANCE)


def test_cli_predict_csv_output(
    cli, trained: TrainedHome, frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    name = "regression_lightgbm"
    frame = scoring_frame(frames, name)
    source = tmp_path / "in.parquet"
    frame.to_parquet(source, index=False)
    csv_output, parquet_output = tmp_path / "out.csv", tmp_path / "out.parquet"

    assert score(cli, trained, name, source, csv_output).returncode == 0
    assert score(cli, trained, name, source, parquet_output).returncode == 0

    from_csv = pd.read_csv(csv_output)
    from_parquet = pq.ParquetFile(parquet_output).read().to_pandas()
    assert list(from_csv.columns) == list(from_parquet.columns)
    assert len(from_csv) == len(frame)
    assert from_csv["prediction"].tolist() == pytest.approx(
        from_parquet["prediction"].tolist(), rel=1e-6
    )


def test_cli_predict_unknown_output_suffix(
    cli, trained: TrainedHome, tmp_path: Path
) -> None:
    output = tmp_path / "out.json"
    result = score(cli, trained, "binary_lightgbm", trained.sources["binary"], output)

    assert result.returncode == 1
    assert error_line(result.stderr) == (
        f"error: {output}: the output format is taken from the file name; end it "
        "with .parquet (or .pq) for Parquet or .csv for CSV"
    )
    assert not output.exists()


def test_cli_predict_missing_input(cli, trained: TrainedHome, tmp_path: Path) -> None:
    source = tmp_path / "absent.csv"
    output = tmp_path / "out.parquet"
    result = score(cli, trained, "binary_lightgbm", source, output)

    assert result.returncode == 1
    assert error_line(result.stderr) == f"error: {source}: file not found"
    assert not output.exists()


def test_cli_predict_output_is_input(cli, trained: TrainedHome) -> None:
    source = trained.sources["binary"]
    before = source.read_bytes()
    result = score(cli, trained, "binary_lightgbm", source, source)

    assert result.returncode == 1
    assert "the output file is the input file" in result.stderr
    assert source.read_bytes() == before


def test_cli_predict_output_folder_missing(
    cli, trained: TrainedHome, tmp_path: Path
) -> None:
    output = tmp_path / "absent" / "out.parquet"
    result = score(cli, trained, "binary_lightgbm", trained.sources["binary"], output)

    assert result.returncode == 1
    assert f"folder {output.parent} not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_predict_output_is_folder(
    cli, trained: TrainedHome, tmp_path: Path
) -> None:
    source = trained.sources["binary"]
    output = tmp_path / "scored"
    output.mkdir()
    result = score(cli, trained, "binary_lightgbm", source, output)

    assert result.returncode == 1
    assert error_line(result.stderr) == (
        f"error: {output}: the output is a folder; name a file to write, such as "
        f"{output / 'binary.parquet'}"
    )
    assert "Traceback" not in result.stderr
    assert list(output.iterdir()) == []
    assert list(tmp_path.iterdir()) == [output]


@pytest.mark.parametrize("reference", ["1", "champion"])
def test_cli_predict_name_at_version(
    cli,
    trained: TrainedHome,
    frames: dict[str, pd.DataFrame],
    tmp_path: Path,
    reference: str,
) -> None:
    name = "binary_lightgbm"
    source = tmp_path / "in.csv"
    scoring_frame(frames, name).to_csv(source, index=False)
    output = tmp_path / "out.parquet"

    result = score(cli, trained, f"{name}@{reference}", source, output)

    assert result.returncode == 0, result.stderr
    assert f"scored 40 rows with {name} version 1" in result.stdout
    assert pq.ParquetFile(output).metadata.num_rows == 40


def test_cli_predict_two_versions_rejected(
    cli, trained: TrainedHome, tmp_path: Path
) -> None:
    output = tmp_path / "out.parquet"
    args = ["predict", "binary_lightgbm@1", str(trained.sources["binary"])]
    result = cli(
        trained.config_path, trained.home, *args, str(output), "--version", "2"
    )

    assert result.returncode == 2
    assert error_line(result.stderr) == (
        "error: 'binary_lightgbm@1' and --version 2 name different versions; give "
        "the version once, as NAME@VERSION or with --version"
    )
    assert not output.exists()


def test_cli_predict_ragged_line(
    cli, trained: TrainedHome, frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    name = "binary_lightgbm"
    frame = scoring_frame(frames, name)
    lines = frame.to_csv(index=False).splitlines()
    # Line 4 of the file, the third row, keeps only its first 3 fields.
    lines[3] = ",".join(lines[3].split(",")[:3])
    source = tmp_path / "in.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "out.parquet"

    result = score(cli, trained, name, source, output)

    assert result.returncode == 1
    assert error_line(result.stderr) == (
        f"error: {source}, line 4: 3 fields where the header has "
        f"{len(frame.columns)}; fix or remove the line"
    )
    assert not output.exists()


def test_cli_predict_header_only(
    cli, trained: TrainedHome, frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    name = "binary_lightgbm"
    source = tmp_path / "in.csv"
    scoring_frame(frames, name).head(0).to_csv(source, index=False)
    output = tmp_path / "out.parquet"

    result = score(cli, trained, name, source, output)

    assert result.returncode == 1
    assert error_line(result.stderr) == (
        f"error: {source}: no rows after the header; nothing to score"
    )
    assert not output.exists()


def test_cli_predict_blank_lines(cli, trained: TrainedHome, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("\n\n\n", encoding="utf-8")
    output = tmp_path / "out.parquet"

    result = score(cli, trained, "binary_lightgbm", source, output)

    assert result.returncode == 1
    assert error_line(result.stderr) == (
        f"error: {source}: the file contains only blank lines; nothing to score"
    )
    assert not output.exists()


def test_cli_predict_missing_column(
    cli, trained: TrainedHome, frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    name = "binary_lightgbm"
    source = tmp_path / "in.csv"
    scoring_frame(frames, name).drop(columns=["texture"]).to_csv(source, index=False)
    output = tmp_path / "out.parquet"

    result = score(cli, trained, name, source, output)
    assert result.returncode == 1
    assert "column 'texture' required by model 'binary_lightgbm'" in error_line(
        result.stderr
    )
    assert not output.exists()
    assert not (tmp_path / "out.parquet.partial").exists()


def test_cli_predict_error_names_file_line(
    cli, trained: TrainedHome, frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    name = "binary_lightgbm"
    frame = scoring_frame(frames, name)
    # Row 1's quoted comment spans two lines, so row 5 starts on line 8:
    # the header is line 1 and rows 0 to 4 take lines 2 to 7.
    frame["comment"] = frame["comment"].astype(object)
    frame.loc[1, "comment"] = "first line\nsecond line"
    # A number beyond the float32 range the model reads.
    frame.loc[5, "texture"] = 1e39
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)

    result = score(cli, trained, name, source, tmp_path / "out.parquet")

    assert result.returncode == 1
    line = error_line(result.stderr)
    assert line.startswith(f"error: {source}, line 8, column 'texture'"), line
    assert "1e+39" in line


def test_cli_predict_error_names_parquet_row(
    cli, trained: TrainedHome, frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    name = "binary_lightgbm"
    frame = scoring_frame(frames, name)
    frame.loc[5, "texture"] = 1e39
    source = tmp_path / "in.parquet"
    frame.to_parquet(source, index=False)

    result = score(cli, trained, name, source, tmp_path / "out.parquet")

    assert result.returncode == 1
    line = error_line(result.stderr)
    assert line.startswith(f"error: {source}, row 6, column 'texture'"), line


def test_cli_predict_unknown_model(cli, trained: TrainedHome, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    SMALL.to_csv(source, index=False)
    result = score(cli, trained, "no_such_model", source, tmp_path / "out.parquet")
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert "model 'no_such_model' has no registered version" in line


# --- unknown names -------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            ["datasets", "quarantine", "nope"],
            "dataset 'nope' is not declared in [datasets] and has no version; "
            "known datasets: binary, multiclass, regression",
        ),
        (
            ["models", "history", "nope"],
            "model 'nope' is not declared in [models] and has no registered "
            f"version; known models: {', '.join(sorted(MODELS))}",
        ),
        (
            ["predictions", "tail", "nope"],
            "model 'nope' is not declared in [models] and has no registered "
            f"version; known models: {', '.join(sorted(MODELS))}",
        ),
        (
            ["predictions", "query", "--model", "nope"],
            "model 'nope' is not declared in [models] and has no registered "
            f"version; known models: {', '.join(sorted(MODELS))}",
        ),
        (
            ["models", "promote", "nope", "1"],
            "model 'nope' is not declared in [models] and has no registered "
            f"version; known models: {', '.join(sorted(MODELS))}",
        ),
        (
            ["models", "rollback", "nope"],
            "model 'nope' is not declared in [models] and has no registered "
            f"version; known models: {', '.join(sorted(MODELS))}",
        ),
    ],
)
def test_cli_unknown_name_exits(
    cli, trained: TrainedHome, command: list[str], expected: str
) -> None:
    result = cli(trained.config_path, trained.home, *command)

    assert result.returncode == 1
    assert error_line(result.stderr) == f"error: {expected}"
    assert result.stdout == ""


@pytest.mark.parametrize(
    "command",
    [
        ["datasets", "quarantine", "binary"],
        ["models", "history", "binary_lightgbm", "--alias", "no_such_alias"],
    ],
)
def test_cli_known_name_without_rows(
    cli, trained: TrainedHome, command: list[str]
) -> None:
    result = cli(trained.config_path, trained.home, *command)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "(none)\n"


def test_cli_quarantine_unknown_version(cli, trained: TrainedHome) -> None:
    command = ["datasets", "quarantine", "binary", "--version", "zzz"]

    result = cli(trained.config_path, trained.home, *command)

    assert result.returncode == 1
    assert error_line(result.stderr).startswith(
        "error: 'zzz' is not a version of dataset 'binary'; versions: "
    )
    assert result.stdout == ""


# --- config, train and serve -----------------------------------------------------


@pytest.mark.parametrize(
    "command", [["datasets", "list"], ["models", "list"], ["alerts", "list"]]
)
def test_cli_missing_home_exits(
    cli, write_config, tmp_path: Path, command: list[str]
) -> None:
    home = tmp_path / "typo-home"
    result = cli(write_config(), home, *command)

    assert result.returncode == 1
    line = error_line(result.stderr)
    assert f"appliance home {home} (from APPLIANCE_HOME) does not exist" in line
    assert result.stdout == ""
    assert not home.exists()


def test_cli_home_from_config_named(cli, tmp_path: Path) -> None:
    config = write_config_file(tmp_path / "config.toml", tmp_path / "typo-home")
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "--config", str(config), "runs", "list"],
        env={k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")},
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 1
    line = error_line(result.stderr)
    assert f"(from [storage] home in {config}, chosen by --config)" in line


def test_cli_home_without_catalog_warns(cli, write_config, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    result = cli(write_config(), home, "models", "list")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "(none)\n"
    assert (
        f"warning: appliance home {home} (from APPLIANCE_HOME) has no catalog.duckdb"
        in result.stderr
    )


def test_cli_first_ingest_creates_home(cli, write_config, tmp_path: Path) -> None:
    source = tmp_path / "small.csv"
    SMALL.to_csv(source, index=False)
    home = tmp_path / "new" / "home"

    result = cli(write_config(), home, "ingest", "small", str(source))

    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    assert (home / "catalog.duckdb").is_file()


def test_cli_config_error_exits(cli, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[server]\nprot = 1\n", encoding="utf-8")
    result = cli(config, tmp_path / "home", "datasets", "list")

    assert result.returncode == 1
    line = error_line(result.stderr)
    assert "unknown key 'server.prot'" in line
    assert str(config) in line


@pytest.mark.parametrize(
    "command",
    [["ingest", "points", "points.csv"], ["serve", "--port", "0"]],
)
def test_cli_home_not_creatable(cli, tmp_path: Path, command: list[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text("", encoding="utf-8")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    home = blocker / "home"

    result = cli(config, home, *command)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert error_line(result.stderr) == (
        f"error: cannot create the appliance home {home} ({blocker} is a file, not "
        "a folder); set APPLIANCE_HOME, or home in the [storage] section of the "
        "configuration, to a folder that this user can write"
    )


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_cli_home_under_proc(cli, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("", encoding="utf-8")

    home = Path("/proc/no-such-home")
    result = cli(config, home, "ingest", "points", "points.csv")

    assert result.returncode == 1
    assert error_line(result.stderr).startswith(
        "error: cannot create the appliance home /proc/no-such-home (No such file"
    )


def test_cli_train_registers_version(
    cli, write_config, tmp_path: Path, frames: dict[str, pd.DataFrame]
) -> None:
    source = tmp_path / "iris.csv"
    frames["multiclass"].to_csv(source, index=False)
    models = {"iris": model_table("flowers", "species", "classification", "lightgbm")}
    config, home = write_config(models), tmp_path / "home"
    assert cli(config, home, "ingest", "flowers", str(source)).returncode == 0

    trained = cli(config, home, "train", "iris")
    assert trained.returncode == 0, trained.stderr
    assert "model iris version 1" in trained.stdout

    listed = cli(config, home, "models", "list", "--json")
    (entry,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert entry["model"] == "iris"
    assert entry["version"] == 1
    assert entry["parity"] <= 1e-4

    runs = cli(config, home, "runs", "list", "--json")
    (run,) = [json.loads(line) for line in runs.stdout.splitlines()]
    assert run["status"] == "finished"
    assert run["model_version"] == 1
    assert run["dataset_version"] == version_id(source)


def test_cli_train_failure_exits(cli, write_config, tmp_path: Path) -> None:
    source = tmp_path / "one.csv"
    pd.DataFrame({"x": range(20), "label": ["same"] * 20}).to_csv(source, index=False)
    models = {"one": model_table("one", "label", "classification", "random_forest")}
    config, home = write_config(models), tmp_path / "home"
    cli(config, home, "ingest", "one", str(source))

    result = cli(config, home, "train", "one")
    assert result.returncode == 1
    assert "target column 'label'" in error_line(result.stderr)

    runs = cli(config, home, "runs", "list", "--json")
    (run,) = [json.loads(line) for line in runs.stdout.splitlines()]
    assert run["status"] == "failed"
    assert "single class" in run["error"]


def test_serve_sigterm_exits_zero(write_config, tmp_path: Path) -> None:
    config = write_config()
    daemon = start_daemon(config, tmp_path / "home", tmp_path / "daemon.log")
    try:
        with httpx.Client(base_url=daemon.base_url, trust_env=False) as client:
            health = client.get("/health")
            listed = client.get("/v1/models")
    finally:
        status = stop_daemon(daemon)

    assert health.json() == {"status": "ok", "models": 0}
    assert listed.json() == {"models": []}
    assert status == 0
    assert "daemon stopped" in daemon.log.read_text()
