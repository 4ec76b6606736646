"""Run commands: ``runs list``, ``show``, ``artifact`` and ``compare``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from appliance.cli._output import (
    add_command,
    add_group,
    add_json_flag,
    iso_seconds,
    json_text,
    parse_times,
    print_rows,
    row_count,
)
from appliance.cli._remote import registry_lookup, registry_read
from appliance.config import Config
from appliance.errors import NotFoundError, StorageError

_SUMMARY_FIELDS = (
    "model",
    "kind",
    "parent_run_id",
    "status",
    "error",
    "dataset",
    "dataset_version",
    "code_version",
    "model_version",
    "duration_seconds",
    "host",
)

_TIME_FIELDS = ("started_at", "finished_at")


def register(commands: Any) -> None:
    """Add the run commands."""
    runs = add_group(commands, "runs", "training runs")
    runs_list = add_command(runs, "list", _list, "list runs, newest first")
    runs_list.add_argument("--model", help="only runs of this model")
    runs_list.add_argument("--parent", help="only the trials of this search run")
    runs_list.add_argument(
        "--limit", type=row_count, help="show at most this many runs"
    )
    add_json_flag(runs_list)

    show = add_command(
        runs,
        "show",
        _show,
        "show one run as JSON; 'runs artifact' writes one of its artifacts, "
        "such as a PNG plot, to a file",
    )
    show.add_argument("run_id", help="run id")

    artifact = add_command(
        runs, "artifact", _artifact, "write an artifact of a run, such as a plot"
    )
    artifact.add_argument("run_id", help="run id")
    artifact.add_argument(
        "name",
        help="artifact name as 'runs show' lists it, such as roc.png of a "
        "classifier or residuals.png of a regression",
    )
    artifact.add_argument(
        "--output",
        type=Path,
        help="file or folder to write to, '-' for standard output (default: "
        "the artifact name in the current folder)",
    )

    compare = add_command(
        runs, "compare", _compare, "show runs side by side, marking differences"
    )
    compare.add_argument("run_ids", nargs="+", metavar="RUN", help="run ids")
    compare.add_argument(
        "--differences", action="store_true", help="show only the fields that differ"
    )
    add_json_flag(compare)


def _list(config: Config, args: argparse.Namespace) -> None:
    from appliance.registry import run_summaries

    params = {"model": args.model, "parent": args.parent, "limit": args.limit}
    runs = registry_read(
        config,
        "/runs",
        "runs",
        params,
        run_summaries,
        args.model,
        args.parent,
        args.limit,
    )
    runs = [parse_times(run, _TIME_FIELDS) for run in runs]
    if args.json:
        for run in runs:
            print(json_text(run))
        return
    rows = [
        {
            "run_id": r["run_id"],
            "model": r["model"],
            "kind": r["kind"],
            "parent": r["parent_run_id"],
            "status": r["status"],
            "started_at": iso_seconds(r["started_at"]),
            "seconds": r["duration_seconds"],
            "version": r["model_version"],
        }
        for r in runs
    ]
    columns = ["run_id", "model", "kind", "parent", "status", "started_at"]
    print_rows(rows, False, columns + ["seconds", "version"])


def _show(config: Config, args: argparse.Namespace) -> None:
    (record,) = registry_lookup(config, [args.run_id])
    print(json_text(parse_times(record, _TIME_FIELDS), indent=2))
    if record.get("artifacts"):
        # On stderr, so that standard output stays one JSON document.
        print(
            f"write an artifact to a file with: appliance runs artifact "
            f"{args.run_id} NAME --output FILE",
            file=sys.stderr,
        )


def _artifact(config: Config, args: argparse.Namespace) -> None:
    from appliance.storage import read_blob

    (record,) = registry_lookup(config, [args.run_id])
    stored = {item["name"]: item for item in record.get("artifacts") or []}
    if args.name not in stored:
        names = ", ".join(sorted(stored)) or "none"
        raise NotFoundError(
            f"run {args.run_id!r} has no artifact {args.name!r}; its artifacts "
            f"are: {names}"
        )
    # The blobs are files of the home, read directly while a daemon runs too.
    data = read_blob(config.storage.home / "blobs", stored[args.name]["sha256"])
    if args.output == Path("-"):
        sys.stdout.buffer.write(data)
        return
    target = _artifact_target(args.output, args.name)
    _write_file(target, data)
    print(f"wrote {target} ({len(data)} bytes, {stored[args.name]['media_type']})")


def _artifact_target(output: Path | None, name: str) -> Path:
    """Return the file to write artifact `name` to for ``--output`` `output`.

    Raises:
        StorageError: The folder to write into does not exist.
    """
    target = Path(name) if output is None else output
    if target.is_dir():
        target = target / name
    if not target.parent.is_dir():
        raise StorageError(
            f"{target}: folder {target.parent} not found; create it or name "
            "another output"
        )
    return target


def _write_file(target: Path, data: bytes) -> None:
    """Write `data` to `target` through a temporary file and a rename.

    Raises:
        StorageError: The file cannot be written.
    """
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise StorageError(f"cannot write {target}: {exc.strerror}") from exc


def _compare(config: Config, args: argparse.Namespace) -> None:
    runs = registry_lookup(config, args.run_ids, details=False)
    table = compare_runs([_flatten(run) for run in runs])
    compared = len(table)
    if args.differences:
        table = [row for row in table if row["differs"]]
    if args.json:
        print(json.dumps({"runs": args.run_ids, "fields": table}, default=str))
        return
    _print_comparison(args.run_ids, table, compared)


def compare_runs(flat: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one row per field: the value in each run and whether they differ.

    >>> compare_runs([{"a": 1, "b": 2}, {"a": 1}])
    [{'field': 'a', 'values': [1, 1], 'differs': False}, {'field': 'b', \
'values': [2, None], 'differs': True}]
    """
    keys: list[str] = []
    for run in flat:
        keys += [key for key in run if key not in keys]
    rows = []
    for key in keys:
        values = [run.get(key) for run in flat]
        # Values come from JSON, so plain equality compares them; 1 == 1.0.
        differs = any(value != values[0] for value in values)
        rows.append({"field": key, "values": values, "differs": differs})
    return rows


def _flatten(run: dict[str, Any]) -> dict[str, Any]:
    flat = {key: run[key] for key in _SUMMARY_FIELDS}
    for group in ("params", "metrics", "tags"):
        for key, value in sorted((run.get(group) or {}).items()):
            flat[f"{group}.{key}"] = value
    return flat


def _print_comparison(
    run_ids: list[str], table: list[dict[str, Any]], compared: int
) -> None:
    """Print `table`, the rows of `compared` fields that ``--differences`` kept."""
    if not table:
        print(f"(no differences in {compared} fields)")
        return
    cells = [[_cell(v) for v in row["values"]] for row in table]
    field_width = max(len("field"), *(len(row["field"]) for row in table))
    widths = [
        max(len(run_id), *(len(line[i]) for line in cells))
        for i, run_id in enumerate(run_ids)
    ]
    header = ["  " + "field".ljust(field_width)]
    header += [run_id.ljust(width) for run_id, width in zip(run_ids, widths)]
    print("  ".join(header).rstrip())
    for row, line in zip(table, cells):
        mark = "* " if row["differs"] else "  "
        parts = [mark + row["field"].ljust(field_width)]
        parts += [cell.ljust(width) for cell, width in zip(line, widths)]
        print("  ".join(parts).rstrip())
    changed = sum(row["differs"] for row in table)
    summary = f"{changed} of {compared} fields differ (marked *)"
    if len(table) < compared:
        summary += f"; showing the {len(table)}"
    print(summary)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)
