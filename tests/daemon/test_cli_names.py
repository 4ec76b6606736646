"""CLI commands that name a dataset, model or key, with the daemon up and down.

A command puts the name into the daemon's URL while the daemon runs, and
opens the catalog itself otherwise. Both paths must reject a bad name with
the same message, and no name may change the route the request takes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import load_config_text, run_appliance, start_daemon, stop_daemon

from appliance.storage import Catalog, ingest

CONFIG = """
[storage]
home = "home"

[ingest]
flush_rows = 100000
flush_seconds = 3600
"""
BAD_DATASETS = ("a b", "jobs?x=1", "../jobs", "lake/sensor", "", "..", "jobs#x")
BAD_OTHER_NAMES = ("a b", "a/b", "..", "", "late?x=1")
OTHER_COMMANDS = (
    ("keys", "revoke", "{name}"),
    ("models", "promote", "{name}", "1"),
    ("models", "rollback", "{name}"),
    ("models", "history", "{name}"),
    ("models", "card", "{name}@1", "card.html"),
    ("retrain", "{name}"),
    ("drift", "{name}"),
)
SAME_TEXT_NAMES = ("", "../x", "a b", "nosuch")
SAME_TEXT_COMMANDS = (
    ("keys", "revoke", "{name}"),
    ("drift", "{name}"),
    ("drift", "{name}", "--check"),
)
"""Commands whose error for an odd or unknown name must match word for word."""
DATASET_COMMANDS = (
    ("datasets", "compact", "{name}"),
    ("datasets", "rejected", "{name}"),
    ("datasets", "rejected", "{name}", "--retry", "segment-1"),
    ("datasets", "remove", "{name}"),
    ("datasets", "show", "{name}"),
)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the config path of a home with one ``jobs`` dataset."""
    root = tmp_path_factory.mktemp("names")
    config = load_config_text(root, CONFIG)
    (root / "jobs.csv").write_text("id,size\n1,10\n2,20\n")
    with Catalog(config.storage.home) as catalog:
        ingest(catalog, "jobs", [root / "jobs.csv"])
    return root / "config.toml"


def _outputs(config: Path, commands: list[tuple[str, ...]]) -> list[tuple[int, str]]:
    results = [run_appliance(config, config.parent / "home", *c) for c in commands]
    return [(r.returncode, r.stdout + r.stderr) for r in results]


def _fill(names: tuple[str, ...], commands: tuple[tuple[str, ...], ...]) -> list:
    filled = []
    for name in names:
        for command in commands:
            filled.append(tuple(part.format(name=name) for part in command))
    return filled


@pytest.fixture(scope="module")
def commands() -> list[tuple[str, ...]]:
    """Return every command with every bad name filled in: datasets first,
    then other names, then the commands of `SAME_TEXT_COMMANDS`."""
    return (
        _fill(BAD_DATASETS, DATASET_COMMANDS)
        + _fill(BAD_OTHER_NAMES, OTHER_COMMANDS)
        + _fill(SAME_TEXT_NAMES, SAME_TEXT_COMMANDS)
    )


@pytest.fixture(scope="module")
def down_and_up(
    home: Path, commands: list[tuple[str, ...]]
) -> Iterator[tuple[list[tuple[int, str]], list[tuple[int, str]]]]:
    """Return the outputs of `commands` without and then with a daemon."""
    down = _outputs(home, commands)
    daemon = start_daemon(home, home.parent / "home", home.parent / "daemon.log")
    try:
        up = _outputs(home, commands)
    finally:
        stop_daemon(daemon)
    yield down, up


def test_bad_dataset_name_same_with_daemon(
    commands: list[tuple[str, ...]],
    down_and_up: tuple[list[tuple[int, str]], list[tuple[int, str]]],
) -> None:
    down, up = down_and_up
    count = len(BAD_DATASETS) * len(DATASET_COMMANDS)
    for command, (down_code, down_text), (up_code, up_text) in zip(
        commands[:count], down, up, strict=False
    ):
        assert "invalid dataset name" in down_text, (command, down_text)
        assert up_code == down_code, (command, up_text)
        assert up_text == down_text, command


def test_bad_model_or_key_name_keeps_route(
    commands: list[tuple[str, ...]],
    down_and_up: tuple[list[tuple[int, str]], list[tuple[int, str]]],
) -> None:
    down, up = down_and_up
    count = len(BAD_DATASETS) * len(DATASET_COMMANDS)
    for command, (down_code, down_text), (up_code, up_text) in zip(
        commands[count:], down[count:], up[count:], strict=True
    ):
        assert down_code != 0, (command, down_text)
        assert up_code == down_code, (command, up_text)
        assert "Traceback" not in up_text, command
        assert "no route" not in up_text, (command, up_text)


def test_key_and_drift_name_same_with_daemon(
    commands: list[tuple[str, ...]],
    down_and_up: tuple[list[tuple[int, str]], list[tuple[int, str]]],
) -> None:
    down, up = down_and_up
    count = len(SAME_TEXT_NAMES) * len(SAME_TEXT_COMMANDS)
    for command, (down_code, down_text), (up_code, up_text) in zip(
        commands[-count:], down[-count:], up[-count:], strict=True
    ):
        assert down_code == 1, (command, down_text)
        assert up_code == down_code, (command, up_text)
        assert up_text == down_text, command
        assert "daemon" not in up_text, (command, up_text)
