"""The ``explain`` command: each input feature's contribution to predictions.

While a daemon runs, the rows go to its explain route and the served
champion, or the version that ``NAME@VERSION`` names, explains them.
Otherwise the command loads that version itself.
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import json
import math
from pathlib import Path
from typing import Any

from appliance.cli._names import check_model_known
from appliance.cli._output import add_command, add_json_flag, model_reference
from appliance.cli._remote import registry_version
from appliance.cli._urls import name_segment
from appliance.config import Config


def register(commands: Any) -> None:
    """Add the ``explain`` command."""
    explain = add_command(
        commands,
        "explain",
        _explain,
        "explain a model's predictions of a file's rows, feature by feature",
    )
    explain.add_argument(
        "name",
        type=model_reference,
        metavar="NAME[@VERSION]",
        help="model name, optionally with @VERSION or @ALIAS (default: the "
        "champion, or the version the daemon serves)",
    )
    explain.add_argument(
        "input", type=Path, help="CSV or Parquet file of at most 100 rows"
    )
    add_json_flag(explain)


def _explain(config: Config, args: argparse.Namespace) -> int:
    from appliance.cli._models import model_dataset
    from appliance.client import find_daemon
    from appliance.serving import read_rows_file

    name, _, reference = args.name.partition("@")
    check_model_known(config, name)
    dataset = model_dataset(config, name)
    table = read_rows_file(args.input, dataset.null_values if dataset else None)
    rows = [_json_row(row) for row in table.to_pylist()]
    version = None
    if reference:
        version = registry_version(config, name, reference).version
    client = find_daemon(config.storage.home, config.path, config.api_key)
    if client is not None:
        path = f"/v1/models/{name_segment('model', name)}/explain"
        if version is not None:
            path += f"?version={version}"
        body = client.post(path, {"rows": rows})
    else:
        body = _explain_here(config, name, version, rows)
    if args.json:
        for index, explanation in enumerate(body["explanations"]):
            print(json.dumps({"row": index, **explanation}))
        return 0
    print(
        f"{body['model']} version {body['version']}, method {body['method']}: "
        f"{body['method_description']}"
    )
    for index, explanation in enumerate(body["explanations"]):
        _print_explanation(index, explanation)
    for warning in body.get("warnings", []):
        print(f"warning: {warning}")
    return 0


def _explain_here(
    config: Config, name: str, version: int | None, rows: list[Any]
) -> dict[str, Any]:
    """Explain `rows` with `version`, else the champion, loaded in this process."""
    from appliance.cli._models import feature_server
    from appliance.serving import (
        EXPLAIN_MAX_ROWS,
        OnnxModel,
        check_count,
        explain_feed,
        explain_response,
        feed_rows,
        reference_of,
    )
    from appliance.signing import trusted_keys

    found = registry_version(config, name, None if version is None else str(version))
    model = OnnxModel.load(found.path, found.sha256, trusted=trusted_keys(config))
    reference = reference_of(model)
    check_count(model, len(rows), EXPLAIN_MAX_ROWS)
    feed, warnings = feed_rows(feature_server(config, name), model, rows)
    explanations = explain_feed(model, feed, reference)
    return explain_response(model, reference, explanations, warnings)


def _print_explanation(index: int, explanation: dict[str, Any]) -> None:
    outcome = explanation.get("label", explanation.get("value"))
    print(
        f"row {index}: {outcome} ({explanation['explained']} "
        f"{_number(explanation['prediction'])}, baseline "
        f"{_number(explanation['baseline'])})"
    )
    ranked = sorted(
        explanation["contributions"].items(),
        key=lambda item: -abs(item[1] or 0.0),
    )
    width = max(len(name) for name, _ in ranked)
    for name, value in ranked:
        print(f"  {name:<{width}}  {_signed(value)}")


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """Return a file row as JSON values: NaN as null (a missing value), times
    as ISO 8601 text and decimals as numbers."""
    return {key: _json_value(value) for key, value in row.items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def _number(value: float | None) -> str:
    return "missing" if value is None else f"{value:.6g}"


def _signed(value: float | None) -> str:
    return "missing" if value is None else f"{value:+.6g}"
