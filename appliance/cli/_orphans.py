"""Orphan folder commands: ``orphans list`` and ``orphans remove``.

The daemon's start and a command-line ingest move each lake folder that no
catalog row reads to ``HOME/orphans/DATASET/``, unless it is a leftover of an
unfinished write. Nothing deletes those folders on its own, because they may
contain the only copy of committed rows.
"""

from __future__ import annotations

import argparse
from typing import Any

from appliance.cli._output import add_command, add_group, add_json_flag, print_rows
from appliance.config import Config
from appliance.disk_use import size_text
from appliance.errors import RequestError

_COLUMNS = ["dataset", "folder", "size", "files", "modified_at"]


def register(commands: Any) -> None:
    """Add the orphan folder commands."""
    orphans = add_group(
        commands,
        "orphans",
        "lake folders that no catalog row reads, moved to HOME/orphans",
    )
    listing = add_command(
        orphans,
        "list",
        _list,
        "list the orphan folders with their size and newest file time; works "
        "while the daemon runs",
    )
    listing.add_argument("dataset", nargs="?", help="only the folders of DATASET")
    add_json_flag(listing)

    remove = add_command(
        orphans,
        "remove",
        _remove,
        "delete orphan folders, with every row in them, and record it in the "
        "audit log; ingest the rows to keep first",
    )
    remove.add_argument("dataset", nargs="?", help="dataset whose folders to delete")
    remove.add_argument(
        "folders",
        nargs="*",
        metavar="FOLDER",
        help="only these folders of DATASET, such as version=0123456789abcdef",
    )
    remove.add_argument(
        "--all", action="store_true", help="delete the folders of every dataset"
    )
    add_json_flag(remove)


def _list(config: Config, args: argparse.Namespace) -> None:
    from appliance.storage import list_orphans

    found = [
        orphan.to_dict() for orphan in list_orphans(config.storage.home, args.dataset)
    ]
    if args.json:
        print_rows(found, True, _COLUMNS)
        return
    print_rows([_row(folder) for folder in found], False, _COLUMNS)
    if found:
        total = sum(folder["bytes"] for folder in found)
        print(f"total {size_text(total)} in {len(found)} folders")


def _remove(config: Config, args: argparse.Namespace) -> None:
    if args.all == bool(args.dataset):
        raise RequestError(
            "name a dataset ('appliance orphans remove DATASET [FOLDER ...]') or "
            "pass --all, and not both; 'appliance orphans list' shows the folders"
        )
    removed = _run(config, args.dataset, args.folders)
    if args.json:
        print_rows(removed, True, _COLUMNS)
        return
    for folder in removed:
        size = size_text(folder["bytes"])
        print(f"removed {folder['path']} ({size}, {folder['files']} files)")
    total = sum(folder["bytes"] for folder in removed)
    print(f"removed {len(removed)} folders, {size_text(total)}")


def _run(config: Config, dataset: str | None, folders: list[str]) -> list[dict]:
    """Remove through the running daemon, or on the catalog when none runs.

    While a daemon runs, only it can write the catalog, where the audit
    entries go, so it removes the folders.
    """
    from appliance.client import find_daemon

    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        body = {"dataset": dataset, "folders": folders}
        return client.post("/v1/admin/orphans/remove", body)["removed"]
    from appliance.storage import Catalog, remove_orphans

    with Catalog(config.storage.home) as catalog:
        removed = remove_orphans(catalog, dataset, folders)
    return [orphan.to_dict() for orphan in removed]


def _row(folder: dict[str, Any]) -> dict[str, Any]:
    return {**folder, "size": size_text(folder["bytes"])}
