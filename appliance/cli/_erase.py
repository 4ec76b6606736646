"""The ``erase`` command: a data subject's rows removed everywhere, with a receipt."""

from __future__ import annotations

import argparse
import json
from typing import Any

from appliance.cli._output import add_command, add_json_flag, iso_seconds, print_rows
from appliance.config import Config


def register(commands: Any) -> None:
    """Add the erase command."""
    erase = add_command(
        commands,
        "erase",
        _erase,
        "remove a data subject's rows from the dataset versions, quarantine, "
        "ingest buffer and prediction log",
    )
    erase.add_argument("dataset", nargs="?", help="dataset name")
    erase.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help="key column and value of the subject; repeat for a composite key, "
        "and a row is erased when it matches every one",
    )
    erase.add_argument(
        "--dry-run",
        action="store_true",
        help="count the rows that would be removed, per place, and change nothing",
    )
    erase.add_argument(
        "--list",
        action="store_true",
        help="list the stored erasure receipts (of DATASET when given)",
    )
    add_json_flag(erase)


def _erase(config: Config, args: argparse.Namespace) -> int:
    if args.list:
        _list(config, args)
        return 0
    from appliance.erasure import parse_subject
    from appliance.errors import RequestError

    if not args.dataset:
        raise RequestError(
            "no dataset given; run 'appliance erase DATASET --where COLUMN=VALUE', "
            "or 'appliance erase --list'"
        )

    subject = parse_subject(args.dataset, args.where)
    receipt = _run(config, subject, args.dry_run)
    if args.json:
        print(json.dumps(receipt))
    else:
        _print_receipt(receipt)
    return 0


def _run(config: Config, subject: Any, dry_run: bool) -> dict[str, Any]:
    """Erase through the running daemon, or on the catalog when none runs."""
    from appliance.client import LONG_TIMEOUT_SECONDS, find_daemon

    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        body = {"dataset": subject.dataset, "keys": dict(subject.keys)}
        body["dry_run"] = dry_run
        response = client.post("/v1/admin/erase", body, timeout=LONG_TIMEOUT_SECONDS)
        return response["receipt"]
    from appliance.erasure import erase
    from appliance.storage import Catalog, remove_orphan_folders

    with Catalog(config.storage.home, read_only=dry_run) as catalog:
        if not dry_run:
            # This process has the catalog open, so no ingest or erasure runs,
            # and the folders an interrupted erasure left can be deleted.
            remove_orphan_folders(catalog)
        receipt = erase(catalog, config, subject, dry_run).to_dict()
    if not dry_run:
        compact_or_request(config, receipt)
    return receipt


def compact_or_request(config: Config, result: dict[str, Any]) -> None:
    """Compact the catalog, whose deleted rows keep their bytes until then.

    When that fails, such as because a daemon started meanwhile, the daemon's
    next start compacts it, and the ``notes`` of `result`, an erasure receipt
    or a dataset removal, say so.
    """
    from appliance.errors import StorageError
    from appliance.storage import compact_catalog, request_compaction

    try:
        compact_catalog(config.storage.home)
    except StorageError as exc:
        request_compaction(config.storage.home)
        result["notes"].append(
            f"the catalog was not compacted ({exc}); the daemon's next start "
            "compacts it"
        )


def _print_receipt(receipt: dict[str, Any]) -> None:
    verb = "would remove" if receipt["dry_run"] else "removed"
    columns = ", ".join(receipt["columns"])
    print(
        f"erasure {receipt['erasure_id']} dataset={receipt['dataset']} "
        f"keys={columns} subject_sha256={receipt['subject_sha256']}"
        + (" (dry run, nothing changed)" if receipt["dry_run"] else "")
    )
    folders: dict[str, int] = {}
    for place, count in receipt["removed"].items():
        if place == "dataset_versions":
            folders = count
            _print_folders(verb, count)
        elif isinstance(count, dict):
            for version, rows in count.items():
                print(f"  {verb} {rows} rows  {place} {version}")
            if not count:
                print(f"  {verb} 0 rows  {place}")
        elif place in ("predictions_journal", "predictions_spill"):
            print(f"  {verb} {count} rows  {place} (also in predictions_table)")
        else:
            print(f"  {verb} {count} rows  {place}")
    _print_total(receipt["total"], folders)
    if receipt["models"]:
        print(f"  trained on the erased rows: {', '.join(receipt['models'])}")
    for note in receipt["notes"]:
        print(f"note: {note}")


def _print_folders(verb: str, folders: dict[str, int]) -> None:
    """Print the subject's rows in each version folder of the lake.

    The receipt counts rows per folder. A compacted version's folder
    contains copies of the rows of its append chain, so one row can be
    counted in several folders.
    """
    for version, rows in folders.items():
        print(f"  {verb} {rows} rows  dataset_versions folder version={version}")
    if not folders:
        print(f"  {verb} 0 rows  dataset_versions")


def _print_total(total: int, folders: dict[str, int]) -> None:
    copies = sum(folders.values())
    print(
        f"  total {total} rows: {copies} row copies in {len(folders)} version "
        f"folder{'' if len(folders) == 1 else 's'} of the lake, and "
        f"{total - copies} rows in the other places"
    )


def _list(config: Config, args: argparse.Namespace) -> None:
    from appliance.client import find_daemon

    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        params = {"dataset": args.dataset}
        receipts = client.get("/v1/admin/erasures", params)["receipts"]
    else:
        from appliance.erasure import list_receipts
        from appliance.storage import Catalog

        with Catalog(config.storage.home, read_only=True) as catalog:
            found = list_receipts(catalog, args.dataset)
        receipts = [receipt.to_dict() for receipt in found]
    rows = [
        {
            "erasure_id": r["erasure_id"],
            "dataset": r["dataset"],
            "keys": ", ".join(r["columns"]),
            "subject_sha256": r["subject_sha256"][:16],
            "finished_at": iso_seconds(r["finished_at"]),
            "rows": r["total"],
            "models": ", ".join(r["models"]),
        }
        for r in receipts
    ]
    if args.json:
        print_rows(receipts, True, [])
        return
    print_rows(rows, False, list(rows[0]) if rows else ["erasure_id"])
