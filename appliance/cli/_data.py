"""Dataset commands: ``ingest`` and ``datasets``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from appliance.cli._output import add_command, add_group, add_json_flag, print_rows
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
    from appliance.storage import Catalog, ingest

    with Catalog(config.storage.home) as catalog:
        result = ingest(catalog, args.dataset, args.paths)
    version = result.version
    state = "created" if result.created else "unchanged, already ingested"
    print(f"{version.dataset}@{version.version} rows={version.row_count} ({state})")


def _list(config: Config, args: argparse.Namespace) -> None:
    from appliance.storage import Catalog, list_versions

    with Catalog(config.storage.home, read_only=True) as catalog:
        versions = list_versions(catalog)
    rows = [
        {
            "dataset": v.dataset,
            "version": v.version,
            "parent": v.parent,
            "rows": v.row_count,
            "columns": len(v.schema),
            "created_at": v.created_at.isoformat(timespec="seconds"),
            "path": str(v.path),
        }
        for v in versions
    ]
    print_rows(rows, args.json, ["dataset", "version", "rows", "columns", "created_at"])
