"""Model commands: ``train``, ``predict`` and ``models``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from appliance.cli._names import check_model_known
from appliance.cli._output import (
    add_command,
    add_group,
    add_json_flag,
    iso_seconds,
    model_reference,
    print_rows,
    read_catalog,
)
from appliance.cli._remote import registry_change, registry_read, registry_version
from appliance.cli._signing import register as register_signing
from appliance.cli._urls import name_segment
from appliance.config import Config, DatasetConfig, ModelConfig

_REFERENCE_HELP = "model name, optionally with @VERSION or @ALIAS (default: champion)"


def register(commands: Any) -> None:
    """Add the model commands."""
    train = add_command(commands, "train", _train, "train, export and register a model")
    train.add_argument("name", help="model name declared as [models.NAME]")

    predict = add_command(
        commands, "predict", _predict, "score a file to Parquet or CSV"
    )
    predict.add_argument(
        "name", type=model_reference, metavar="NAME[@VERSION]", help=_REFERENCE_HELP
    )
    predict.add_argument("input", type=Path, help="CSV or Parquet file to score")
    predict.add_argument(
        "output",
        type=Path,
        help="file to write: .parquet (or .pq) for Parquet, .csv for CSV",
    )
    predict.add_argument(
        "--version",
        help="version number or alias, the same as NAME@VERSION (default: the "
        "champion)",
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
    card.add_argument(
        "reference",
        type=model_reference,
        metavar="NAME[@VERSION]",
        help=_REFERENCE_HELP,
    )
    card.add_argument("output", type=Path, metavar="OUT.html", help="file to write")

    export = add_command(models, "export", _export, "export a version to a folder")
    export.add_argument(
        "reference",
        type=model_reference,
        metavar="NAME[@VERSION]",
        help=_REFERENCE_HELP,
    )
    export.add_argument("folder", type=Path, metavar="DIR", help="new folder to write")
    export.add_argument(
        "--format",
        choices=("mlflow", "onnx"),
        default="mlflow",
        help="mlflow: MLflow model directory with MLmodel; onnx: model.onnx and "
        "schema.json (default: mlflow); both ship signature.json and the "
        "signer's public key",
    )
    register_signing(models)


def _add_audit_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="why, kept in the alias history")
    parser.add_argument(
        "--by",
        help="who makes the change, as the alias history records it (default: "
        "the logged-in user); rejected when an API key goes to the daemon, "
        "because the history then records the key",
    )


def _train(config: Config, args: argparse.Namespace) -> None:
    from appliance.client import LONG_TIMEOUT_SECONDS, find_daemon

    config.model(args.name)
    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        # The daemon trains in a worker thread and serves the new version
        # unless a champion was promoted.
        result = client.post(
            "/v1/admin/train", {"model": args.name}, timeout=LONG_TIMEOUT_SECONDS
        )
    else:
        result = _train_here(config, args.name)
    print(
        f"run {result['run_id']}: model {result['model']} version {result['version']}"
    )
    print(
        f"dataset {config.model(args.name).dataset}@{result['dataset_version']} "
        f"train_rows={result['rows_train']} holdout_rows={result['rows_test']}"
    )
    if result.get("trials"):
        print(f"search: {result['trials']} trials recorded as child runs")
    for name, value in result["metrics"].items():
        print(f"  {name:<26} {value:.6g}")
    if result["metrics"].get("overfit_flagged"):
        print(f"warning: {_overfitting_text(config.model(args.name), result)}")
    for warning in result.get("warnings", []):
        print(f"warning: {warning}")
    print(f"artifact {result['path']} sha256={result['sha256']}")
    if result.get("served"):
        print(f"serving version {result['version']} in the running daemon")
    elif client is not None:
        print("the daemon keeps serving the champion; promote to serve this version")


def _overfitting_text(cfg: ModelConfig, result: dict[str, Any]) -> str:
    """Return the warning of a flagged overfitting gap, in the unit it was checked."""
    metrics = result["metrics"]
    metric = cfg.primary_metric
    scores = (
        f"{metric} {metrics[f'train_{metric}']:.4g} on training rows against "
        f"{metrics[metric]:.4g} on holdout rows"
    )
    if "overfit_relative_gap" in metrics:
        return (
            f"overfitting: {scores}, a gap of {metrics['overfit_relative_gap']:.1%} "
            f"of the holdout value, above overfit_threshold {cfg.overfit_limit}"
        )
    return (
        f"overfitting: {scores}, a gap of {metrics['overfit_gap']:.4g}, above "
        f"overfit_threshold {cfg.overfit_limit}"
    )


def _train_here(config: Config, name: str) -> dict[str, Any]:
    from appliance.training import train_model

    local = train_model(config, name)
    version = local.model_version
    return {
        "run_id": local.run_id,
        "model": version.model,
        "version": version.version,
        "dataset_version": local.dataset_version,
        "metrics": local.metrics,
        "rows_train": local.rows_train,
        "rows_test": local.rows_test,
        "trials": local.trials,
        "warnings": local.warnings,
        "path": str(version.path),
        "sha256": version.sha256,
    }


def _predict(config: Config, args: argparse.Namespace) -> int:
    from appliance.serving import OnnxModel, check_target, score_file
    from appliance.signing import trusted_keys

    name, reference = _split_reference(args.name)
    if reference is not None and args.version not in (None, reference):
        print(
            f"error: {args.name!r} and --version {args.version} name different "
            "versions; give the version once, as NAME@VERSION or with --version",
            file=sys.stderr,
        )
        return 2
    reference = reference or args.version
    check_target(args.input, args.output)
    version = registry_version(config, name, reference)
    model = OnnxModel.load(version.path, version.sha256, trusted=trusted_keys(config))
    dataset = model_dataset(config, name, model.schema.get("dataset"))
    server = feature_server(config, name)
    scored = score_file(model, args.input, args.output, server, dataset)
    print(f"scored {scored.rows} rows with {version.model} version {version.version}")
    print(f"wrote {args.output}")
    for warning in scored.warnings:
        print(f"warning: {warning}")
    return 0


def _list(config: Config, args: argparse.Namespace) -> None:
    from appliance.registry import model_versions

    versions = registry_read(
        config, "/models", "versions", {"model": args.model}, model_versions, args.model
    )
    rows = [
        {
            "model": v["model"],
            "version": v["version"],
            "aliases": ",".join(v["aliases"]),
            "serving": v["serving"],
            "task": v["task"],
            "created_at": iso_seconds(v["created_at"]),
            "parity": v["parity"],
            "run_id": v["run_id"],
            "sha256": v["sha256"],
            "path": v["path"],
            "gate": v.get("gate"),
            "gate_reason": v.get("gate_reason"),
            "training_data": v.get("training_data"),
            "training_data_removed": v.get("training_data_removed", False),
        }
        for v in versions
    ]
    columns = ["model", "version", "aliases", "serving", "task", "created_at"]
    if not args.json:
        for row in rows:
            row["gate"] = "rejected" if row["gate"] else ""
            if row["training_data_removed"]:
                row["training_data"] = f"{row['training_data']} (removed)"
    more = ["gate", "training_data"]
    print_rows(rows, args.json, columns + ["parity", "run_id"] + more)


def _promote(config: Config, args: argparse.Namespace) -> None:
    from appliance.registry import promote

    check_model_known(config, args.name)
    body = {"version": args.version, "alias": args.alias, "reason": args.reason}
    event = registry_change(config, args.name, "promote", body, promote, args.by)
    _print_event(event)


def _rollback(config: Config, args: argparse.Namespace) -> None:
    from appliance.registry import rollback

    check_model_known(config, args.name)
    body = {"alias": args.alias, "reason": args.reason}
    event = registry_change(config, args.name, "rollback", body, rollback, args.by)
    _print_event(event)


def _history(config: Config, args: argparse.Namespace) -> None:
    from appliance.registry import history

    events = registry_read(
        config,
        f"/models/{name_segment('model', args.name)}/history",
        "events",
        {"alias": args.alias},
        history,
        args.name,
        args.alias,
    )
    rows = [
        {
            "changed_at": iso_seconds(e["changed_at"]),
            "alias": e["alias"],
            "action": e["action"],
            "version": e["version"],
            "previous_version": e["previous_version"],
            "actor": e["actor"],
            "reason": e["reason"],
            "watch": e.get("watch", {}).get("outcome", ""),
            "watch_reason": e.get("watch", {}).get("reason", ""),
        }
        for e in events
    ]
    if not rows:
        check_model_known(config, args.name)
    columns = ["changed_at", "alias", "action", "version", "previous_version"]
    print_rows(rows, args.json, columns + ["actor", "reason", "watch"])


def _card(config: Config, args: argparse.Namespace) -> None:
    from appliance.registry import card_html, write_card
    from appliance.signing import trusted_keys

    name, reference = _split_reference(args.reference)
    check_model_known(config, name)
    page = registry_read(
        config,
        f"/models/{name_segment('model', name)}/card",
        "html",
        {"reference": reference},
        card_html,
        name,
        reference,
        trusted_keys(config),
    )
    write_card(page, args.output)
    print(f"wrote the model card of {args.reference} to {args.output}")


def _export(config: Config, args: argparse.Namespace) -> None:
    from appliance.registry import export_version
    from appliance.signing import trusted_keys

    name, reference = _split_reference(args.reference)
    check_model_known(config, name)
    version = registry_version(config, name, reference)
    files = export_version(version, args.folder, args.format, trusted_keys(config))
    print(
        f"exported {name} version {version.version} as {args.format} to "
        f"{args.folder}: {', '.join(f.name for f in files)}"
    )


def _print_event(event: dict[str, Any]) -> None:
    from appliance.registry import UNCHANGED

    if event["action"] == UNCHANGED:
        print(
            f"{event['model']} {event['alias']}: version {event['version']} already "
            f"is the {event['alias']} (set by {event['actor']} at "
            f"{iso_seconds(event['changed_at'])}); nothing recorded"
        )
        if "serving" in event:
            print(
                f"the daemon loaded version {event['serving']} again, because it "
                "had failed to load, and now serves it"
            )
        return
    previous = event.get("previous_version")
    previous_text = "unset" if previous is None else previous
    if event["action"] == "set" and previous == event["version"]:
        # The first promotion of the champion records the latest version, which
        # was served while no champion was set, as the previous one.
        previous_text = "the latest version, served while no champion was set"
    print(
        f"{event['model']} {event['alias']}: version {event['version']} "
        f"(was {previous_text}), "
        f"{event['action']} by {event['actor']}"
        + (f": {event['reason']}" if event.get("reason") else "")
    )
    if "serving" in event:
        print(f"the daemon now serves version {event['serving']}")


def _split_reference(text: str) -> tuple[str, str | None]:
    name, _, reference = text.partition("@")
    return name, reference or None


def model_dataset(
    config: Config, name: str, trained_on: str | None = None
) -> DatasetConfig | None:
    """Return the settings of the dataset of model `name`, or None if unknown.

    Args:
        trained_on: The dataset that the version's schema names; the
            dataset of ``[models.NAME]`` is used when None.
    """
    declared = config.models.get(name)
    dataset = trained_on or (declared.dataset if declared else None)
    return config.dataset(dataset) if dataset else None


def feature_server(config: Config, name: str) -> Any:
    """Return a `FeatureServer` over the latest dataset versions, or None.

    The versions are listed by the daemon while one has the catalog open.
    Returns None for a model without feature views. When the model's entity
    keys are stored encrypted, the column key is checked against the key ids
    the stored versions record, as ingest does, because another key would
    encrypt the keys to values that match no stored one.

    Raises:
        ColumnKeyError: The column key file is missing or invalid, or is not
            the key that encrypted a stored version.
    """
    declared = config.models.get(name)
    if declared is None or not declared.feature_views:
        return None
    from appliance.features import FeatureServer
    from appliance.storage import DatasetVersion, check_version_keys

    records = read_catalog(config, "/v1/admin/datasets", "datasets", "list_versions")
    versions = [
        DatasetVersion(**{**record, "path": Path(record["path"])}) for record in records
    ]
    latest: dict[str, DatasetVersion] = {}
    for version in versions:
        latest.setdefault(version.dataset, version)
    server = FeatureServer.from_versions(config, list(latest.values()))
    if server.encrypted_keys(name):
        check_version_keys(versions, server.cipher())
    return server
