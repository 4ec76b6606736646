"""Checks that ``appliance tui`` runs before it opens the screen."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
from support import free_port, subprocess_env, write_config_file

from tui import UiClient

START_TIMEOUT_SECONDS = 30.0
"""Time a rejected start may take; a UI that starts instead runs until killed."""


def tui_command(root: Path, *args: str) -> list[str]:
    """Return the command line of ``appliance tui ARGS`` on a config under `root`."""
    config = write_config_file(root / "config.toml", root / "home")
    return [sys.executable, "-m", "appliance", "--config", str(config), "tui", *args]


def run_tui(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``appliance tui ARGS`` with stdin, stdout and stderr not a terminal."""
    return subprocess.run(
        tui_command(root, *args),
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


@pytest.mark.parametrize("stdin_terminal", [False, True])
def test_tui_command_without_terminal_exits(
    tmp_path: Path, stdin_terminal: bool
) -> None:
    # stdout and stderr are pipes, as in ``appliance tui 2>&1 | tail``; stdin is
    # a terminal when that runs in a shell, and /dev/null in a script.
    leader, follower = pty.openpty()
    url = f"http://127.0.0.1:{free_port()}"
    try:
        done = subprocess.run(
            tui_command(tmp_path, "--url", url),
            env=subprocess_env(tmp_path / "home"),
            stdin=follower if stdin_terminal else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_SECONDS,
            check=False,
        )
    finally:
        os.close(follower)
        os.close(leader)
    missing = "stdout and stderr" if stdin_terminal else "stdin, stdout and stderr"
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error: appliance tui needs an interactive terminal" in done.stderr
    assert f"but {missing} are not terminals" in done.stderr
    assert done.stdout == ""


def test_tui_command_runs_in_terminal(tmp_path: Path) -> None:
    """The check lets a real terminal through: the UI draws, then q quits it."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**subprocess_env(tmp_path / "home"), "TERM": "xterm-256color"}
    url = f"http://127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        tui_command(tmp_path, "--url", url),
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,
    )
    os.close(follower)
    output = bytearray()

    def drain() -> None:
        # The UI blocks on a full terminal buffer unless its output is read.
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                return
            if not chunk:
                return
            output.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        # The tab title, because the top line changes once the first call fails.
        while b"Overview" not in output and time.monotonic() < deadline:
            assert process.poll() is None, bytes(output).decode(errors="replace")
            time.sleep(0.1)
        assert b"Overview" in output, bytes(output).decode(errors="replace")
        # Sent again each second until the UI exits, in case Textual drops a
        # key that arrives before its input reader runs.
        while process.poll() is None and time.monotonic() < deadline:
            os.write(leader, b"q")
            try:
                process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                continue
        assert process.poll() == 0, bytes(output).decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)
        reader.join(timeout=5)
    assert b"needs an interactive terminal" not in output
