"""Model commands: ``train``, ``predict`` and ``models``."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import Any

from appliance.cli._output import add_command, add_group, add_json_flag, print_rows
from appliance.config import Config

_REFERENCE_HELP = "model name, optionally with @VERSION or @ALIAS (default: champion)"


def register(commands: Any) -> None:
    """Add the model commands."""
    train = add_command(commands, "train", _train, "train, export and register a model")
    train.add_argument("name", help="model name declared as [models.NAME]")

    predict = add_command(commands, "predict", _predict, "score a file to Parquet")
    predict.add_argument("name", help="model name")
    predict.add_argument("input", type=Path, help="CSV or Parquet file to score")
    predict.add_argument("output", type=Path, help="Parquet file to write")
    predict.add_argument(
        "--version", help="version number or alias (default: the champion)"
    )

    models = add_group(commands, "models", "registered models")
    models_list = add_command(models, "list", _list, "list model versions")
    models_list.add_argument("--model", help="only versions of this model")
    add_json_flag(models_list)

    promote = add_command(models, "promote", _promote, "point an alias at a version")
    promote.add_argument("name", help="model name")
    promote.add_argument("version", type=int, help="version number")
    promote.add_argument(
        "--alias", default="champion", help="alias (default: champion)"
    )
    _add_audit_flags(promote)

    rollback = add_command(
        models, "rollback", _rollback, "return an alias to its previous version"
    )
    rollback.add_argument("name", help="model name")
    rollback.add_argument(
        "--alias", default="champion", help="alias (default: champion)"
    )
    _add_audit_flags(rollback)

    history = add_command(models, "history", _history, "list the alias changes")
    history.add_argument("name", help="model name")
    history.add_argument("--alias", help="only changes of this alias")
    add_json_flag(history)

    card = add_command(models, "card", _card, "write the HTML model card of a version")
    card.add_argument("reference", metavar="NAME[@VERSION]", help=_REFERENCE_HELP)
    card.add_argument("output", type=Path, metavar="OUT.html", help="file to write")

    export = add_command(models, "export", _export, "export a version to a folder")
    export.add_argument("reference", metavar="NAME[@VERSION]", help=_REFERENCE_HELP)
    export.add_argument("folder", type=Path, metavar="DIR", help="new folder to write")
    export.add_argument(
        "--format",
        choices=("mlflow", "onnx"),
        default="mlflow",
        help="mlflow: MLflow model directory with MLmodel; onnx: model.onnx and "
        "schema.json (default: mlflow)",
    )


def _add_audit_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="why, kept in the alias history")
    parser.add_argument(
        "--by", help="who makes the change (default: the logged-in user)"
    )


def _train(config: Config, args: argparse.Namespace) -> None:
    from appliance.training import train_model

    result = train_model(config, args.name)
    version = result.model_version
    print(f"run {result.run_id}: model {version.model} version {version.version}")
    print(
        f"dataset {config.model(args.name).dataset}@{result.dataset_version} "
        f"train_rows={result.rows_train} holdout_rows={result.rows_test}"
    )
    if result.trials:
        print(f"search: {result.trials} trials recorded as child runs")
    for name, value in result.metrics.items():
        print(f"  {name:<26} {value:.6g}")
    if result.metrics.get("overfit_flagged"):
        print(
            f"warning: overfitting gap {result.metrics['overfit_gap']:.4g} is above "
            f"overfit_threshold {config.model(args.name).overfit_threshold}"
        )
    print(f"artifact {version.path} sha256={version.sha256}")


def _predict(config: Config, args: argparse.Namespace) -> None:
    from appliance.serving import OnnxModel, score_file
    from appliance.storage import Catalog, resolve_version

    with Catalog(config.storage.home, read_only=True) as catalog:
        version = resolve_version(catalog, args.name, args.version)
    model = OnnxModel.load(version.path, version.sha256)
    rows = score_file(model, args.input, args.output)
    print(f"scored {rows} rows with {version.model} version {version.version}")
    print(f"wrote {args.output}")


def _list(config: Config, args: argparse.Namespace) -> None:
    from appliance.storage import Catalog, aliases, champion_models, list_models

    with Catalog(config.storage.home, read_only=True) as catalog:
        versions = list_models(catalog, args.model)
        names = aliases(catalog)
        serving = {(v.model, v.version) for v in champion_models(catalog)}
    rows = []
    for v in versions:
        tags = [a for a, n in sorted(names.get(v.model, {}).items()) if n == v.version]
        rows.append(
            {
                "model": v.model,
                "version": v.version,
                "aliases": ",".join(tags),
                "serving": (v.model, v.version) in serving,
                "task": v.task,
                "created_at": v.created_at.isoformat(timespec="seconds"),
                "parity": v.parity,
                "run_id": v.run_id,
                "sha256": v.sha256,
            }
        )
    columns = ["model", "version", "aliases", "serving", "task", "created_at"]
    print_rows(rows, args.json, columns + ["parity", "run_id"])


def _promote(config: Config, args: argparse.Namespace) -> None:
    body = {
        "version": args.version,
        "alias": args.alias,
        "actor": args.by or getpass.getuser(),
        "reason": args.reason,
    }
    event = _change(config, f"/v1/admin/models/{args.name}/promote", body)
    if event is None:
        from appliance.registry import Promoter

        event = Promoter(config.storage.home).promote(args.name, **body)
    _print_event(event)


def _rollback(config: Config, args: argparse.Namespace) -> None:
    body = {
        "alias": args.alias,
        "actor": args.by or getpass.getuser(),
        "reason": args.reason,
    }
    event = _change(config, f"/v1/admin/models/{args.name}/rollback", body)
    if event is None:
        from appliance.registry import Promoter

        event = Promoter(config.storage.home).rollback(args.name, **body)
    _print_event(event)


def _history(config: Config, args: argparse.Namespace) -> None:
    from appliance.storage import Catalog, alias_history

    with Catalog(config.storage.home, read_only=True) as catalog:
        events = alias_history(catalog, args.name, args.alias)
    rows = [
        {
            "changed_at": e.changed_at.isoformat(timespec="seconds"),
            "alias": e.alias,
            "action": e.action,
            "version": e.version,
            "previous_version": e.previous_version,
            "actor": e.actor,
            "reason": e.reason,
        }
        for e in events
    ]
    columns = ["changed_at", "alias", "action", "version", "previous_version"]
    print_rows(rows, args.json, columns + ["actor", "reason"])


def _card(config: Config, args: argparse.Namespace) -> None:
    from appliance.registry import collect_card, write_card
    from appliance.storage import Catalog

    name, reference = _split_reference(args.reference)
    with Catalog(config.storage.home, read_only=True) as catalog:
        data = collect_card(catalog, name, reference)
    write_card(data, args.output)
    print(f"wrote the card of {name} version {data.version.version} to {args.output}")


def _export(config: Config, args: argparse.Namespace) -> None:
    from appliance.registry import export_version
    from appliance.storage import Catalog, resolve_version

    name, reference = _split_reference(args.reference)
    with Catalog(config.storage.home, read_only=True) as catalog:
        version = resolve_version(catalog, name, reference)
    files = export_version(version, args.folder, args.format)
    print(
        f"exported {name} version {version.version} as {args.format} to "
        f"{args.folder}: {', '.join(f.name for f in files)}"
    )


def _change(config: Config, path: str, body: dict[str, Any]) -> Any:
    from appliance.cli._client import post_to_daemon

    return post_to_daemon(config, path, body)


def _print_event(event: dict[str, Any]) -> None:
    previous = event.get("previous_version")
    print(
        f"{event['model']} {event['alias']}: version {event['version']} "
        f"(was {previous if previous is not None else 'unset'}), "
        f"{event['action']} by {event['actor']}"
        + (f": {event['reason']}" if event.get("reason") else "")
    )
    if "serving" in event:
        print(f"the daemon now serves version {event['serving']}")


def _split_reference(text: str) -> tuple[str, str | None]:
    name, _, reference = text.partition("@")
    return name, reference or None
