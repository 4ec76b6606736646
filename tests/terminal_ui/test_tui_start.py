"""Checks that ``appliance tui`` runs before it opens the screen."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import subprocess_env, write_config_file

from tui import UiClient

START_TIMEOUT_SECONDS = 30.0
"""Time a rejected start may take; a UI that starts instead runs until killed."""


def run_tui(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``appliance tui ARGS`` with stdin, stdout and stderr not a terminal."""
    config = write_config_file(root / "config.toml", root / "home")
    return subprocess.run(
        [sys.executable, "-m", "appliance", "--config", str(config), "tui", *args],
        env=subprocess_env(root / "home"),
        cwd=root,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_SECONDS,
        check=False,
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("notaurl", "must start with http:// or https://"),
        ("localhost:8765", "did you mean 'http://localhost:8765'"),
        ("ftp://127.0.0.1:8765", "must start with http:// or https://"),
        ("http://", "has no host"),
        ("http://127.0.0.1:port", "has an invalid port"),
        ("http://127.0.0.1:0", "has an invalid port"),
        ("http://127.0.0.1:8765/?key=1", "contains a query or fragment"),
        ("http://127.0.0.1 :8765", "contains whitespace"),
    ],
)
def test_client_rejects_invalid_url(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        UiClient(url)


def test_client_keeps_path_prefix() -> None:
    assert UiClient("https://edge.example/appliance/").base_url == (
        "https://edge.example/appliance"
    )


def test_tui_command_rejects_invalid_url(tmp_path: Path) -> None:
    done = run_tui(tmp_path, "--url", "notaurl")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "argument --url: daemon address 'notaurl'" in done.stderr
    assert "such as http://127.0.0.1:8765" in done.stderr
    assert "Traceback" not in done.stderr
