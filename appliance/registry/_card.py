"""Model cards: one self-contained HTML page per model version.

The page is built from what the catalog recorded (the version, its training
run, the run's plots) and needs no file beside it: plots are inlined as
base64 PNG and the style sheet is embedded.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import StorageError
from appliance.signing import TrustedKeys, verify_version
from appliance.storage import (
    SCHEMA_FILE,
    Catalog,
    ModelVersion,
    Run,
    aliases,
    gate_rejections,
    get_run,
    list_artifacts,
    list_runs,
    parse_schema,
    read_artifact,
    resolve_version,
    training_data,
)

logger = logging.getLogger(__name__)

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;
padding:0 1rem;color:#222}
h1{margin-bottom:.2rem}
h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;font-size:.9rem}
th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.plots img{max-width:48%;margin:.2rem}
.ok{color:#176f2c}.bad{color:#a11}.muted{color:#666}
"""

_GATE_NOTE = (
    "retention does not keep the training data of a rejected challenger "
    "that never held an alias, so that data may be removed"
)
_NO_INTENDED_USE = "Not stated in the configuration (intended_use)."


@dataclass
class CardData:
    """Everything a model card shows."""

    version: ModelVersion
    schema: dict[str, Any]
    run: Run
    aliases: list[str]
    plots: dict[str, bytes] = field(default_factory=dict)
    trials: int = 0
    gate: str | None = None
    """Retraining that rejected the version and why, or None."""
    data_removed: bool = False
    """Whether retention removed the dataset version of the training run."""


def collect_card(
    catalog: Catalog,
    model: str,
    reference: str | int | None,
    trusted: TrustedKeys,
) -> CardData:
    """Read what the card of a version shows from its signed files.

    Raises:
        NotFoundError: The model, version or alias does not exist.
        SignatureError: The version's signature is missing, invalid or
            untrusted, or a file differs from its signed hash.
        IntegrityError: The ONNX file or a plot does not match its sha256.
    """
    version = resolve_version(catalog, model, reference)
    files = verify_version(version, trusted)
    schema = parse_schema(files[SCHEMA_FILE], version.path / SCHEMA_FILE)
    run = get_run(catalog, version.run_id)
    plots = {
        item["name"]: read_artifact(catalog, run.run_id, item["name"])
        for item in list_artifacts(catalog, run.run_id)
        if item["media_type"] == "image/png"
    }
    names = [
        alias
        for alias, number in sorted(aliases(catalog, model).get(model, {}).items())
        if number == version.version
    ]
    trials = len(list_runs(catalog, parent_run_id=run.run_id))
    rejection = gate_rejections(catalog, model).get((model, version.version))
    gate = None
    if rejection is not None:
        retrain_id, reason = rejection["retrain_id"], rejection["reason"]
        gate = f"rejected by retraining {retrain_id}: {reason}"
    _, removed = training_data(catalog).get(run.run_id, ("", False))
    return CardData(version, schema, run, names, plots, trials, gate, removed)


def write_card(page: str, target: Path) -> None:
    """Write the card HTML `page` to `target` through a temporary file.

    Raises:
        StorageError: The file cannot be written, such as when its folder is
            missing or `target` is a folder.
    """
    if target.is_dir():
        raise StorageError(
            f"cannot write model card {target}: it is a folder; name a file to "
            f"write, such as {target / 'card.html'}"
        )
    if not target.parent.is_dir():
        raise StorageError(
            f"cannot write model card {target}: folder {target.parent} not found; "
            "create it or name a file in another folder"
        )
    partial = target.with_name(target.name + ".partial")
    try:
        partial.write_text(page, encoding="utf-8")
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        # The message names `target`, not the temporary file the user never
        # asked for.
        raise StorageError(
            f"cannot write model card {target}: {exc.strerror or exc}"
        ) from exc
    logger.info("model card written path=%s", target)


def render_card(data: CardData) -> str:
    """Return the HTML page of a model card."""
    version, schema, run = data.version, data.schema, data.run
    title = f"{version.model} version {version.version}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Model card: {_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">aliases: {_e(", ".join(data.aliases) or "none")}</p>',
        "<h2>Intended use</h2>",
        f"<p>{_e(schema.get('intended_use') or _NO_INTENDED_USE)}</p>",
        "<h2>Model</h2>",
        _pairs(_model_rows(data)),
        "<h2>Data</h2>",
        _pairs(_data_rows(data)),
        "<h2>Features</h2>",
        _table(["name", "type"], [[i["name"], i["type"]] for i in schema["inputs"]]),
        "<h2>Parameters</h2>",
        _pairs([(k, v) for k, v in sorted(run.params.items())]),
        "<h2>Holdout metrics</h2>",
        _pairs(sorted((run.metrics or schema.get("metrics") or {}).items())),
        _details(run),
        "<h2>Export parity</h2>",
        _parity(schema, version),
        "<h2>Plots</h2>",
        _plots(data.plots),
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part)


def _model_rows(data: CardData) -> list[tuple[str, Any]]:
    version, run = data.version, data.run
    rows: list[tuple[str, Any]] = [
        ("task", version.task),
        ("algorithm", data.schema.get("algorithm")),
        ("target", data.schema.get("target")),
        ("classes", data.schema.get("classes")),
        ("created", version.created_at.isoformat(timespec="seconds")),
        ("training run", run.run_id),
        ("code version", run.code_version),
        ("onnx sha256", version.sha256),
        ("packages", ", ".join(f"{k} {v}" for k, v in run.packages.items())),
    ]
    if data.trials:
        rows.append(("search trials", data.trials))
    return rows


def _data_rows(data: CardData) -> list[tuple[str, Any]]:
    schema, run = data.schema, data.run
    # The versions of the datasets that the feature views read in training.
    views = run.feature_views
    view_data = ", ".join(f"{name}@{views[name]}" for name in sorted(views))
    dataset = f"{schema.get('dataset')}@{schema.get('dataset_version')}"
    if data.data_removed:
        dataset += " (removed by retention)"
    rows: list[tuple[str, Any]] = [
        ("dataset", dataset),
        ("feature view datasets", view_data or "none"),
        ("training rows", schema.get("rows_train")),
        ("holdout rows", schema.get("rows_test")),
        ("rows without a label", schema.get("rows_unlabelled")),
    ]
    if data.gate is not None:
        # Retention keeps no dataset version for a rejected challenger that
        # never held an alias, so its training data may be gone.
        rows.append(("retraining gate", f"{data.gate}; {_GATE_NOTE}"))
    window = schema.get("window")
    if window:
        # A retraining selects rows by event time in place of the model's
        # where and split, so those settings did not apply.
        return rows + _window_rows(schema, window)
    return rows + [
        ("row filter", schema.get("where") or "none"),
        ("derived columns", schema.get("derive") or "none"),
        ("holdout split", schema.get("split")),
    ]


def _window_rows(
    schema: dict[str, Any], window: dict[str, Any]
) -> list[tuple[str, Any]]:
    start = window.get("start") or "the first row"
    rows: list[tuple[str, Any]] = [
        ("derived columns", schema.get("derive") or "none"),
        (
            "training window",
            f"event times from {start} to {window.get('holdout_start')}",
        ),
        (
            "holdout window",
            f"event times from {window.get('holdout_start')} to {window.get('end')}",
        ),
    ]
    if window.get("max_rows") is not None:
        rows.append(("most training rows", window["max_rows"]))
    if window.get("refit"):
        metric = schema.get("metric")
        reference = (schema.get("reference_metrics") or {}).get(metric)
        note = "in-sample: this refit trained on the holdout rows too"
        if reference is not None:
            note += f"; the challenger's out-of-sample {metric} was {reference:.4g}"
        rows.append(("holdout metrics", note))
    return rows


def _details(run: Run) -> str:
    evaluation = run.evaluation or {}
    parts = []
    if run.folds:
        keys = [k for k in run.folds[0]]
        rows = [[i, *(fold.get(k) for k in keys)] for i, fold in enumerate(run.folds)]
        parts += ["<h2>Cross-validation</h2>", _table(["fold", *keys], rows)]
    if "confusion_matrix" in evaluation:
        classes = evaluation["classes"]
        matrix = evaluation["confusion_matrix"]
        rows = [[f"true {c}", *row] for c, row in zip(classes, matrix)]
        parts += [
            "<h3>Confusion matrix</h3>",
            _table(["", *(f"predicted {c}" for c in classes)], rows),
        ]
    if evaluation.get("per_class"):
        per_class = evaluation["per_class"]
        keys = ["precision", "recall", "f1", "support"]
        rows = [[c, *(v[k] for k in keys)] for c, v in per_class.items()]
        parts += ["<h3>Per class</h3>", _table(["class", *keys], rows)]
    for column, segments in (evaluation.get("segments") or {}).items():
        metric = evaluation.get("metric", "")
        # Show only the metrics of the task, which are accuracy for a
        # classifier and mae for a regressor.
        recorded = {k for scores in segments.values() for k in scores}
        extra = [k for k in ("accuracy", "mae") if k != metric and k in recorded]
        keys = ["rows", metric, *extra]
        rows = [[value, *(m.get(k) for k in keys)] for value, m in segments.items()]
        parts += [f"<h3>By {_e(column)}</h3>", _table([column, *keys], rows)]
    return "\n".join(parts)


def _parity(schema: dict[str, Any], version: ModelVersion) -> str:
    tolerance = schema.get("parity_tolerance")
    passed = tolerance is None or version.parity <= tolerance
    label = (
        '<span class="ok">passed</span>'
        if passed
        else '<span class="bad">failed</span>'
    )
    return (
        f"<p>Largest difference between ONNX and native outputs on the holdout "
        f"and probe rows: {_e(_fmt(version.parity))} (tolerance "
        f"{_e(_fmt(tolerance))}): {label}.</p>"
    )


def _plots(plots: dict[str, bytes]) -> str:
    if not plots:
        return '<p class="muted">No plots were recorded.</p>'
    images = [
        f'<img alt="{_e(name)}" title="{_e(name)}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        for name, png in sorted(plots.items())
    ]
    return '<div class="plots">' + "".join(images) + "</div>"


def _pairs(rows: list[tuple[str, Any]]) -> str:
    return _table(["name", "value"], [[k, v] for k, v in rows])


def _table(header: list[Any], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(_cell(value) for value in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f'<td class="num">{_e(_fmt(value))}</td>'
    return f"<td>{_e(_fmt(value))}</td>"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _e(value: Any) -> str:
    return html.escape(str(value))


def card_html(
    catalog: Catalog, model: str, reference: str | None, trusted: TrustedKeys
) -> str:
    """Return the HTML card of the version that ``NAME@REFERENCE`` names."""
    return render_card(collect_card(catalog, model, reference, trusted))
