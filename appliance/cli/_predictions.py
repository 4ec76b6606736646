"""Prediction log commands: ``predictions tail`` and ``predictions query``."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from typing import Any

from appliance.cli._names import check_model_known
from appliance.cli._output import (
    add_command,
    add_group,
    add_json_flag,
    print_rows,
    row_count,
)
from appliance.config import Config

_COLUMNS = ["predicted_at", "model", "version", "request_id", "row_index", "output"]


def register(commands: Any) -> None:
    """Add the prediction log commands."""
    predictions = add_group(commands, "predictions", "the prediction log")

    tail = add_command(predictions, "tail", _tail, "show the newest predictions")
    tail.add_argument("name", help="model name")
    tail.add_argument(
        "-n", "--rows", type=row_count, default=10, help="rows to show (default: 10)"
    )
    add_json_flag(tail)

    query = add_command(predictions, "query", _query, "filter the prediction log")
    query.add_argument("--model", help="only predictions of this model")
    query.add_argument("--version", type=int, help="only this model version")
    query.add_argument(
        "--since", type=_time, help="from this ISO 8601 time on (UTC unless given)"
    )
    query.add_argument(
        "--until", type=_time, help="before this ISO 8601 time (UTC unless given)"
    )
    query.add_argument(
        "--limit", type=row_count, default=100, help="most rows shown (default: 100)"
    )
    add_json_flag(query)


def _tail(config: Config, args: argparse.Namespace) -> None:
    rows = fetch(config, {"model": args.name, "limit": args.rows, "newest_first": True})
    if not rows:
        check_model_known(config, args.name)
    _print(list(reversed(rows)), args.json)


def _query(config: Config, args: argparse.Namespace) -> None:
    params = {
        "model": args.model,
        "version": args.version,
        "since": args.since,
        "until": args.until,
        "limit": args.limit,
    }
    _print(fetch(config, params), args.json)


def fetch(config: Config, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Return logged predictions from the running daemon, or from the catalog.

    Rows still waiting in the daemon's queue (at most ``[predictions]
    flush_seconds`` old) are not returned yet.
    """
    from appliance.client import find_daemon

    client = find_daemon(config.storage.home, config.path)
    if client is not None:
        return client.get("/v1/predictions", params)["predictions"]
    from appliance.predictions import query, utc_text
    from appliance.storage import Catalog

    if not (config.storage.home / "catalog.duckdb").exists():
        return []
    with Catalog(config.storage.home, read_only=True) as catalog:
        found = query(catalog, **{k: v for k, v in params.items() if v is not None})
    return [{**row, "predicted_at": utc_text(row["predicted_at"])} for row in found]


def _print(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        for row in rows:
            print(
                json.dumps(
                    {
                        **row,
                        "input": json.loads(row["input"]),
                        "output": json.loads(row["output"]),
                    },
                    default=str,
                )
            )
        return
    print_rows(rows, False, _COLUMNS)


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}; use ISO 8601 such as 2026-01-31T08:00"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
