"""Code and library versions recorded with each run."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

KEY_PACKAGES = (
    "edge-appliance",
    "duckdb",
    "lightgbm",
    "numpy",
    "onnx",
    "onnxmltools",
    "onnxruntime",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "skl2onnx",
)


def code_version() -> str:
    """Return the git commit of the source tree, else the package version.

    A commit with uncommitted changes gets a ``+dirty`` suffix.
    """
    root = Path(__file__).resolve().parents[2]
    try:
        commit = _git(root, "rev-parse", "--short=12", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
        return "git:" + commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "edge-appliance " + metadata.version("edge-appliance")


def package_versions() -> dict[str, str]:
    """Return the versions of Python and the key libraries, by name."""
    versions = {"python": platform.python_version()}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(root), *args],
        capture_output=True,
        text=True,
        timeout=5,
        check=True,
    )
    return result.stdout.strip()
