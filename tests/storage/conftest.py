"""Fixtures of the storage tests: a fresh catalog and a CSV writer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import WriteFile

from appliance.storage import Catalog


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    """Return an open catalog in a fresh home under `tmp_path`."""
    with Catalog(tmp_path / "home") as opened:
        yield opened


@pytest.fixture
def write_file(tmp_path: Path) -> WriteFile:
    """Return a writer of files under ``tmp_path/data`` from bytes or text."""

    def write(name: str, content: bytes | str) -> Path:
        path = tmp_path / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        path.write_bytes(data)
        return path

    return write
