"""The systemd unit: rendered by the install script and checked by systemd.

The install script's ``--check`` runs its location and access checks without
installing anything; the tests build stand-in repositories for it.
"""

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
HIDDEN = ("/home/", "/root/", "/run/user/", "/tmp/", "/var/tmp/", "/dev/")
"""Folders the unit hides from the service, as the install script lists them."""
MISSING_USER = "appliance-test-no-such-user"


def print_unit(**settings: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "APPLIANCE_USER": getpass.getuser(),
        "APPLIANCE_PREFIX": str(PREFIX),
        **settings,
    }
    return subprocess.run(
        [str(ROOT / "scripts" / "install-service.sh"), "--print-unit"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def render_unit(tmp_path: Path) -> str:
    result = print_unit(
        APPLIANCE_SERVICE_HOME=str(tmp_path / "home"),
        APPLIANCE_CONFIG_DIR=str(tmp_path / "etc"),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("user", ["a|b", "a&b", "Appliance", "1st"])
def test_unit_rejects_invalid_user(user: str) -> None:
    result = print_unit(APPLIANCE_USER=user)

    assert result.returncode == 1
    assert f"the service user (APPLIANCE_USER) '{user}'" in result.stderr
    assert result.stdout == ""


def test_unit_ignores_demo_home() -> None:
    result = print_unit(APPLIANCE_HOME=".appliance-demo")

    assert result.returncode == 0, result.stderr
    assert "WorkingDirectory=/var/lib/edge-appliance" in result.stdout.splitlines()
    assert ".appliance-demo" not in result.stdout
    assert "APPLIANCE_HOME (.appliance-demo) is not read" in result.stderr


@pytest.mark.parametrize(
    ("home", "problem"),
    [
        ("var/lib/appliance", "is a relative path"),
        ("/var/lib/my appliance", "contains a space"),
        ("/var/lib/a%h", "contains a space or a character"),
    ],
)
def test_unit_rejects_bad_home(home: str, problem: str) -> None:
    result = print_unit(APPLIANCE_SERVICE_HOME=home)

    assert result.returncode == 1
    assert f"the service home (APPLIANCE_SERVICE_HOME) '{home}' {problem}" in (
        result.stderr
    )
    assert result.stdout == ""


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


def run_check(
    prefix: Path, user: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "APPLIANCE_PREFIX": str(prefix),
        "APPLIANCE_USER": user,
        **settings,
    }
    return subprocess.run(
        [str(ROOT / "scripts" / "install-service.sh"), "--check"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def fake_repository(prefix: Path, python: Path) -> Path:
    """Make `prefix` look like a clone whose venv runs `python`."""
    bin_dir = prefix / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(python)
    (prefix / ".venv" / "pyvenv.cfg").write_text(
        f"home = {python.parent}\n", encoding="utf-8"
    )
    return prefix


def is_hidden(path: Path) -> bool:
    return (str(path.resolve()) + "/").startswith(HIDDEN)


@pytest.fixture
def visible_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Return an empty folder that the unit does not hide, in pytest's cache."""
    cache = getattr(request.config, "cache", None)
    if cache is None:
        pytest.skip("pytest's cache provider is off")
    folder = cache.mkdir("install-check")
    shutil.rmtree(folder)
    folder.mkdir()
    if is_hidden(folder):
        pytest.skip(f"the repository itself is in a hidden folder: {folder}")
    return folder


@pytest.fixture
def system_python() -> Path:
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        path = Path(candidate)
        if path.exists() and not is_hidden(path):
            return path
    pytest.skip("no python outside the hidden folders")


def test_check_rejects_clone_under_tmp(tmp_path: Path) -> None:
    repository = fake_repository(tmp_path / "repo", Path(sys.executable))

    result = run_check(repository, MISSING_USER)

    assert result.returncode == 1
    assert f"the repository {repository.resolve()} is under /tmp" in result.stderr
    assert "clone the repository to a folder such as /opt" in result.stderr
    assert "ok:" not in result.stdout


def test_check_rejects_python_under_tmp(visible_dir: Path, tmp_path: Path) -> None:
    python = tmp_path / "python3"
    python.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    python.chmod(0o755)
    repository = fake_repository(visible_dir / "repo", python)

    result = run_check(repository, MISSING_USER)

    assert result.returncode == 1
    assert f"the venv's python {python} is under /tmp" in result.stderr
    assert f"the python home of the venv {tmp_path} is under /tmp" in result.stderr
    assert "error: the repository" not in result.stderr


def test_check_passes_system_python(visible_dir: Path, system_python: Path) -> None:
    repository = fake_repository(visible_dir / "repo", system_python)

    result = run_check(repository, MISSING_USER)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f"user {MISSING_USER} does not exist yet" in result.stdout
    assert f"ok: {repository} passes the checks" in result.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
@pytest.mark.skipif(shutil.which("runuser") is None, reason="runuser is missing")
def test_check_rejects_user_without_access(
    visible_dir: Path, system_python: Path
) -> None:
    import pwd

    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("user nobody does not exist")
    # The system python runs as user nobody but has no appliance package.
    repository = fake_repository(visible_dir / "repo", system_python)

    result = run_check(repository, "nobody")

    assert result.returncode == 1
    assert "error: user nobody cannot run" in result.stderr
    assert "import appliance" in result.stderr
    assert "ok:" not in result.stdout


def test_check_rejects_hidden_home(visible_dir: Path, system_python: Path) -> None:
    repository = fake_repository(visible_dir / "repo", system_python)

    result = run_check(
        repository, MISSING_USER, APPLIANCE_SERVICE_HOME="/home/appliance"
    )

    assert result.returncode == 1
    assert "error: /home/appliance is under /home, which the unit hides" in (
        result.stderr
    )
    assert "ok:" not in result.stdout


def test_check_notes_config_home(visible_dir: Path, system_python: Path) -> None:
    repository = fake_repository(visible_dir / "repo", system_python)
    config_dir = visible_dir / "etc"
    config_dir.mkdir()
    (config_dir / "config.toml").write_text(
        '[storage]\nhome = "~/.local/share/edge-appliance"\n', encoding="utf-8"
    )

    result = run_check(repository, MISSING_USER, APPLIANCE_CONFIG_DIR=str(config_dir))

    assert result.returncode == 0, result.stderr
    assert (
        f"note: {config_dir}/config.toml sets [storage] home = "
        '"~/.local/share/edge-appliance", but the unit sets '
        "APPLIANCE_HOME=/var/lib/edge-appliance"
    ) in result.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the install runs as root only")
def test_install_verifies_before_changes(
    visible_dir: Path, system_python: Path, tmp_path: Path
) -> None:
    # Stand-ins for the tools that change the box record their calls, and
    # systemd-analyze rejects the unit, so the install must stop first.
    tools = tmp_path / "bin"
    tools.mkdir()
    calls = tmp_path / "calls"
    for name in ("useradd", "install", "systemctl"):
        tool = tools / name
        tool.write_text(f"#!/bin/sh\necho {name} >>{calls}\n", encoding="utf-8")
        tool.chmod(0o755)
    analyze = tools / "systemd-analyze"
    analyze.write_text("#!/bin/sh\necho 'bad unit' >&2\nexit 1\n", encoding="utf-8")
    analyze.chmod(0o755)
    repository = fake_repository(visible_dir / "repo", system_python)
    env = {
        **os.environ,
        "PATH": f"{tools}:{os.environ['PATH']}",
        "APPLIANCE_PREFIX": str(repository),
        "APPLIANCE_USER": MISSING_USER,
        "APPLIANCE_CONFIG_DIR": str(visible_dir / "etc"),
        "APPLIANCE_SERVICE_HOME": str(visible_dir / "home"),
    }

    result = subprocess.run(
        [str(ROOT / "scripts" / "install-service.sh"), "--no-start"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 1
    assert "systemd-analyze verify rejects the unit; nothing was changed" in (
        result.stderr
    )
    assert not calls.exists()
    assert not (visible_dir / "home").exists()
    assert not (visible_dir / "etc").exists()
