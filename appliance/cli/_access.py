"""Access commands: ``keys create|list|revoke`` and ``audit list|verify``.

While a daemon runs they go through its admin routes, with the key in
``APPLIANCE_API_KEY``. Otherwise they open the catalog themselves, which
needs no key, because a user who can write the home's files operates the box.
That is how the first admin key is made. The audit log then names the actor
``local`` with the OS user.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import timedelta
from typing import Any

from appliance.cli._output import add_command, add_group, add_json_flag, print_rows
from appliance.cli._urls import name_segment
from appliance.config import Config
from appliance.errors import DaemonError
from appliance.times import parse_time

_KEY_COLUMNS = [
    "name",
    "role",
    "token_prefix",
    "created_at",
    "created_by",
    "expires_at",
    "status",
]
_NO_ADMIN_KEY_HINT = (
    "Without an admin key, stop the daemon ('systemctl stop appliance' under "
    "systemd), run 'appliance keys create NAME --role admin' as the user that "
    "owns the home (with no daemon running it writes the catalog and needs no "
    "key), then start the daemon again and send the new token in "
    "APPLIANCE_API_KEY"
)
"""Way back for a user without an admin token. The daemon's admin routes need
one, but a stopped daemon leaves the catalog to the local commands."""
_LIFETIME = re.compile(r"([0-9]{1,12})([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_AUDIT_COLUMNS = [
    "seq",
    "recorded_at",
    "actor",
    "action",
    "target",
    "outcome",
    "details",
]


def register(commands: Any) -> None:
    """Add the key and audit commands."""
    from appliance.access import ROLES

    keys = add_group(commands, "keys", "API keys of the daemon's HTTP API")
    create = add_command(
        keys, "create", _create, "create a key and print its token once"
    )
    create.set_defaults(skip_home_check=True)
    create.add_argument("name", help="key name, shown in the audit log")
    create.add_argument(
        "--role",
        required=True,
        choices=ROLES,
        help="rights of the key; each role includes the ones listed before it",
    )
    create.add_argument(
        "--expires-in",
        type=_lifetime,
        metavar="DURATION",
        help="lifetime of the key, a whole number with unit s, m, h or d, such "
        "as 30d or 12h; the key is rejected from then on (default: never "
        "expires)",
    )
    add_json_flag(create)
    listing = add_command(keys, "list", _list, "list keys without their tokens")
    add_json_flag(listing)
    revoke = add_command(keys, "revoke", _revoke, "revoke a key at once")
    revoke.add_argument("name")

    audit = add_group(commands, "audit", "the audit log of who did what")
    entries = add_command(audit, "list", _audit_list, "list entries, oldest first")
    entries.add_argument(
        "--since", type=_time, help="from this ISO 8601 time on (UTC unless given)"
    )
    entries.add_argument(
        "--action",
        help="only this action, or every action under a prefix such as 'model'",
    )
    entries.add_argument(
        "--limit",
        type=_entry_limit,
        default=1000,
        help="newest entries shown (default: 1000)",
    )
    add_json_flag(entries)
    verify = add_command(
        audit, "verify", _audit_verify, "check the hash chain; exit 1 when broken"
    )
    verify.add_argument(
        "--anchor",
        type=_anchor,
        help="SEQ:HASH of an entry kept off the box (the daemon logs each one); "
        "finds deleted newest entries",
    )


def _create(config: Config, args: argparse.Namespace) -> None:
    lifetime: timedelta | None = args.expires_in
    body: dict[str, Any] = {"name": args.name, "role": args.role}
    if lifetime is not None:
        # The daemon adds the lifetime to its own clock reading, which also
        # gives the key's created_at.
        body["expires_in_seconds"] = int(lifetime.total_seconds())
    created = _through_daemon(config, "post", "/v1/admin/keys", body)
    if created is None:
        from appliance.access import create_key

        with _catalog(config) as catalog:
            key, token = create_key(catalog, args.name, args.role, lifetime)
        created = {**key.to_dict(), "token": token}
    if args.json:
        print(json.dumps(created))
        return
    expiry = created.get("expires_at")
    until = "; it never expires" if expiry is None else f" until {expiry}"
    print(
        f"key {created['name']!r} created with role {created['role']}{until}; its "
        "token is shown only now, so store it:"
    )
    print(created["token"])


def _list(config: Config, args: argparse.Namespace) -> None:
    found = _through_daemon(config, "get", "/v1/admin/keys")
    if found is None:
        from appliance.access import list_keys

        with _catalog(config, read_only=True) as catalog:
            found = {"keys": [key.to_dict() for key in list_keys(catalog)]}
    rows = [{**key, "status": _key_status(key)} for key in found["keys"]]
    if not args.json:
        rows = [{**row, "expires_at": row["expires_at"] or "never"} for row in rows]
    print_rows(rows, args.json, _KEY_COLUMNS)


def _key_status(key: dict[str, Any]) -> str:
    """Return ``active``, ``revoked TIME`` or ``expired TIME`` for a listed key."""
    if key.get("revoked_at") is not None:
        return f"revoked {key['revoked_at']}"
    if not key["active"]:
        return f"expired {key['expires_at']}"
    return "active"


def _revoke(config: Config, args: argparse.Namespace) -> None:
    path = f"/v1/admin/keys/{name_segment('API key', args.name)}/revoke"
    revoked = _through_daemon(config, "post", path, {})
    if revoked is None:
        from appliance.access import revoke_key

        with _catalog(config) as catalog:
            revoked = revoke_key(catalog, args.name).to_dict()
    print(f"key {revoked['name']!r} revoked at {revoked['revoked_at']}")


def _audit_list(config: Config, args: argparse.Namespace) -> None:
    params = {"since": args.since, "action": args.action, "limit": args.limit}
    found = _through_daemon(config, "get", "/v1/admin/audit", params)
    if found is None:
        from appliance.access import list_entries

        with _catalog(config, read_only=True) as catalog:
            entries = list_entries(catalog, args.since, args.action, args.limit)
        found = {"entries": [entry.to_dict() for entry in entries]}
    rows = found["entries"]
    if not rows and args.action is not None:
        _check_action_known(args.action)
    if not args.json:
        rows = [_shown_entry(entry) for entry in rows]
    print_rows(rows, args.json, _AUDIT_COLUMNS, (args.limit, "--limit"))


def _check_action_known(action: str) -> None:
    """Raise `NotFoundError` unless `action` is an audit action or its prefix."""
    from appliance.access import ACTIONS
    from appliance.errors import NotFoundError

    if any(known == action or known.startswith(action + ".") for known in ACTIONS):
        return
    raise NotFoundError(
        f"no audit entry has action {action!r}, which is not an action the "
        f"appliance records; known actions: {', '.join(ACTIONS)}, or a prefix "
        "such as 'model'"
    )


def _audit_verify(config: Config, args: argparse.Namespace) -> int:
    anchor = args.anchor
    params = {"anchor": f"{anchor.seq}:{anchor.hash}"} if anchor else None
    check = _through_daemon(config, "get", "/v1/admin/audit/verify", params)
    if check is None:
        from appliance.access import verify_chain

        with _catalog(config, read_only=True) as catalog:
            check = verify_chain(catalog, anchor).to_dict()
    if check["intact"]:
        count, head = check["entries"], check["head"] or "none"
        matched = f", entry {anchor.seq} matches the anchor" if anchor else ""
        print(f"audit log intact: {count} entries, newest hash {head}{matched}")
        if count:
            print(f"keep '{count}:{head}' off the box and pass it as --anchor later")
        return 0
    before = check["entries"]
    verified = {0: "no entry before it", 1: "the 1 entry before it"}.get(
        before, f"the {before} entries before it"
    )
    print(
        f"audit log broken at entry {check['broken_seq']}: {check['problem']}; "
        f"{verified} verified"
    )
    return 1


def _shown_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """Return an entry for the table: actor with role or user, details as JSON."""
    actor = entry["actor"]
    qualifier = entry["actor_role"] or entry["actor_user"]
    if qualifier:
        actor = f"{actor} ({qualifier})"
    details = json.dumps(entry["details"], sort_keys=True, separators=(",", ":"))
    return {**entry, "actor": actor, "details": details}


def _through_daemon(
    config: Config, method: str, path: str, body: Any = None
) -> Any | None:
    """Return the daemon's response, or None when no daemon runs on the home."""
    from appliance.client import find_daemon

    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is None:
        return None
    try:
        if method == "get":
            return client.get(path, body)
        return client.post(path, body)
    except DaemonError as exc:
        if exc.status not in (401, 403):
            raise
        raise DaemonError(f"{exc}. {_NO_ADMIN_KEY_HINT}", exc.status) from None


def _catalog(config: Config, read_only: bool = False) -> Any:
    from appliance.storage import Catalog

    return Catalog(config.storage.home, read_only=read_only)


def _anchor(text: str) -> Any:
    from appliance.access import Anchor

    try:
        return Anchor.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _entry_limit(text: str) -> int:
    """Parse ``audit list --limit``: a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"invalid entry count {text!r}; use a whole number of 1 or more, "
            "such as 100"
        )
    return value


def _lifetime(text: str) -> timedelta:
    """Parse a key lifetime such as ``30d``, ``12h``, ``90m`` or ``3600s``."""
    from appliance.access import MAX_LIFETIME

    found = _LIFETIME.fullmatch(text.strip())
    if found is None or int(found[1]) < 1:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use a whole number from 1 with unit s, "
            "m, h or d, such as 30d or 12h"
        )
    seconds = int(found[1]) * _UNIT_SECONDS[found[2]]
    if seconds > MAX_LIFETIME.total_seconds():
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: a key may live at most "
            f"{MAX_LIFETIME.days} days; leave out --expires-in for a key that "
            "never expires"
        )
    return timedelta(seconds=seconds)


def _time(text: str) -> Any:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
