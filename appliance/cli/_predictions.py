"""Prediction log commands: ``predictions tail`` and ``predictions query``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance._query_limits import MAX_QUERY_ROWS, check_query_limit
from appliance.cli._names import check_model_known
from appliance.cli._output import (
    add_command,
    add_decrypt_flag,
    add_group,
    add_json_flag,
    note_limit,
    print_rows,
    row_count,
    version_number,
)
from appliance.config import Config
from appliance.errors import DaemonError
from appliance.times import parse_time

_COLUMNS = ["predicted_at", "model", "version", "request_id", "row_index", "output"]
_DECRYPTED = "each row's input, with the plaintext of its sensitive columns"


def register(commands: Any) -> None:
    """Add the prediction log commands."""
    predictions = add_group(commands, "predictions", "the prediction log")

    tail = add_command(predictions, "tail", _tail, "show the newest predictions")
    tail.add_argument("name", help="model name")
    tail.add_argument(
        "-n",
        "--rows",
        type=row_count,
        default=10,
        help=f"rows to show, at most {MAX_QUERY_ROWS} (default: 10)",
    )
    add_decrypt_flag(tail, _DECRYPTED)
    add_json_flag(tail)

    query = add_command(predictions, "query", _query, "filter the prediction log")
    query.add_argument("--model", help="only predictions of this model")
    query.add_argument("--version", type=version_number, help="only this model version")
    query.add_argument(
        "--since", type=_time, help="from this ISO 8601 time on (UTC unless given)"
    )
    query.add_argument(
        "--until", type=_time, help="before this ISO 8601 time (UTC unless given)"
    )
    query.add_argument(
        "--limit",
        type=row_count,
        default=100,
        help=f"most rows shown, at most {MAX_QUERY_ROWS} (default: 100)",
    )
    add_decrypt_flag(query, _DECRYPTED)
    add_json_flag(query)


def _tail(config: Config, args: argparse.Namespace) -> None:
    check_query_limit(args.rows, "--rows", paged=False)
    rows = fetch(config, {"model": args.name, "limit": args.rows, "newest_first": True})
    if not rows:
        check_model_known(config, args.name)
    _print(config, list(reversed(rows)), args, (args.rows, "--rows"))


def _query(config: Config, args: argparse.Namespace) -> None:
    params = {
        "model": args.model,
        "version": args.version,
        "since": args.since,
        "until": args.until,
        "limit": args.limit,
    }
    check_query_limit(args.limit, "--limit")
    rows = fetch(config, params)
    if not rows and args.model is not None:
        check_model_known(config, args.model)
    _print(config, rows, args, (args.limit, "--limit"))


def fetch(config: Config, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Return logged predictions from the running daemon, or from the catalog.

    Each row's ``input`` and ``output`` are JSON values, not JSON texts.
    Rows still waiting in the daemon's queue (at most ``[predictions]
    flush_seconds`` old) are not returned yet.
    """
    from appliance.client import find_daemon

    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        try:
            found = client.get("/v1/predictions", params)["predictions"]
        except DaemonError as exc:
            # The daemon rejects an unknown model with 404. The callers' name
            # check then raises the error that the catalog path raises.
            if exc.status != 404 or params.get("model") is None:
                raise
            return []
        return [_decoded(row) for row in found]
    from appliance.predictions import query, utc_text
    from appliance.storage import Catalog

    _note_journal(config.storage.home)
    if not (config.storage.home / "catalog.duckdb").exists():
        return []
    with Catalog(config.storage.home, read_only=True) as catalog:
        found = query(catalog, **{k: v for k, v in params.items() if v is not None})
    return [
        {**_decoded(row), "predicted_at": utc_text(row["predicted_at"])}
        for row in found
    ]


def _note_journal(home: Path) -> None:
    """Print on stderr how many journaled rows the log may still lack.

    A daemon that stopped without writing its log out leaves its journal,
    and the next start writes the rows that the log lacks. Until then the
    catalog may lack some of them, but the journal also keeps rows written
    already, so the count is an upper bound.
    """
    from appliance.predictions import journal_dir, read_segment, segment_files

    segments = segment_files(journal_dir(home))
    if not segments:
        return
    rows = sum(entry.rows for path in segments for entry in read_segment(path))
    if rows:
        print(
            f"note: the prediction journal in {journal_dir(home)} contains {rows} "
            "rows of a daemon that did not stop cleanly, and some may be missing "
            "here; start the daemon (appliance serve) to write them to the log",
            file=sys.stderr,
        )


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    """Return `row` with its ``input`` and ``output`` texts decoded.

    The catalog stores them as JSON texts, and a daemon before the current
    one returned them so. A decoded value is an object, never a text.
    """
    decoded = dict(row)
    for key in ("input", "output"):
        if isinstance(decoded.get(key), str):
            decoded[key] = json.loads(decoded[key])
    return decoded


def _print(
    config: Config,
    rows: list[dict[str, Any]],
    args: argparse.Namespace,
    limit: tuple[int, str],
) -> None:
    """Print `rows`, with their decrypted inputs when ``--decrypt`` is given.

    `limit` is the command's row limit and option, for the note that more
    rows may match.
    """
    if args.decrypt:
        from appliance.cli._decrypt import decrypt_predictions

        decrypt_predictions(config, rows)
    if args.json:
        note_limit(len(rows), limit)
        for row in rows:
            print(json.dumps(row, default=str))
        return
    columns = list(_COLUMNS)
    if args.decrypt:
        columns.insert(columns.index("output"), "input")
    compact = [
        {**row, "input": _compact(row.get("input")), "output": _compact(row["output"])}
        for row in rows
    ]
    print_rows(compact, False, columns, limit)


def _compact(value: Any) -> str:
    """Return a JSON value as the catalog stores it, without spaces."""
    return json.dumps(value, separators=(",", ":"))


def _time(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
