"""Signature commands of the ``models`` group: ``verify`` and ``sign``."""

from __future__ import annotations

import argparse
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
    """Add ``models verify`` and ``models sign`` to the ``models`` group."""
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


def _versions(config: Config, name: str, reference: str | None) -> list[Any]:
    """Return one version of `name`, or every version when `reference` is None."""
    from appliance.registry import model_versions, version_from_record

    if reference is not None:
        return [registry_version(config, name, reference)]
    records = registry_read(
        config, "/models", "versions", {"model": name}, model_versions, name
    )
    return [version_from_record(record) for record in records]
