"""Dataset commands: ``ingest`` and ``datasets list|show|diff|rows|quarantine``.

``datasets rejected`` is added from `appliance.cli._rejected`, and ``datasets
remove`` from `appliance.cli._remove`.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.cli._chain import register_compact
from appliance.cli._names import check_dataset_known
from appliance.cli._output import (
    add_command,
    add_decrypt_flag,
    add_group,
    add_json_flag,
    iso_seconds,
    print_rows,
    row_count,
)
from appliance.cli._rejected import register_rejected
from appliance.cli._remove import register_remove
from appliance.cli._urls import stored_dataset_segment
from appliance.config import Config


def register(commands: Any) -> None:
    """Add the dataset commands."""
    ingest = add_command(commands, "ingest", _ingest, "load files as a dataset version")
    ingest.set_defaults(skip_home_check=True)
    ingest.add_argument("dataset", help="dataset name")
    ingest.add_argument(
        "paths",
        nargs="+",
        type=Path,
        help="CSV, Parquet or JSON-lines files; CSV and JSON lines may be "
        "compressed (.csv.gz, .jsonl.gz)",
    )
    ingest.add_argument(
        "--mode",
        choices=("replace", "append"),
        default="replace",
        help="replace: the version holds these files only; append: the latest "
        "version's rows plus these (default: replace)",
    )
    ingest.add_argument(
        "--strict",
        action="store_true",
        help="reject the whole ingest if any row breaks the contract or the "
        "schema changed, instead of quarantining the rows",
    )
    ingest.add_argument(
        "--force",
        action="store_true",
        help="ingest even when the files lack a column that a feature view's "
        "entity key or timestamp is read from (the view then matches none of "
        "their rows), share no column with the dataset, or leave no row to "
        "store in a replace",
    )

    datasets = add_group(commands, "datasets", "dataset versions")
    add_json_flag(add_command(datasets, "list", _list, "list dataset versions"))
    show = add_command(
        datasets, "show", _show, "show a version's lineage, validation and quality"
    )
    show.add_argument("reference", metavar="DATASET[@VERSION]")
    add_json_flag(show)
    diff = add_command(datasets, "diff", _diff, "compare two dataset versions")
    diff.add_argument("a", metavar="DATASET@VERSION")
    diff.add_argument("b", metavar="DATASET@VERSION")
    add_json_flag(diff)
    rows = add_command(datasets, "rows", _rows, "print the first rows of a version")
    rows.add_argument("reference", metavar="DATASET[@VERSION]")
    rows.add_argument(
        "--limit", type=row_count, default=20, help="most rows printed (default: 20)"
    )
    add_decrypt_flag(rows)
    add_json_flag(rows)
    quarantine = add_command(
        datasets, "quarantine", _quarantine, "list rows that broke the contract"
    )
    quarantine.add_argument("dataset")
    quarantine.add_argument("--version", help="only rows of this version (id prefix)")
    quarantine.add_argument(
        "--limit", type=row_count, default=100, help="most rows listed (default: 100)"
    )
    add_decrypt_flag(quarantine)
    add_json_flag(quarantine)
    register_rejected(datasets)
    register_remove(datasets)
    register_compact(datasets)
    # TODO: add 'datasets rotate-key', which re-encrypts the lake, quarantine,
    # ingest buffer and prediction log under a new column key and finishes
    # when run again after an interruption. Until then docs/architecture.md,
    # "Rotating keys", gives the manual procedure.


def _ingest(config: Config, args: argparse.Namespace) -> int:
    from appliance.client import LONG_TIMEOUT_SECONDS, find_daemon

    # The daemon reads the files itself, so it gets absolute paths. The local
    # ingest gets them too, so its errors name a file as the daemon's do.
    paths = [path.resolve() for path in args.paths]
    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        # A large file takes minutes on a busy box, and the daemon finishes the
        # ingest even when the command stops waiting, so the wait is the long
        # one.
        result = client.post(
            "/v1/admin/ingest",
            {
                "dataset": args.dataset,
                "paths": [str(path) for path in paths],
                "mode": args.mode,
                "strict": args.strict,
                "force": args.force,
            },
            timeout=LONG_TIMEOUT_SECONDS,
        )
    else:
        from dataclasses import asdict

        from appliance.crypto import column_cipher
        from appliance.pandas_probe import skip_pyarrow_pandas_probe
        from appliance.storage import Catalog, ingest, remove_orphan_folders

        skip_pyarrow_pandas_probe()
        settings = config.dataset(args.dataset)
        cipher = column_cipher(config) if settings.sensitive else None
        with Catalog(config.storage.home) as catalog:
            # This process holds the catalog, so no other ingest is running.
            remove_orphan_folders(catalog)
            local = ingest(
                catalog,
                args.dataset,
                paths,
                args.mode,
                settings,
                args.strict,
                list(config.feature_views.values()),
                args.force,
                cipher=cipher,
            )
        result = asdict(local)
    print_ingest(result)
    return 0


def print_ingest(result: dict[str, Any]) -> None:
    """Print the outcome of an ingest, as `IngestResult` fields in JSON types."""
    version = result["version"]
    name = f"{version['dataset']}@{version['version']}"
    if result.get("rebuilt"):
        _print_rebuilt(version["dataset"], result["rebuilt"])
        return
    if not result["created"]:
        stored_in = result.get("stored_in")
        if stored_in:
            print(
                f"{name} rows={version['row_count']} (unchanged: the latest version's "
                f"rows already include these files, first ingested as "
                f"{version['dataset']}@{stored_in})"
            )
        else:
            print(f"{name} rows={version['row_count']} (unchanged, already ingested)")
        for warning in result.get("warnings", []):
            print(f"warning: {warning}")
        for note in result.get("notes", []):
            print(f"note: {note}")
        return
    print(
        f"{name} rows={version['row_count']} mode={version['mode']} "
        f"accepted={result['accepted']} quarantined={result['quarantined']} "
        "(created)"
    )
    for warning in result["warnings"]:
        print(f"warning: {warning}")
    for note in result.get("notes", []):
        print(f"note: {note}")
    if result["quarantined"]:
        print(
            f"see the quarantined rows with 'appliance datasets quarantine "
            f"{version['dataset']} --version {version['version']}'"
        )
    for removed in result["removed"]:
        print(f"removed {version['dataset']}@{removed} (retention)")


def _print_rebuilt(dataset: str, rebuilt: dict[str, int]) -> None:
    """Print one line naming the versions whose lost lake files were written again."""
    versions = ", ".join(
        f"{dataset}@{version} ({count} file{'' if count == 1 else 's'})"
        for version, count in rebuilt.items()
    )
    print(f"lake files rebuilt from these files: {versions}; no new version was stored")


def _list(config: Config, args: argparse.Namespace) -> None:
    from appliance.cli._output import read_catalog

    versions = read_catalog(config, "/v1/admin/datasets", "datasets", "list_versions")
    rows = [
        {
            "dataset": v["dataset"],
            "version": v["version"],
            "parent": v["parent"],
            "mode": v["mode"],
            "rows": v["row_count"],
            "quarantined": v["report"].get("quarantined", 0),
            "columns": len(v["schema"]),
            "created_at": iso_seconds(v["created_at"]),
            "path": str(v["path"]),
            "used_by": v.get("used_by", []),
            "rejected_users": v.get("rejected_users", []),
        }
        for v in versions
    ]
    if not args.json:
        for row in rows:
            row["used_by"] = ", ".join(
                f"{user} (rejected)" if user in row["rejected_users"] else user
                for user in row["used_by"]
            )
    print_rows(
        rows,
        args.json,
        [
            "dataset",
            "version",
            "parent",
            "mode",
            "rows",
            "quarantined",
            "created_at",
            "used_by",
        ],
    )


def _versions(config: Config, references: list[str]) -> list[Any]:
    """Return the dataset versions named by `references`, from the running
    daemon or from the catalog when none runs."""
    from appliance.client import find_daemon
    from appliance.storage import Catalog, DatasetVersion, shown_version

    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is None:
        # The catalog is read-only here, so a pending quality report is
        # computed for the output and left pending in the catalog.
        with Catalog(config.storage.home, read_only=True) as catalog:
            for reference in references:
                _check_stored_name(catalog, reference.partition("@")[0])
            return [shown_version(catalog, ref, store=False) for ref in references]
    found = []
    for reference in references:
        stored_dataset_segment(client, reference.partition("@")[0])
        record = client.get("/v1/admin/dataset-version", {"reference": reference})
        record = record["version"]
        record["path"] = Path(record["path"])
        record["created_at"] = datetime.fromisoformat(record["created_at"])
        found.append(DatasetVersion(**record))
    return found


def _check_stored_name(catalog: Any, name: str) -> None:
    """Raise `NotFoundError` when `name` is not a valid dataset name and the
    catalog has no version of it, as `stored_dataset_segment` does with a
    daemon up."""
    from appliance.config import dataset_name_problem
    from appliance.errors import NotFoundError
    from appliance.storage import list_versions

    problem = dataset_name_problem(name)
    if problem is None:
        return
    if all(version.dataset != name for version in list_versions(catalog)):
        raise NotFoundError(problem)


def _print_users(version: Any) -> None:
    """Print the model versions trained on `version` and whether they keep it."""
    rejected = version.rejected_users
    keepers = [user for user in version.used_by if user not in rejected]
    if keepers:
        print(f"  used by     {', '.join(keepers)} (retention keeps this version)")
    if rejected:
        print(
            f"  used by     {', '.join(rejected)} (challengers the retraining gate "
            "rejected, so retention does not keep this version)"
        )


def _show(config: Config, args: argparse.Namespace) -> None:
    (version,) = _versions(config, [args.reference])
    if args.json:
        print(json.dumps(_version_json(version), default=str))
        return
    report = version.report
    print(f"{version.dataset}@{version.version}")
    print(f"  parent      {version.parent or '(none)'}")
    print(f"  mode        {version.mode}")
    print(f"  created     {version.created_at.isoformat(timespec='seconds')}")
    print(f"  rows        {version.row_count}")
    print(f"  accepted    {report.get('accepted', '?')}")
    print(f"  quarantined {report.get('quarantined', '?')}")
    print(f"  partitioned {version.partition_by or '(no)'}")
    compacted = report.get("compacted")
    if compacted:
        print(
            f"  compacted   from {compacted['from']}, whose rows were in "
            f"{compacted['folders']} version folders"
        )
    print(f"  encrypted   {_encryption_text(config, version)}")
    print(f"  folder      {version.path}")
    _print_users(version)
    for redaction in version.redactions:
        print(
            f"  redacted    {redaction['redacted_at']} "
            f"erasure={redaction['erasure_id']} "
            f"rows_removed={redaction['rows_removed']} "
            f"content_sha256={redaction['content_sha256']}"
        )
    if version.redactions:
        print("  (the version keeps its id; 'appliance erase --list' has receipts)")
    for source in version.sources:
        print(f"  source      {source['path']} sha256={source['sha256']}")
    for warning in report.get("warnings", []):
        print(f"  warning     {warning}")
    quality = report.get("quality", {})
    print(f"\nquality: duplicate rows {quality.get('duplicate_rows', '?')}")
    if "pending" in quality:
        print(f"  pending: {quality['pending']}")
    for statistic, method in quality.get("methods", {}).items():
        print(f"  {statistic}: {method}")
    from appliance.storage import encrypted_columns

    # The range of ciphertext does not describe the values.
    encrypted = set(encrypted_columns(version))
    rows = []
    for name, kind in version.schema.items():
        stats = quality.get("columns", {}).get(name, {})
        if name in encrypted:
            stats = {**stats, "min": "(encrypted)", "max": "(encrypted)"}
        quantiles = stats.get("quantiles") or {}
        rows.append(
            {
                "column": name,
                "type": kind,
                "null_rate": _number(stats.get("null_rate")),
                "distinct": stats.get("distinct"),
                "min": _number(stats.get("min")),
                "p25": _number(quantiles.get("p25")),
                "median": _number(quantiles.get("p50")),
                "p75": _number(quantiles.get("p75")),
                "max": _number(stats.get("max")),
                "outliers": stats.get("outliers_iqr"),
            }
        )
    print_rows(rows, False, list(rows[0]) if rows else ["column"])
    _print_null_sources(version.schema, quality.get("columns", {}))


def _print_null_sources(schema: dict[str, str], columns: dict[str, Any]) -> None:
    """Print, per column, how many of each source value were read as missing."""
    counted = {
        name: columns[name]["null_sources"]
        for name in schema
        if columns.get(name, {}).get("null_sources")
    }
    if not counted:
        return
    print("\nread as missing, per column (values in the source files):")
    for name, counts in counted.items():
        print(f"  {name}: {_null_sources_text(counts)}")


def _null_sources_text(counts: dict[str, int]) -> str:
    """Return counts such as ``"" 3, NA 0``, quoting a blank or padded value."""
    shown = [
        f"{json.dumps(label) if label.strip() != label or not label else label} {count}"
        for label, count in counts.items()
    ]
    return ", ".join(shown)


def _rows(config: Config, args: argparse.Namespace) -> None:
    from appliance.cli._decrypt import read_rows

    (version,) = _versions(config, [args.reference])
    rows = read_rows(config, version, args.limit, args.decrypt)
    print_rows(rows, args.json, list(version.schema), (args.limit, "--limit"))


def _encryption_text(config: Config, version: Any) -> str:
    """Return which columns `version` stores encrypted, and which sensitive
    columns it stores in plaintext because they were declared after it."""
    from appliance.storage import encrypted_columns

    stored = encrypted_columns(version)
    text = ", ".join(stored) + " (AES-SIV)" if stored else "(none)"
    key = version.report.get("encryption", {}).get("key_id")
    if key:
        text += f", key id {key}"
    declared = config.dataset(version.dataset).sensitive
    plain = [name for name in declared if name not in stored]
    if plain:
        text += (
            f"; PLAINTEXT: {', '.join(plain)} declared sensitive after this "
            "version was ingested; the setting applies to new versions, so "
            "ingest the data again (--mode replace) to encrypt them"
        )
    return text


def _number(value: Any) -> Any:
    """Format a float with 6 significant digits, so a year shows as 2013."""
    return f"{value:.6g}" if isinstance(value, float) else value


def _version_json(version: Any) -> dict[str, Any]:
    return {
        "dataset": version.dataset,
        "version": version.version,
        "parent": version.parent,
        "mode": version.mode,
        "created_at": version.created_at.isoformat(),
        "rows": version.row_count,
        "schema": version.schema,
        "sources": version.sources,
        "path": str(version.path),
        "files": version.files,
        "partition_by": version.partition_by,
        "used_by": version.used_by,
        "rejected_users": version.rejected_users,
        "redactions": version.redactions,
        "report": version.report,
    }


def _diff(config: Config, args: argparse.Namespace) -> None:
    from appliance.storage import diff_versions

    a, b = _versions(config, [args.a, args.b])
    diff = diff_versions(a, b)
    if args.json:
        print(json.dumps(diff, default=str))
        return
    print(f"{diff['a']} -> {diff['b']}")
    print(f"  rows {diff['rows'][0]} -> {diff['rows'][1]}")
    for name in diff["added_columns"]:
        print(f"  + column {name} {b.schema[name]}")
    for name in diff["removed_columns"]:
        print(f"  - column {name} {a.schema[name]}")
    for name, (old, new) in diff["retyped_columns"].items():
        print(f"  ~ column {name} {old} -> {new}")
    for name, changes in diff["statistics"].items():
        moved = ", ".join(
            f"{key} {_statistic_text(key, old)} -> {_statistic_text(key, new)}"
            for key, (old, new) in changes.items()
        )
        print(f"  {name}: {moved}")


def _statistic_text(key: str, value: Any) -> Any:
    if key != "null_sources":
        return _number(value)
    # A column without a missing value has no counts.
    return "{" + _null_sources_text(value) + "}" if value else "(none)"


def _quarantine(config: Config, args: argparse.Namespace) -> None:
    from appliance.cli._output import read_catalog

    params = {"dataset": args.dataset, "version": args.version, "limit": args.limit}
    rows = read_catalog(
        config, "/v1/admin/quarantine", "rows", "list_quarantine", params
    )
    if not rows:
        check_dataset_known(config, args.dataset)
    if not rows and args.version:
        _versions(config, [f"{args.dataset}@{args.version}"])
    fields = ("version", "source", "line", "column", "value", "reason", "row")
    table = [{name: row[name] for name in fields} for row in rows]
    if args.decrypt:
        from appliance.cli._decrypt import decrypt_quarantine

        decrypt_quarantine(config, args.dataset, table)
    shown = ["version", "source", "line", "column", "reason"]
    if args.decrypt:
        shown.insert(4, "value")
    print_rows(table, args.json, shown, (args.limit, "--limit"))
