"""Shared helpers of the commands: sub-command registration and table output."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any


def add_command(
    commands: Any, name: str, handler: Callable[..., int | None], text: str
) -> argparse.ArgumentParser:
    """Add sub-command `name` that runs `handler(config, args)`."""
    parser = commands.add_parser(name, help=text, description=text)
    parser.set_defaults(handler=handler)
    return parser


def add_group(commands: Any, name: str, text: str) -> Any:
    """Add a command group such as ``models`` and return its sub-commands."""
    return commands.add_parser(name, help=text, description=text).add_subparsers(
        metavar="ACTION"
    )


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--json`` for machine-readable output."""
    parser.add_argument("--json", action="store_true", help="print JSON lines")


def print_rows(rows: list[dict[str, Any]], as_json: bool, columns: list[str]) -> None:
    """Print rows as JSON lines or as an aligned table of `columns`."""
    if as_json:
        for row in rows:
            print(json.dumps(row, default=str))
        return
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(_cell(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(_cell(row[c]).ljust(widths[c]) for c in columns).rstrip())


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)
