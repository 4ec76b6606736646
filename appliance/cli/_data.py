"""Dataset commands: ``ingest`` and ``datasets``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from appliance.cli._output import (
    add_command,
    add_group,
    add_json_flag,
    iso_seconds,
    print_rows,
)
from appliance.config import Config


def register(commands: Any) -> None:
    """Add the dataset commands."""
    ingest = add_command(commands, "ingest", _ingest, "load files as a dataset version")
    ingest.add_argument("dataset", help="dataset name")
    ingest.add_argument(
        "paths", nargs="+", type=Path, help="CSV, Parquet or JSON-lines files"
    )

    datasets = add_group(commands, "datasets", "dataset versions")
    add_json_flag(add_command(datasets, "list", _list, "list dataset versions"))


def _ingest(config: Config, args: argparse.Namespace) -> None:
    from appliance.client import find_daemon

    client = find_daemon(config.storage.home)
    if client is not None:
        # The daemon reads the files itself, so it gets absolute paths.
        paths = [str(path.resolve()) for path in args.paths]
        result = client.post(
            "/v1/admin/ingest", {"dataset": args.dataset, "paths": paths}
        )
        created, version = result["created"], result["version"]
    else:
        from dataclasses import asdict

        from appliance.storage import Catalog, ingest

        with Catalog(config.storage.home) as catalog:
            local = ingest(catalog, args.dataset, args.paths)
        created, version = local.created, asdict(local.version)
    state = "created" if created else "unchanged, already ingested"
    print(
        f"{version['dataset']}@{version['version']} rows={version['row_count']} "
        f"({state})"
    )


def _list(config: Config, args: argparse.Namespace) -> None:
    from appliance.cli._output import read_catalog

    versions = read_catalog(config, "/v1/admin/datasets", "datasets", "list_versions")
    rows = [
        {
            "dataset": v["dataset"],
            "version": v["version"],
            "parent": v["parent"],
            "rows": v["row_count"],
            "columns": len(v["schema"]),
            "created_at": iso_seconds(v["created_at"]),
            "path": str(v["path"]),
        }
        for v in versions
    ]
    print_rows(rows, args.json, ["dataset", "version", "rows", "columns", "created_at"])
