"""``appliance datasets compact NAME``: compact a dataset's append chain.

While a daemon runs, the command goes through its HTTP API, because the
daemon has the catalog open and its buffer flushes append to the dataset.
Without a daemon, the command compacts in this process.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from appliance.cli._output import add_command, add_json_flag
from appliance.cli._urls import dataset_segment
from appliance.config import Config


def register_compact(datasets: Any) -> None:
    """Add ``datasets compact`` to the ``datasets`` group."""
    compact = add_command(
        datasets,
        "compact",
        _compact,
        "write the latest version's rows to a version of its own files, so that "
        "keep_versions can delete the folders of its append chain",
    )
    compact.add_argument("dataset")
    add_json_flag(compact)


def _compact(config: Config, args: argparse.Namespace) -> int:
    from appliance.client import LONG_TIMEOUT_SECONDS, find_daemon

    segment = dataset_segment(args.dataset)
    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        path = f"/v1/datasets/{segment}/compact"
        result = client.post(path, {}, timeout=LONG_TIMEOUT_SECONDS)
    else:
        from appliance.storage import Catalog, compact_chain, remove_orphan_folders

        with Catalog(config.storage.home) as catalog:
            # This process has the catalog open, so no flush or ingest is running.
            remove_orphan_folders(catalog)
            result = asdict(compact_chain(catalog, config.dataset(args.dataset)))
    if args.json:
        print(json.dumps(result, default=str))
    else:
        _print_result(result)
    return 0


def _print_result(result: dict[str, Any]) -> None:
    version = result["version"]
    name = f"{version['dataset']}@{version['version']}"
    if result["created"]:
        print(
            f"compacted {version['dataset']}@{version['parent']} "
            f"({result['folders']} version folders) into {name}, "
            f"{version['row_count']} rows"
        )
    elif "compacted" in version["report"]:
        print(f"already compacted: {name} reads only its own files")
    else:
        print(f"nothing to compact: {name} reads {result['folders']} version folder(s)")
    for removed in result.get("removed") or []:
        print(f"removed by retention: {version['dataset']}@{removed}")
