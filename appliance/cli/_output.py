"""Shared helpers of the commands: sub-command registration and table output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from appliance.config import Config


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


def add_decrypt_flag(
    parser: argparse.ArgumentParser, shown: str = "the plaintext of encrypted columns"
) -> None:
    """Add ``--decrypt``, described as showing `shown` in plaintext."""
    parser.add_argument(
        "--decrypt",
        action="store_true",
        help=f"show {shown}, decrypted with the column key ([security] "
        "column_key, else HOME/keys/column.key)",
    )


def row_count(text: str) -> int:
    """Parse a ``--limit`` or ``--rows`` value: a whole number of 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid row count {text!r}; use a whole number such as 100"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid row count {value}; use 0 or more")
    return value


def version_number(text: str) -> int:
    """Parse a model ``--version`` value: a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"invalid version {text!r}; model versions are numbered from 1, so "
            "give a whole number such as 3 ('appliance models list' shows them)"
        )
    return value


def model_reference(text: str) -> str:
    """Parse a ``NAME[@VERSION]`` argument: a name, and a version or alias after
    an ``@`` that is not empty."""
    name, at, reference = text.partition("@")
    if not name:
        raise argparse.ArgumentTypeError(
            f"invalid model reference {text!r}; start it with the model name, "
            "as NAME or NAME@VERSION"
        )
    if at and not reference:
        raise argparse.ArgumentTypeError(
            f"invalid model reference {text!r}: nothing follows the '@'; give "
            f"a version number or alias, as {name}@1 or {name}@champion, or "
            f"leave out the '@'"
        )
    return text


def print_rows(
    rows: list[dict[str, Any]],
    as_json: bool,
    columns: list[str],
    limit: tuple[int, str] | None = None,
) -> None:
    """Print rows as JSON lines or as an aligned table of `columns`.

    `limit` is the listing's row limit and its option, such as
    ``(100, "--limit")``. When the rows reach it, a note on stderr reports
    that more rows may match.
    """
    if limit is not None:
        note_limit(len(rows), limit)
    if as_json:
        for row in rows:
            print(json.dumps(row, default=_json_value))
        return
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(_cell(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(_cell(row[c]).ljust(widths[c]) for c in columns).rstrip())


def note_limit(shown: int, limit: tuple[int, str]) -> None:
    """Tell on stderr that a listing of `shown` rows stopped at its limit.

    `limit` is the row limit and the option that sets it, such as
    ``(100, "--limit")``.
    """
    count, option = limit
    if count and shown >= count:
        rows = "1 row" if shown == 1 else f"{shown} rows"
        print(
            f"showing {rows}, the limit; more may match, so pass a larger "
            f"{option} to see them",
            file=sys.stderr,
        )


def json_text(value: Any, indent: int | None = None) -> str:
    """Return `value` as JSON, with times in the CLI's ISO 8601 form.

    A time reads ``2026-01-31T08:00:00.123456+00:00``, as in the tables.
    """
    return json.dumps(value, indent=indent, default=_json_value)


def parse_times(record: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Return `record` with the ISO 8601 texts of `fields` read as datetimes.

    The daemon's JSON writes a UTC time as ``...Z``, where a time read from the
    catalog prints as ``...+00:00``. Reading both as datetimes lets a command
    print the same text whether or not a daemon runs.
    """
    times = {
        key: datetime.fromisoformat(record[key])
        for key in fields
        if isinstance(record.get(key), str)
    }
    return {**record, **times}


def _json_value(value: Any) -> Any:
    # ISO 8601 with a "T" and a "+00:00" offset, the form that `parse_times`
    # gives the daemon's times too, so output does not depend on the daemon.
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        # Ten significant digits show a stored value such as 98765.4321 as it
        # is, where three showed 9.88e+04.
        return f"{value:.10g}"
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None:
        return ""
    # A line break or tab inside a value would break the table's rows and
    # columns, so it is shown escaped, as in a Python string. --json prints
    # the value as it is.
    return str(value).translate(_ESCAPED)


_ESCAPED = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


def read_catalog(
    config: Config,
    path: str,
    key: str,
    function: str,
    params: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Return records from the running daemon, or from the catalog when none runs.

    While a daemon runs it holds the catalog and DuckDB refuses other
    connections, so the records come from its GET route `path` (the list under
    `key`). Otherwise ``appliance.storage.<function>`` reads them from the
    catalog opened read-only, with `params` as keyword arguments.
    """
    from appliance.client import find_daemon

    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        return client.get(path, params)[key]
    from appliance import storage

    with storage.Catalog(config.storage.home, read_only=True) as catalog:
        records = getattr(storage, function)(catalog, **(params or {}))
    return [asdict(record) for record in records]


def iso_seconds(value: datetime | str) -> str:
    """Return a time from the catalog or the daemon as ISO 8601 to the second."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.isoformat(timespec="seconds")
