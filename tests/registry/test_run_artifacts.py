"""``appliance runs artifact``: a run's stored plots written to files."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from support import (
    CLI_TIMEOUT_SECONDS,
    run_appliance,
    start_daemon,
    stop_daemon,
    subprocess_env,
)

from appliance.config import Config
from appliance.training import train_model

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
README = Path(__file__).parents[2] / "README.md"


def _listed(config: Config, run_id: str) -> dict[str, dict]:
    show = run_appliance(config.path, config.storage.home, "runs", "show", run_id)
    assert show.returncode == 0, show.stderr
    return {item["name"]: item for item in json.loads(show.stdout)["artifacts"]}


def test_runs_artifact_writes_plot(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    config = trips()
    run_id = train_model(config, "late").run_id
    listed = _listed(config, run_id)
    output = tmp_path / "out" / "roc.png"
    output.parent.mkdir()

    written = run_appliance(
        config.path,
        config.storage.home,
        "runs",
        "artifact",
        run_id,
        "roc.png",
        "--output",
        str(output),
    )

    assert written.returncode == 0, written.stderr
    data = output.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert hashlib.sha256(data).hexdigest() == listed["roc.png"]["sha256"]
    assert f"wrote {output} ({len(data)} bytes, image/png)" in written.stdout
    assert list(output.parent.iterdir()) == [output]


def test_runs_artifact_default_name_and_stdout(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    config = trips()
    run_id = train_model(config, "late").run_id
    folder = tmp_path / "plots"
    folder.mkdir()

    by_name = run_appliance(
        config.path,
        config.storage.home,
        "runs",
        "artifact",
        run_id,
        "pr.png",
        cwd=folder,
    )
    to_stdout = subprocess.run(
        [sys.executable, "-m", "appliance", "--config", str(config.path)]
        + ["runs", "artifact", run_id, "pr.png", "--output", "-"],
        env=subprocess_env(config.storage.home),
        capture_output=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )

    assert by_name.returncode == 0, by_name.stderr
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert (folder / "pr.png").read_bytes() == to_stdout.stdout
    assert to_stdout.stdout.startswith(PNG_SIGNATURE)


def test_runs_artifact_unknown_name_lists_names(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    config = trips()
    run_id = train_model(config, "late").run_id
    names = ", ".join(sorted(_listed(config, run_id)))

    missing = run_appliance(
        config.path, config.storage.home, "runs", "artifact", run_id, "nope.png"
    )
    no_folder = run_appliance(
        config.path,
        config.storage.home,
        "runs",
        "artifact",
        run_id,
        "roc.png",
        "--output",
        str(tmp_path / "absent" / "roc.png"),
    )

    assert missing.returncode == 1
    assert (
        f"error: run {run_id!r} has no artifact 'nope.png'; its artifacts are: "
        f"{names}" in missing.stderr
    )
    assert no_folder.returncode == 1
    assert f"folder {tmp_path / 'absent'} not found" in no_folder.stderr


def test_runs_artifact_through_daemon(
    trips: Callable[[str], Config], tmp_path: Path
) -> None:
    config = trips()
    run_id = train_model(config, "late").run_id
    output = tmp_path / "roc.png"
    daemon = start_daemon(config.path, config.storage.home, tmp_path / "daemon.log")
    try:
        shown = run_appliance(config.path, config.storage.home, "runs", "show", run_id)
        written = run_appliance(
            config.path,
            config.storage.home,
            "runs",
            "artifact",
            run_id,
            "roc.png",
            "--output",
            str(tmp_path),
        )
    finally:
        stop_daemon(daemon)

    assert shown.returncode == 0, shown.stderr
    assert "appliance runs artifact " + run_id + " NAME --output FILE" in shown.stderr
    assert written.returncode == 0, written.stderr
    listed = {a["name"]: a for a in json.loads(shown.stdout)["artifacts"]}
    data = output.read_bytes()
    assert hashlib.sha256(data).hexdigest() == listed["roc.png"]["sha256"]


def test_documented_artifact_names_exist(trips: Callable[[str], Config]) -> None:
    config = trips()
    run_id = train_model(config, "late").run_id
    listed = _listed(config, run_id)
    readme_names = re.findall(r"runs artifact RUN (\S+)", README.read_text())
    helped = run_appliance(
        config.path, config.storage.home, "runs", "artifact", "--help"
    )
    help_text = " ".join(helped.stdout.split())

    # The quickstart trains a classifier, as the trips model is.
    assert readme_names
    assert helped.returncode == 0, helped.stderr
    for name in readme_names:
        assert name in listed, f"README names {name!r}; the run has {sorted(listed)}"
    assert "such as roc.png of a classifier" in help_text
    assert "roc.png" in listed
