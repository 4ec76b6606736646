"""Retraining commands: ``retrain NAME`` and ``retrain NAME --history``.

While a daemon runs, the request goes to its ``/v1/models/NAME/retrain``
route, and the command polls the same route until the run has finished.
Without a daemon, the command decides and trains on its own catalog
connection.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from typing import Any

from appliance.cli._output import add_command, add_json_flag, print_rows
from appliance.cli._urls import name_segment
from appliance.config import Config
from appliance.errors import DaemonError

POLL_SECONDS = 1.0
STOPPED_SECONDS = 3.0
"""How long refused connections go on while a run is awaited before the
command takes the daemon as stopped."""
EXIT_RUN_FAILED = 3
"""Exit status when the retraining run failed or a daemon stop interrupted it."""
_UNFINISHED = ("failed", "interrupted")
_HISTORY_COLUMNS = [
    "started_at",
    "as_of",
    "trigger",
    "outcome",
    "champion_version",
    "challenger_version",
    "promoted_version",
    "champion_score",
    "challenger_score",
    "reason",
]
_PRINTED_FIELDS = (
    "as_of",
    "new_labels",
    "champion_version",
    "challenger_version",
    "promoted_version",
    "champion_score",
    "challenger_score",
)
_EXIT_STATUS = f"""exit status:
  0  the run finished (promoted or rejected), the policy skipped it, or
     --no-wait returned once it started
  1  the command failed, such as an unknown model or an unreachable daemon
  2  invalid arguments
  {EXIT_RUN_FAILED}  the run failed, or a daemon stop interrupted it
"""


def register(commands: Any) -> None:
    """Add the retraining command."""
    retrain = add_command(
        commands,
        "retrain",
        _retrain,
        "decide on a retraining by the model's policy and run it",
    )
    retrain.epilog = _EXIT_STATUS
    retrain.formatter_class = argparse.RawDescriptionHelpFormatter
    retrain.add_argument("name", help="model name declared as [models.NAME]")
    retrain.add_argument(
        "--trigger",
        choices=("manual", "drift", "schedule"),
        default="manual",
        help="trigger the policy decides for (default: manual)",
    )
    retrain.add_argument(
        "--as-of",
        type=_as_of,
        help="ISO 8601 time taken as now, UTC unless an offset is given "
        "(default: the policy's clock)",
    )
    retrain.add_argument(
        "--force",
        action="store_true",
        help="train even when the policy would skip (manual trigger only)",
    )
    retrain.add_argument(
        "--no-wait",
        action="store_true",
        help="return once the daemon started the run, without waiting for it",
    )
    retrain.add_argument(
        "--history", action="store_true", help="list the model's recorded runs"
    )
    add_json_flag(retrain)


def _retrain(config: Config, args: argparse.Namespace) -> int:
    from appliance.client import find_daemon

    if args.force and args.trigger != "manual":
        print(
            f"error: --force applies to the manual trigger only, not --trigger "
            f"{args.trigger}; leave out --force or --trigger",
            file=sys.stderr,
        )
        return 2
    config.model(args.name)
    client = find_daemon(config.storage.home, config.path, config.api_key)
    if args.history:
        rows = _history(config, client, args.name)
        if not args.json:
            rows = [_history_row(row) for row in rows]
        print_rows(rows, args.json, _HISTORY_COLUMNS)
        return 0
    as_of = args.as_of
    if client is None:
        from appliance.retraining import run_offline

        record = run_offline(config, args.name, args.trigger, as_of, args.force)
    else:
        record = _through_daemon(client, args, as_of)
    _print(record, args.json)
    return EXIT_RUN_FAILED if record.get("outcome") in _UNFINISHED else 0


def _through_daemon(
    client: Any, args: argparse.Namespace, as_of: datetime | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"trigger": args.trigger, "force": args.force}
    if as_of is not None:
        body["as_of"] = as_of.isoformat()
    path = f"/v1/models/{name_segment('model', args.name)}/retrain"
    record = client.post(path, body)
    if record.get("outcome") != "running" or args.no_wait:
        return record
    while True:
        time.sleep(POLL_SECONDS)
        try:
            state = client.get(path, {"limit": 50}, refused_wait=STOPPED_SECONDS)
        except DaemonError as exc:
            if not exc.refused:
                raise
            return _stopped(record)
        if state["running"] and state["running_id"] == record["id"]:
            continue
        for row in state["history"]:
            if row["id"] == record["id"]:
                return row
        return record


def _stopped(record: dict[str, Any]) -> dict[str, Any]:
    """Return `record` as interrupted by a daemon that stopped during the run.

    The daemon records the run as interrupted, or a kill leaves it running,
    and either way its next start runs it again once.
    """
    return {
        **record,
        "outcome": "interrupted",
        "reason": (
            f"the daemon stopped during run {record['id']}, so the run is "
            "interrupted; the daemon's next start runs it again once, and "
            f"'appliance retrain {record['model']} --history' shows its outcome"
        ),
    }


def _history(config: Config, client: Any, name: str) -> list[dict[str, Any]]:
    if client is not None:
        path = f"/v1/models/{name_segment('model', name)}/retrain"
        return client.get(path, {"limit": 100})["history"]
    from appliance.monitoring import MonitoringStore

    with MonitoringStore(config.storage.home) as store:
        return store.retrain_history(name)[:100]


def _as_of(text: str) -> datetime:
    """Parse ``--as-of``, so that an invalid time is a usage error (status 2)."""
    from appliance.times import parse_time

    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _history_row(row: dict[str, Any]) -> dict[str, Any]:
    """Return a history row with its scores as text of six decimals.

    Three significant digits, the table's default, print 0.7324 and 0.7317
    alike, which hides a gain below a typical `promote_margin`.
    """
    formatted = dict(row)
    for key in ("champion_score", "challenger_score"):
        if isinstance(formatted.get(key), float):
            formatted[key] = f"{formatted[key]:.6f}"
    return formatted


def _print(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(record, default=str))
        return
    print(f"retraining of {record['model']}: {record['outcome']} ({record['id']})")
    print(f"  reason: {record['reason']}")
    for key in _PRINTED_FIELDS:
        if record.get(key) is not None:
            print(f"  {key}: {record[key]}")
    forced = (record.get("detail") or {}).get("forced")
    if forced:
        print(f"  forced: {forced}")
    if record["outcome"] == "skipped" and record.get("trigger") == "manual":
        print(f"  to train anyway: appliance retrain {record['model']} --force")
