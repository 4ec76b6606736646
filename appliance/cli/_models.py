"""Model commands: ``train``, ``predict``, ``models`` and ``runs``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from appliance.cli._output import (
    add_command,
    add_group,
    add_json_flag,
    iso_seconds,
    print_rows,
    read_catalog,
)
from appliance.config import Config


def register(commands: Any) -> None:
    """Add the model commands."""
    train = add_command(commands, "train", _train, "train, export and register a model")
    train.add_argument("name", help="model name declared as [models.NAME]")

    predict = add_command(commands, "predict", _predict, "score a file to Parquet")
    predict.add_argument("name", help="model name")
    predict.add_argument("input", type=Path, help="CSV or Parquet file to score")
    predict.add_argument("output", type=Path, help="Parquet file to write")
    predict.add_argument("--version", type=int, help="model version (default: latest)")

    models = add_group(commands, "models", "registered models")
    add_json_flag(add_command(models, "list", _models_list, "list model versions"))

    runs = add_group(commands, "runs", "training runs")
    runs_list = add_command(runs, "list", _runs_list, "list runs, newest first")
    runs_list.add_argument("--model", help="only runs of this model")
    add_json_flag(runs_list)
    runs_show = add_command(runs, "show", _runs_show, "show one run as JSON")
    runs_show.add_argument("run_id", help="run id")


def _train(config: Config, args: argparse.Namespace) -> None:
    from appliance.client import LONG_TIMEOUT_SECONDS, find_daemon

    config.model(args.name)
    client = find_daemon(config.storage.home)
    if client is not None:
        # The daemon trains in a worker thread and serves the new version at once.
        result = client.post(
            "/v1/admin/train", {"model": args.name}, timeout=LONG_TIMEOUT_SECONDS
        )
    else:
        from appliance.training import train_model

        local = train_model(config, args.name)
        version = local.model_version
        result = {
            "run_id": local.run_id,
            "model": version.model,
            "version": version.version,
            "dataset_version": local.dataset_version,
            "metrics": local.metrics,
            "rows_train": local.rows_train,
            "rows_test": local.rows_test,
            "path": str(version.path),
            "sha256": version.sha256,
        }
    print(
        f"run {result['run_id']}: model {result['model']} version {result['version']}"
    )
    print(
        f"dataset {config.model(args.name).dataset}@{result['dataset_version']} "
        f"train_rows={result['rows_train']} holdout_rows={result['rows_test']}"
    )
    for name, value in result["metrics"].items():
        print(f"  {name:<22} {value:.6g}")
    print(f"artifact {result['path']} sha256={result['sha256']}")
    if client is not None:
        print(f"serving version {result['version']} in the running daemon")


def _predict(config: Config, args: argparse.Namespace) -> None:
    from appliance.errors import NotFoundError
    from appliance.serving import OnnxModel, score_file

    versions = read_catalog(
        config,
        "/v1/admin/model-versions",
        "versions",
        "list_models",
        {"model": args.name},
    )
    if not versions:
        raise NotFoundError(
            f"model {args.name!r} has no registered version; run 'appliance train "
            f"{args.name}' first"
        )
    wanted = [v for v in versions if args.version in (None, v["version"])]
    if not wanted:
        known = ", ".join(str(v["version"]) for v in versions)
        raise NotFoundError(
            f"model {args.name!r} has no version {args.version}; versions: {known}"
        )
    version = wanted[0]
    model = OnnxModel.load(Path(version["path"]), version["sha256"])
    rows = score_file(model, args.input, args.output, _feature_filler(config, args))
    print(f"scored {rows} rows with {version['model']} version {version['version']}")
    print(f"wrote {args.output}")


def _models_list(config: Config, args: argparse.Namespace) -> None:
    versions = read_catalog(
        config, "/v1/admin/model-versions", "versions", "list_models"
    )
    rows = [
        {
            "model": v["model"],
            "version": v["version"],
            "task": v["task"],
            "created_at": iso_seconds(v["created_at"]),
            "parity": v["parity"],
            "run_id": v["run_id"],
            "sha256": v["sha256"],
        }
        for v in versions
    ]
    columns = ["model", "version", "task", "created_at", "parity", "run_id"]
    print_rows(rows, args.json, columns)


def _runs_list(config: Config, args: argparse.Namespace) -> None:
    runs = read_catalog(
        config, "/v1/admin/runs", "runs", "list_runs", {"model": args.model}
    )
    rows = [
        {
            "run_id": r["run_id"],
            "model": r["model"],
            "status": r["status"],
            "started_at": iso_seconds(r["started_at"]),
            "dataset_version": r["dataset_version"],
            "model_version": r["model_version"],
            "error": r["error"],
        }
        for r in runs
    ]
    columns = ["run_id", "model", "status", "started_at", "model_version"]
    print_rows(rows, args.json, columns)


def _runs_show(config: Config, args: argparse.Namespace) -> None:
    from appliance.client import find_daemon

    client = find_daemon(config.storage.home)
    if client is not None:
        run = client.get(f"/v1/admin/runs/{args.run_id}")
    else:
        from appliance.storage import Catalog, get_run

        with Catalog(config.storage.home, read_only=True) as catalog:
            run = asdict(get_run(catalog, args.run_id))
    print(json.dumps(run, indent=2, default=str))


def _feature_filler(
    config: Config, args: argparse.Namespace
) -> Callable[[Any], Any] | None:
    """Return what joins the model's feature views to a batch, if it has any.

    The views are read from the latest dataset versions, listed by the daemon
    while one holds the catalog.
    """
    declared = config.models.get(args.name)
    if declared is None or not declared.feature_views:
        return None
    from appliance.features import FeatureServer
    from appliance.storage import DatasetVersion

    records = read_catalog(config, "/v1/admin/datasets", "datasets", "list_versions")
    latest: dict[str, DatasetVersion] = {}
    for record in records:
        version = DatasetVersion(**{**record, "path": Path(record["path"])})
        latest.setdefault(version.dataset, version)
    features = FeatureServer.from_versions(config, list(latest.values()))
    return lambda table: features.fill_table(args.name, table)
