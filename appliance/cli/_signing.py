"""Signature commands of the ``models`` group: ``verify``, ``sign``, ``rotate-key``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from appliance.cli._names import check_model_known
from appliance.cli._output import (
    add_command,
    add_json_flag,
    model_reference,
    print_rows,
)
from appliance.cli._remote import registry_read, registry_version
from appliance.config import Config


def register(models: Any) -> None:
    """Add the signature commands to the ``models`` group."""
    verify = add_command(
        models, "verify", _verify, "check the signatures of a model's versions"
    )
    verify.add_argument(
        "reference",
        type=model_reference,
        metavar="NAME[@VERSION]",
        help="model name, with @VERSION or @ALIAS to check one version "
        "(default: every version)",
    )
    add_json_flag(verify)

    sign = add_command(
        models,
        "sign",
        _sign,
        "sign a version registered before signing, vouching for its files",
    )
    sign.add_argument(
        "reference",
        type=model_reference,
        metavar="NAME@VERSION",
        help="model name and version or alias",
    )
    sign.add_argument(
        "--replace",
        action="store_true",
        help="sign again a version that has a signature, such as after a key "
        "change; its current files are signed as they are",
    )

    rotate = add_command(
        models,
        "rotate-key",
        _rotate_key,
        "replace the home's signing key: verify and re-sign every version, then "
        "retire the old key; a rerun finishes an interrupted rotation",
    )
    add_json_flag(rotate)


def _verify(config: Config, args: argparse.Namespace) -> int:
    from appliance.errors import IntegrityError
    from appliance.signing import signer_id, trusted_keys, verify_version
    from appliance.storage import SIGNATURE_FILE

    name, _, reference = args.reference.partition("@")
    check_model_known(config, name)
    trusted = trusted_keys(config)
    rows = []
    for version in _versions(config, name, reference or None):
        row = {"model": name, "version": version.version, "key_id": "", "error": ""}
        try:
            files = verify_version(version, trusted)
        except IntegrityError as exc:
            row.update(status="rejected", error=str(exc))
        else:
            row.update(status="ok", key_id=signer_id(files[SIGNATURE_FILE]))
        rows.append(row)
    print_rows(rows, args.json, ["model", "version", "status", "key_id", "error"])
    rejected = sum(row["status"] != "ok" for row in rows)
    if rejected:
        print(
            f"error: {rejected} of {len(rows)} versions of {name} failed the "
            "signature check",
            file=sys.stderr,
        )
        return 1
    return 0


def _sign(config: Config, args: argparse.Namespace) -> int:
    from appliance.access import record
    from appliance.client import find_daemon
    from appliance.signing import sign_version
    from appliance.storage import Catalog

    name, _, reference = args.reference.partition("@")
    if not reference:
        print(
            f"error: give the version to sign as {name}@VERSION; signing vouches "
            "for one version's files",
            file=sys.stderr,
        )
        return 2
    check_model_known(config, name)
    if find_daemon(config.storage.home, config.path, config.api_key) is not None:
        # The daemon owns the catalog, where the audit entry goes, and it
        # serves a newly signed version only after a restart anyway.
        print(
            f"error: a daemon runs on {config.storage.home}; stop it, sign "
            f"{args.reference}, then start it to serve the signed version",
            file=sys.stderr,
        )
        return 1
    (version,) = _versions(config, name, reference)
    signer = sign_version(config, version, args.replace)
    with Catalog(config.storage.home) as catalog:
        details = {"version": version.version, "key_id": signer}
        record(catalog, "model.sign", name, {**details, "replaced": args.replace})
    print(f"signed {name} version {version.version} with key {signer}")
    return 0


def _rotate_key(config: Config, args: argparse.Namespace) -> int:
    from appliance.client import LONG_TIMEOUT_SECONDS, find_daemon

    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        # The daemon owns the catalog, where the audit entry goes, and its
        # admin lock keeps training and promotions out meanwhile.
        path = "/v1/admin/signing/rotate"
        rotation = client.post(path, {}, LONG_TIMEOUT_SECONDS)["rotation"]
    else:
        from appliance.signing import rotate_and_record
        from appliance.storage import Catalog

        with Catalog(config.storage.home) as catalog:
            rotation = rotate_and_record(catalog, config).to_dict()
    if args.json:
        print(json.dumps(rotation))
    else:
        _print_rotation(rotation)
    rejected = rotation["rejected"]
    for name, error in rejected.items():
        print(f"error: {name} was not re-signed: {error}", file=sys.stderr)
    if rejected:
        print(
            "error: the rotation finished, but these versions failed "
            f"verification and stay rejected: {', '.join(rejected)}",
            file=sys.stderr,
        )
        return 1
    return 0


def _print_rotation(rotation: dict[str, Any]) -> None:
    for name in rotation["resigned"]:
        print(f"re-signed {name}")
    for name in rotation["kept"]:
        print(f"kept {name}, signed by another trusted key")
    resumed = " (finished an interrupted rotation)" if rotation["resumed"] else ""
    print(
        f"rotated the signing key {rotation['old_key_id']} -> "
        f"{rotation['new_key_id']}{resumed}: {len(rotation['resigned'])} "
        f"re-signed, {len(rotation['already'])} signed by the new key already, "
        f"{len(rotation['kept'])} kept, {len(rotation['rejected'])} rejected; "
        f"key {rotation['old_key_id']} is retired"
    )


def _versions(config: Config, name: str, reference: str | None) -> list[Any]:
    """Return one version of `name`, or every version when `reference` is None."""
    from appliance.registry import model_versions, version_from_record

    if reference is not None:
        return [registry_version(config, name, reference)]
    records = registry_read(
        config, "/models", "versions", {"model": name}, model_versions, name
    )
    return [version_from_record(record) for record in records]
