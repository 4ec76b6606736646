"""The ``disk`` command: disk use of each part of the home."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from appliance.cli._output import add_command, add_json_flag, print_rows
from appliance.config import Config
from appliance.disk_use import size_text
from appliance.errors import StorageError


def register(commands: Any) -> None:
    """Add the disk command."""
    disk = add_command(
        commands,
        "disk",
        _disk,
        "show the disk use of each part of the home, from file sizes; works "
        "while the daemon runs",
    )
    add_json_flag(disk)


def _disk(config: Config, args: argparse.Namespace) -> None:
    from appliance.disk_use import disk_use

    home = config.storage.home
    if not home.is_dir():
        raise StorageError(
            f"home folder {home} not found; check [storage] home in the "
            "configuration, or APPLIANCE_HOME"
        )
    parts = disk_use(home)
    rows: list[dict[str, Any]] = [
        {**asdict(p), "path": str(p.path), "size": size_text(p.bytes)} for p in parts
    ]
    total = sum(p.bytes for p in parts)
    rows.append(
        {
            "part": "total",
            "path": str(config.storage.home),
            "bytes": total,
            "files": sum(p.files for p in parts),
            "size": size_text(total),
        }
    )
    if args.json:
        rows = [{k: v for k, v in row.items() if k != "size"} for row in rows]
    print_rows(rows, args.json, ["part", "size", "files", "path"])
