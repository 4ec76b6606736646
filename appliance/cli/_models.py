"""Model commands: ``train``, ``predict``, ``models`` and ``runs``."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from appliance.cli._output import add_command, add_group, add_json_flag, print_rows
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
    from appliance.training import train_model

    result = train_model(config, args.name)
    version = result.model_version
    print(f"run {result.run_id}: model {version.model} version {version.version}")
    print(
        f"dataset {config.model(args.name).dataset}@{result.dataset_version} "
        f"train_rows={result.rows_train} holdout_rows={result.rows_test}"
    )
    for name, value in result.metrics.items():
        print(f"  {name:<22} {value:.6g}")
    print(f"artifact {version.path} sha256={version.sha256}")


def _predict(config: Config, args: argparse.Namespace) -> None:
    from appliance.serving import OnnxModel, score_file
    from appliance.storage import Catalog, get_version

    with Catalog(config.storage.home, read_only=True) as catalog:
        version = get_version(catalog, args.name, args.version)
    model = OnnxModel.load(version.path, version.sha256)
    prepare = None
    if config.model(args.name).feature_views:
        from appliance.features import FeatureServer

        features = FeatureServer(config)
        prepare = lambda table: features.fill_table(args.name, table)  # noqa: E731
    rows = score_file(model, args.input, args.output, prepare)
    print(f"scored {rows} rows with {version.model} version {version.version}")
    print(f"wrote {args.output}")


def _models_list(config: Config, args: argparse.Namespace) -> None:
    from appliance.storage import Catalog, list_models

    with Catalog(config.storage.home, read_only=True) as catalog:
        versions = list_models(catalog)
    rows = [
        {
            "model": v.model,
            "version": v.version,
            "task": v.task,
            "created_at": v.created_at.isoformat(timespec="seconds"),
            "parity": v.parity,
            "run_id": v.run_id,
            "sha256": v.sha256,
        }
        for v in versions
    ]
    columns = ["model", "version", "task", "created_at", "parity", "run_id"]
    print_rows(rows, args.json, columns)


def _runs_list(config: Config, args: argparse.Namespace) -> None:
    from appliance.storage import Catalog, list_runs

    with Catalog(config.storage.home, read_only=True) as catalog:
        runs = list_runs(catalog, args.model)
    rows = [
        {
            "run_id": r.run_id,
            "model": r.model,
            "status": r.status,
            "started_at": r.started_at.isoformat(timespec="seconds"),
            "dataset_version": r.dataset_version,
            "model_version": r.model_version,
            "error": r.error,
        }
        for r in runs
    ]
    columns = ["run_id", "model", "status", "started_at", "model_version"]
    print_rows(rows, args.json, columns)


def _runs_show(config: Config, args: argparse.Namespace) -> None:
    from appliance.storage import Catalog, get_run

    with Catalog(config.storage.home, read_only=True) as catalog:
        run = get_run(catalog, args.run_id)
    print(json.dumps(asdict(run), indent=2, default=str))
