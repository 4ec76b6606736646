"""User errors of CLI commands, with the daemon up and down.

A command goes through the daemon while one runs, and opens the catalog
itself otherwise. Either way it must print the same error and exit with the
same status for an unknown dataset, version, run, alert or key, and for a
change that the registry or the key store rejects.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import (
    CLI_TIMEOUT_SECONDS,
    load_config_text,
    start_daemon,
    stop_daemon,
    subprocess_env,
)

from appliance.storage import Catalog, ingest

CONFIG = """
[storage]
home = "home"

[ingest]
flush_rows = 100000
flush_seconds = 3600

[models.late]
dataset = "jobs"
target = "size"
task = "regression"
"""
COMMANDS = (
    ("datasets", "show", "nosuch"),
    ("datasets", "show", "jobs@9"),
    ("datasets", "rows", "nosuch"),
    ("datasets", "rows", "jobs@9"),
    ("datasets", "diff", "jobs@1", "jobs@9"),
    ("datasets", "show", "@1"),
    ("datasets", "diff", "jobs", "@1"),
    ("datasets", "remove", "nosuch"),
    ("datasets", "compact", "nosuch"),
    ("datasets", "rejected", "nosuch"),
    ("alerts", "ack", "99"),
    ("alerts", "resolve", "99"),
    ("alerts", "list", "--model", "nosuch"),
    ("keys", "create", "boss", "--role", "reader"),
    ("keys", "revoke", "gone"),
    ("keys", "revoke", "boss"),
    # Without a daemon, a rejected change is audited or a failed run is
    # recorded, and the INFO lines of that go to the command's stderr.
    ("--log-level", "WARNING", "models", "promote", "late", "9"),
    ("--log-level", "WARNING", "models", "rollback", "late"),
    ("--log-level", "WARNING", "ingest", "jobs", "empty.csv"),
    ("--log-level", "WARNING", "ingest", "jobs", "other.csv", "--mode", "append"),
    ("--log-level", "WARNING", "datasets", "remove", "jobs"),
    ("--log-level", "WARNING", "train", "late"),
    ("--log-level", "WARNING", "models", "rotate-key"),
    ("runs", "show", "nosuch"),
    ("runs", "artifact", "nosuch", "model.onnx"),
    ("runs", "compare", "nosuch", "other"),
    ("orphans", "remove", "nosuch"),
)
"""Commands that fail with a user error: unknown names, revoked or last admin
keys, a taken key name, changes the registry rejects, files an ingest
rejects, a dataset a model uses, too few rows to train, and no signing key.
A listing of an unknown name fails too, so a misspelt name does not read as
no rows."""
USAGE_COMMANDS = (("predictions", "query", "--model", "late", "--version", "0"),)
"""Commands with a value that the command line rejects as bad usage."""

Output = tuple[int, str, str]
"""Exit status, stdout and stderr of one command."""


def _run(root: Path, token: str | None, *args: str) -> Output:
    env = subprocess_env(root / "home")
    if token is not None:
        env["APPLIANCE_API_KEY"] = token
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "--config", str(root / "config.toml")]
        + list(args),
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def outputs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[tuple[str, ...], tuple[Output, Output]]]:
    """Return the output of each of `COMMANDS` and `USAGE_COMMANDS` without
    and then with a daemon.

    The home has a ``jobs`` dataset of 2 rows, a declared model ``late``
    on it with no version, the admin key ``boss`` that every command sends,
    and the revoked key ``gone``. ``empty.csv`` has no row, and ``other.csv``
    none of the columns of ``jobs``.
    """
    root = tmp_path_factory.mktemp("errors")
    config = load_config_text(root, CONFIG)
    (root / "jobs.csv").write_text("id,size\n1,10\n2,20\n")
    (root / "empty.csv").write_text("id,size\n")
    (root / "other.csv").write_text("a,b\n1,x\n")
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "jobs", [root / "jobs.csv"])
    _, created, _ = _run(
        root, None, "keys", "create", "boss", "--role", "admin", "--json"
    )
    token = json.loads(created.splitlines()[0])["token"]
    _run(root, None, "keys", "create", "gone", "--role", "reader")
    _run(root, None, "keys", "revoke", "gone")

    commands = COMMANDS + USAGE_COMMANDS
    down = [_run(root, token, *command) for command in commands]
    daemon = start_daemon(root / "config.toml", root / "home", root / "daemon.log")
    try:
        up = [_run(root, token, *command) for command in commands]
    finally:
        stop_daemon(daemon)
    yield dict(zip(commands, zip(down, up, strict=True), strict=True))


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_user_error_same_with_daemon(
    outputs: dict[tuple[str, ...], tuple[Output, Output]], command: tuple[str, ...]
) -> None:
    (down_code, _, down_error), (up_code, _, up_error) = outputs[command]
    assert down_code == 1, down_error
    assert up_code == down_code, up_error
    assert up_error == down_error
    assert up_error.startswith("error: "), up_error
    assert "Traceback" not in up_error
    assert re.search(r"\(HTTP \d+", up_error) is None, up_error


@pytest.mark.parametrize("command", USAGE_COMMANDS, ids=" ".join)
def test_usage_error_same_with_daemon(
    outputs: dict[tuple[str, ...], tuple[Output, Output]], command: tuple[str, ...]
) -> None:
    (down_code, _, down_error), (up_code, _, up_error) = outputs[command]
    assert down_code == 2, down_error
    assert up_code == down_code, up_error
    assert up_error == down_error
    assert "Traceback" not in up_error
