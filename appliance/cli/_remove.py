"""``appliance datasets remove NAME``: a whole dataset deleted.

The command deletes the dataset's versions, lake folder, quarantined rows,
buffer folder and stored contract. It is rejected while models, feature
views or registered model versions use the dataset, or while its HTTP
ingest buffer contains rows that no version stores, unless a flag allows it.
While a daemon runs, the removal goes through its HTTP API, which then reads
its feature views again.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from appliance.cli._output import add_command, add_json_flag
from appliance.cli._urls import stored_dataset_segment
from appliance.config import Config
from appliance.errors import RequestError


def register_remove(datasets: Any) -> None:
    """Add ``datasets remove`` to the ``datasets`` group."""
    remove = add_command(
        datasets,
        "remove",
        _remove,
        "delete a dataset: its versions, lake folder, quarantined rows, ingest "
        "buffer and stored contract",
    )
    remove.add_argument("dataset", help="dataset name, in its exact case")
    remove.add_argument(
        "--ignore-dependents",
        action="store_true",
        help="remove it although models, feature views or registered model "
        "versions use it; the output lists what each loses",
    )
    remove.add_argument(
        "--drop-buffered-rows",
        action="store_true",
        help="delete rows sent over HTTP that no version stores yet (the "
        "write-ahead file and unflushed or rejected segments)",
    )
    add_json_flag(remove)


def _remove(config: Config, args: argparse.Namespace) -> int:
    removal = _run(config, args)
    if args.json:
        print(json.dumps(removal))
    else:
        print_removal(removal)
    return 0


def _run(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    """Remove through the running daemon, or on the catalog when none runs."""
    from appliance.client import LONG_TIMEOUT_SECONDS, find_daemon

    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        body = {
            "ignore_dependents": args.ignore_dependents,
            "drop_buffered_rows": args.drop_buffered_rows,
        }
        hint = "; 'appliance datasets list' names the datasets"
        segment = stored_dataset_segment(client, args.dataset, RequestError, hint)
        path = f"/v1/admin/datasets/{segment}/remove"
        response = client.post(path, body, timeout=LONG_TIMEOUT_SECONDS)
        return response["removal"]
    from appliance.cli._erase import compact_or_request
    from appliance.storage import Catalog, remove_dataset

    with Catalog(config.storage.home) as catalog:
        removal = remove_dataset(
            catalog,
            config,
            args.dataset,
            args.ignore_dependents,
            args.drop_buffered_rows,
        ).to_dict()
    compact_or_request(config, removal)
    return removal


def print_removal(removal: dict[str, Any]) -> None:
    """Print what a removal deleted and what its ignored dependents lose."""
    versions = removal["versions"]
    print(
        f"removed dataset {removal['dataset']} (removal {removal['removal_id']}): "
        f"{len(versions)} version{'' if len(versions) == 1 else 's'}, "
        f"newest with {removal['rows']} rows; "
        f"{removal['quarantined_rows']} quarantined rows; "
        f"{removal['files_deleted']} files"
    )
    if removal["dropped_rows"]:
        print(
            f"  dropped {removal['dropped_rows']} buffered rows that no version stored"
        )
    for dependent in removal["dependents"]:
        print(
            f"  ignored dependent: {dependent['kind']} {dependent['name']} "
            f"{dependent['loses']}"
        )
    for note in removal["notes"]:
        print(f"note: {note}")
