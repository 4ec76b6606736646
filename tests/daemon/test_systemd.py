"""The systemd unit: rendered by the install script and checked by systemd."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The unit runs <prefix>/.venv/bin/python; the venv running the tests stands in.
PREFIX = Path(sys.executable).parents[2]


def render_unit(tmp_path: Path) -> str:
    env = {
        **os.environ,
        "APPLIANCE_HOME": str(tmp_path / "home"),
        "APPLIANCE_CONFIG_DIR": str(tmp_path / "etc"),
        "APPLIANCE_USER": getpass.getuser(),
        "APPLIANCE_PREFIX": str(PREFIX),
    }
    result = subprocess.run(
        [str(ROOT / "scripts" / "install-service.sh"), "--print-unit"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_unit_hardening_and_command(tmp_path: Path) -> None:
    unit = render_unit(tmp_path)
    lines = set(unit.splitlines())
    for expected in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "Restart=on-failure",
        f"ReadWritePaths={tmp_path / 'home'}",
        f"User={getpass.getuser()}",
        f"ExecStart={PREFIX}/.venv/bin/python -m appliance serve",
    ):
        assert any(line.startswith(expected) for line in lines), expected
    assert [line for line in lines if line.startswith("ReadWritePaths=")] == [
        f"ReadWritePaths={tmp_path / 'home'}"
    ]
    assert any(line.startswith("StartLimitBurst=") for line in lines)


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed on this machine",
)
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    path = tmp_path / "appliance.service"
    path.write_text(render_unit(tmp_path), encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "appliance.service" not in result.stderr, result.stderr
