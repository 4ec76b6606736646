"""Monitoring commands: ``drift NAME``, ``drift [NAME] --check`` and
``alerts list|ack|resolve``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from appliance.cli._names import check_model_known
from appliance.cli._output import add_command, add_group, add_json_flag, print_rows
from appliance.cli._urls import name_segment
from appliance.config import Config
from appliance.errors import ApplianceError, ConfigError, shown

if TYPE_CHECKING:
    from appliance.client import DaemonClient

_DRIFT_COLUMNS = [
    "checked_at",
    "feature",
    "kind",
    "status",
    "psi",
    "statistic",
    "p_value",
]
CHECK_TIMEOUT_SECONDS = 300.0
"""Time the command waits for the daemon to finish one model's drift check."""
_ALERT_COLUMNS = [
    "id",
    "status",
    "model",
    "kind",
    "subject",
    "count",
    "last_seen_at",
    "message",
]


def register(commands: Any) -> None:
    """Add the monitoring commands."""
    drift = add_command(
        commands, "drift", _drift, "show a model's latest drift scores and history"
    )
    drift.add_argument(
        "name",
        nargs="?",
        help="model name declared as [models.NAME]; with --check and no name, "
        "every declared model",
    )
    drift.add_argument(
        "--check",
        action="store_true",
        help="run the batch drift check now, store its scores and alert as the "
        "scheduled check does, and print its outcome",
    )
    drift.set_defaults(usage_error=drift.error)
    drift.add_argument(
        "--history", type=int, default=5, help="earlier checks shown (default: 5)"
    )
    drift.add_argument(
        "--events",
        type=int,
        default=20,
        help="newest streaming detections shown (default: 20)",
    )
    add_json_flag(drift)

    alerts = add_group(commands, "alerts", "monitoring alerts")
    listing = add_command(alerts, "list", _alerts_list, "list alerts, newest first")
    listing.add_argument("--open", action="store_true", help="only open alerts")
    listing.add_argument("--model", help="only alerts of this model")
    add_json_flag(listing)
    ack = add_command(alerts, "ack", _alerts_ack, "acknowledge an alert")
    ack.add_argument("id", type=int, help="alert id, from 'appliance alerts list'")
    resolve = add_command(
        alerts,
        "resolve",
        _alerts_resolve,
        "resolve an alert and send the resolution to [monitoring] webhook_url",
    )
    resolve.add_argument("id", type=int, help="alert id, from 'appliance alerts list'")


def _drift(config: Config, args: argparse.Namespace) -> int:
    from appliance.client import find_daemon
    from appliance.monitoring import drift_summary

    if args.check:
        return _check_drift(config, args)
    if args.name is None:
        args.usage_error("give a model name, or --check to check every model")
    # Checked before the daemon is called, so an undeclared or invalid name
    # gets the same error with and without a daemon, as with --check.
    config.model(args.name)
    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        summary, events, total = _drift_from_daemon(client, args)
    else:
        rows, events, total, scheduled = _drift_from_store(config, args)
        summary = {**drift_summary(rows, args.history), "scheduled_check": scheduled}
    if args.json:
        shown = {"events": events, "events_total": total}
        print(json.dumps({"model": args.name, **summary, **shown}, default=str))
        return 0
    if not summary["latest"]:
        print(f"no drift check recorded for model {args.name!r} yet")
    else:
        print(f"latest check of {args.name}:")
        print_rows(summary["latest"], False, _DRIFT_COLUMNS)
    for line in scheduled_check_lines(args.name, summary.get("scheduled_check")):
        print(line)
    if summary["history"]:
        print("\nearlier checks:")
        print_rows(
            [
                {**h, "drifted": ", ".join(h["drifted"]) or "-"}
                for h in summary["history"]
            ],
            False,
            ["checked_at", "features", "drifted"],
        )
    if not events:
        return 0
    if total > len(events):
        print(
            f"\nstreaming detections, newest {len(events)} of {total} "
            "(--events N shows more):"
        )
    else:
        print("\nstreaming detections:")
    print_rows(events, False, ["detected_at", "kind", "subject", "cause", "position"])
    return 0


def _check_drift(config: Config, args: argparse.Namespace) -> int:
    """Run the batch drift check of one model, or of every declared one.

    Returns:
        0 when every check ran or was skipped, 1 when one of several failed.
        A failed check of a single model raises its error.
    """
    from appliance.client import find_daemon

    if args.name is not None:
        config.model(args.name)
        names = [args.name]
    else:
        names = sorted(config.models)
    if not names:
        raise ConfigError(
            f"no model is declared in {config.path}, so none is checked; "
            "declare one as [models.NAME]"
        )
    client = find_daemon(config.storage.home, config.path, config.api_key)
    status = 0
    for name in names:
        try:
            if client is not None:
                check = _check_through_daemon(client, name)
            else:
                check = _check_locally(config, name)
        except ApplianceError as exc:
            if len(names) == 1:
                raise
            print(
                f"error: drift check of model {name!r} failed: {exc}", file=sys.stderr
            )
            status = 1
            continue
        _print_check(check, args.json)
    return status


def _check_through_daemon(client: DaemonClient, name: str) -> dict[str, Any]:
    path = f"/v1/models/{name_segment('model', name)}/drift/check"
    return client.post(path, {}, timeout=CHECK_TIMEOUT_SECONDS)


def _check_locally(config: Config, name: str) -> dict[str, Any]:
    """Run a drift check with no daemon running, and audit it in the catalog."""
    from appliance.access import record
    from appliance.monitoring import run_drift_check
    from appliance.storage import Catalog

    check = run_drift_check(config, name)
    with Catalog(config.storage.home) as catalog:
        record(catalog, "drift.check", name, check.audit_details())
    return check.to_dict()


def _print_check(check: dict[str, Any], as_json: bool) -> None:
    """Print a drift check as one JSON line, or as a summary and a table."""
    if as_json:
        print(json.dumps(check, default=str))
        return
    name = check["model"]
    at = f"{datetime.fromisoformat(check['checked_at']):%Y-%m-%d %H:%M:%S}"
    if "skipped" in check:
        print(f"drift check of {name} at {at} skipped: {check['skipped']}")
        _print_reference(check)
        return
    drifted = ", ".join(check["drifted"]) or "none"
    print(
        f"drift check of {name} at {at}: {check['rows']} logged rows, "
        f"{check['tested']} features tested, drifted: {drifted}"
    )
    _print_reference(check)
    _print_unfit(check)
    if check["alert_id"] is not None:
        change = "opened" if check["alert_opened"] else "still open, count raised"
        print(f"drift alert {check['alert_id']} {change}")
    print_rows(check["features"], False, _DRIFT_COLUMNS[1:])


def _print_unfit(check: dict[str, Any]) -> None:
    """Print how many logged rows the check left out, and the first of them."""
    unfit, first = check.get("unfit_rows", 0), check.get("first_unfit_row")
    if not unfit or first is None:
        return
    if unfit == check["rows"]:
        count = (
            f"all {unfit} logged rows, which do not fit the request types, so "
            "the features computed from them score as insufficient data"
        )
    else:
        count = f"{unfit} of {check['rows']} logged rows do not fit the request types"
    column = "" if first["column"] is None else f", column {first['column']!r}"
    print(
        f"left out: {count}; first: request {first['request_id']} row "
        f"{first['row']}{column}, value {shown(first['value'])}: {first['error']}"
    )


def _print_reference(check: dict[str, Any]) -> None:
    """Print the version whose training rows the check compared with."""
    version = check.get("version")
    if version is None:
        return
    if check.get("version_source") == "champion":
        print(f"reference: version {version}, the champion")
    else:
        print(
            f"reference: version {version}, the latest registered version, "
            "because no champion alias is set"
        )


def _drift_from_store(
    config: Config, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int, dict[str, Any]]:
    """Return drift score rows, the newest detections, their total count and
    the state of the scheduled check."""
    from appliance.monitoring import MonitoringStore, scheduled_drift_check

    with MonitoringStore(config.storage.home) as store:
        rows = store.drift_history(args.name, limit=10_000)
        events = store.drift_events(args.name, limit=max(args.events, 0))
        total = store.count_drift_events(args.name)
        scheduled = scheduled_drift_check(store, args.name)
    return rows, events, total, scheduled


def scheduled_check_lines(model: str, check: dict[str, Any] | None) -> list[str]:
    """Return the lines that describe the latest scheduled drift check.

    The list is empty for a model whose check has not run on a schedule,
    and for a daemon that does not report it.
    """
    last = check.get("last_run") if check else None
    if check is None or last is None:
        return []
    if last["outcome"] != "failed":
        return [f"\nscheduled check: {last['outcome']} at {last['finished_at']}"]
    lines = [
        f"\nscheduled check: FAILED at {last['finished_at']}, "
        f"{check['failed_runs']} failed runs in a row since {check['failing_since']}",
        f"error: {last['error']}",
    ]
    if check.get("alert"):
        lines.append(f"alert {check['alert']['id']} is {check['alert']['status']}")
    lines.append(
        f"fix the cause, then run 'appliance drift {model} --check' to check now; "
        "the next scheduled run that succeeds resolves the alert"
    )
    return lines


def _drift_from_daemon(
    client: DaemonClient, args: argparse.Namespace
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """Return the drift summary, the newest detections and their total count.

    The daemon sends times as text, so they are parsed back into datetimes
    and show as they do when the CLI reads the monitoring store itself.
    """
    params = {"history": max(args.history, 0), "events": max(args.events, 0)}
    path = f"/v1/models/{name_segment('model', args.name)}/drift"
    body = client.get(path, params)
    latest = _parse_times(body["latest"], "checked_at")
    events = _parse_times(body["events"], "detected_at")
    summary = {
        "latest": latest,
        "history": body["history"],
        "scheduled_check": body.get("scheduled_check"),
    }
    return summary, events, int(body["events_total"])


def _parse_times(rows: list[dict[str, Any]], column: str) -> list[dict[str, Any]]:
    return [{**row, column: datetime.fromisoformat(row[column])} for row in rows]


def _alerts_list(config: Config, args: argparse.Namespace) -> None:
    from appliance.client import find_daemon
    from appliance.monitoring import AlertStatus, MonitoringStore

    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        params = {"status": "open" if args.open else None, "model": args.model}
        alerts = client.get("/v1/alerts", params)["alerts"]
    else:
        status = AlertStatus.OPEN if args.open else None
        with MonitoringStore(config.storage.home) as store:
            found = store.list_alerts(status, args.model)
        alerts = [a.to_dict() for a in found]
        if not alerts and args.model is not None:
            # The daemon rejects an unknown model with this error, so both
            # paths print it instead of an empty list.
            check_model_known(config, args.model)
    print_rows(alerts, args.json, _ALERT_COLUMNS)


def _alerts_ack(config: Config, args: argparse.Namespace) -> None:
    from appliance.client import find_daemon

    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        alert = client.post(f"/v1/alerts/{args.id}/acknowledge", {})
        acknowledged = datetime.fromisoformat(alert["acknowledged_at"])
    else:
        acknowledged = _acknowledge_locally(config, args.id)
    print(f"alert {args.id} acknowledged at {acknowledged:%Y-%m-%d %H:%M:%S}")


def _alerts_resolve(config: Config, args: argparse.Namespace) -> None:
    from appliance.client import find_daemon

    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        alert = client.post(f"/v1/alerts/{args.id}/resolve", {})
    else:
        alert = _resolve_locally(config, args.id)
    resolved = datetime.fromisoformat(alert["resolved_at"])
    print(
        f"alert {args.id} resolved at {resolved:%Y-%m-%d %H:%M:%S}: "
        f"{alert['resolution']}"
    )


def _resolve_locally(config: Config, alert_id: int) -> dict[str, Any]:
    """Resolve an alert with no daemon running, audit it in the catalog, and
    send it to the webhook."""
    from appliance.access import current_actor, record
    from appliance.monitoring import notify, resolve_alert
    from appliance.storage import Catalog

    resolved_by = current_actor().label
    alert, changed = resolve_alert(config.storage.home, alert_id, resolved_by)
    if changed:
        with Catalog(config.storage.home) as catalog:
            details = {"model": alert.model, "kind": alert.kind}
            record(catalog, "alert.resolve", str(alert_id), details)
        notify(config.monitoring, alert.resolved_payload(resolved_by))
    return alert.to_dict()


def _acknowledge_locally(config: Config, alert_id: int) -> datetime:
    """Acknowledge an alert with no daemon running, and audit it in the catalog."""
    from appliance.access import record
    from appliance.monitoring import MonitoringStore
    from appliance.storage import Catalog

    with MonitoringStore(config.storage.home) as store:
        alert = store.acknowledge(alert_id)
    with Catalog(config.storage.home) as catalog:
        details = {"model": alert.model, "kind": alert.kind}
        record(catalog, "alert.acknowledge", str(alert_id), details)
    assert alert.acknowledged_at is not None
    return alert.acknowledged_at
