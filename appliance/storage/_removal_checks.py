"""The checks a dataset removal runs first: dependents and unflushed rows.

Three things depend on a dataset: a model declared on it in the
configuration, a feature view whose SQL reads it, and a registered model
version whose training run recorded one of its versions. `find_dependents`
lists them with what each loses. Rows sent over HTTP that no flush has
stored yet (`unflushed_rows`) were acknowledged to their sender, so a removal
drops them only on request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb

from appliance.config import Config, FeatureViewConfig
from appliance.storage._buffer import WAL
from appliance.storage._buffer_files import line_count
from appliance.storage._catalog import Catalog
from appliance.storage._rejected import REJECTED
from appliance.storage._view_keys import tables_read


@dataclass(frozen=True)
class Dependent:
    """One thing that stops working as before when a dataset is removed."""

    kind: str
    """``model``, ``feature view`` or ``model version``."""
    name: str
    """The model or view name, or ``MODEL vN``."""
    loses: str
    """The loss, as a clause that follows the dependent's name."""


def find_dependents(catalog: Catalog, config: Config, dataset: str) -> list[Dependent]:
    """Return the models, feature views and model versions that use `dataset`."""
    views = _reading_views(catalog, config, dataset)
    found = [
        Dependent(
            "model",
            name,
            f"is declared on it ([models.{name}] dataset), so 'appliance train "
            f"{name}', its retraining and its batch drift check fail until the "
            "dataset has a version again",
        )
        for name, model in sorted(config.models.items())
        if model.dataset == dataset
    ]
    for view in views:
        joined = sorted(
            name
            for name, model in config.models.items()
            if view.name in model.feature_views
        )
        found.append(
            Dependent(
                "feature view",
                view.name,
                "reads it, so the view cannot be read: training of the models "
                f"that join it ({', '.join(joined) or 'none'}) fails, and so do "
                "their predictions in the daemon",
            )
        )
    return found + _trained_on(catalog, dataset)


def _reading_views(
    catalog: Catalog, config: Config, dataset: str
) -> list[FeatureViewConfig]:
    """Return the feature views whose SQL reads `dataset`.

    DuckDB matches table names regardless of case, so a view that names
    ``Flights`` reads ``flights`` too, unless a dataset of exactly that name
    exists. A view whose SQL does not parse reads it when its text names it.
    """
    exact = set(_dataset_names(catalog)) | set(config.datasets)
    found = []
    for view in sorted(config.feature_views.values(), key=lambda v: v.name):
        tables = tables_read(catalog.db, view.sql)
        if tables is None:
            if dataset.lower() in view.sql.lower():
                found.append(view)
            continue
        if any(_names_dataset(table, dataset, exact) for table in tables):
            found.append(view)
    return found


def _names_dataset(table: str, dataset: str, exact: set[str]) -> bool:
    """Tell whether DuckDB resolves the table name `table` to `dataset`."""
    if table == dataset:
        return True
    return table.lower() == dataset.lower() and table not in exact


def _dataset_names(catalog: Catalog) -> list[str]:
    rows = catalog.db.execute("SELECT DISTINCT dataset FROM dataset_versions")
    return [name for (name,) in rows.fetchall()]


def _trained_on(catalog: Catalog, dataset: str) -> list[Dependent]:
    """Return the registered model versions whose run recorded a version of
    `dataset`, as its training data or behind one of its feature views."""
    try:
        rows = catalog.db.execute(
            "SELECT m.model, m.version, r.dataset, r.dataset_version, "
            "r.feature_views_json FROM model_versions m "
            "JOIN runs r ON r.run_id = m.run_id ORDER BY m.model, m.version"
        ).fetchall()
    except duckdb.CatalogException:
        # A catalog without runs, opened read-only.
        return []
    aliases = _aliases(catalog)
    found = []
    for model, number, trained, version, views_json in rows:
        behind_views = json.loads(views_json or "{}")
        serving = _serving_text(aliases.get((model, number), []))
        if trained == dataset:
            loses = (
                f"was trained on {dataset}@{version}, so its batch drift check "
                "has no reference rows, and its run and model card name a "
                f"version that no longer exists; {serving}"
            )
        elif dataset in behind_views:
            loses = (
                f"recorded {dataset}@{behind_views[dataset]} behind its feature "
                "views, so its run and model card name a version that no longer "
                f"exists; {serving}"
            )
        else:
            continue
        found.append(Dependent("model version", f"{model} v{number}", loses))
    return found


def _aliases(catalog: Catalog) -> dict[tuple[str, int], list[str]]:
    """Return the aliases that point at each model version, by (model, version)."""
    rows = catalog.db.execute(
        "SELECT model, version, alias FROM model_aliases ORDER BY alias"
    ).fetchall()
    found: dict[tuple[str, int], list[str]] = {}
    for model, version, alias in rows:
        found.setdefault((model, version), []).append(alias)
    return found


def _serving_text(aliases: list[str]) -> str:
    """Return what the version keeps doing after the removal, by its aliases."""
    if "champion" in aliases:
        return "the version keeps serving as the champion"
    if aliases:
        return f"the version keeps its alias {', '.join(aliases)}"
    return (
        "the version holds no alias, so it serves only requests pinned to it "
        "with ?version=N"
    )


def unflushed_rows(folder: Path) -> dict[str, int]:
    """Return the rows of each buffer file that no version stores, by file name.

    These are the write-ahead file, segments of a flush that failed or was
    cut short, and segments in ``rejected/``, whose rows a flush rejected.
    Segments in ``quarantined/`` are the sources of quarantined rows, which
    the quarantine table records.

    Args:
        folder: The dataset's buffer folder, ``HOME/buffer/DATASET``.
    """
    files = [folder / WAL, *sorted(folder.glob("segment-*.jsonl"))]
    files += sorted((folder / REJECTED).glob("segment-*.jsonl"))
    counts = {str(path.relative_to(folder)): line_count(path) for path in files}
    return {name: rows for name, rows in counts.items() if rows}


def dependents_message(dataset: str, dependents: list[Dependent]) -> str:
    """Return the error that names every dependent and what it would lose."""
    lines = [
        f"dataset {dataset!r} was not removed, because these depend on it:",
        *(f"  {d.kind} {d.name} {d.loses}" for d in dependents),
        "Change or remove them first, or pass --ignore-dependents "
        '("ignore_dependents": true over HTTP) to remove the dataset anyway',
    ]
    return "\n".join(lines)


def unflushed_message(dataset: str, folder: Path, files: dict[str, int]) -> str:
    """Return the error that names the buffer files whose rows no version stores."""
    rows = sum(files.values())
    listed = ", ".join(f"{name} ({count})" for name, count in files.items())
    return (
        f"dataset {dataset!r} was not removed, because its HTTP ingest buffer "
        f"{folder} holds {rows} acknowledged rows that no version stores: "
        f"{listed}. Let the daemon flush them (or retry the rejected segments) "
        'first, or pass --drop-buffered-rows ("drop_buffered_rows": true over '
        "HTTP) to delete them with the dataset"
    )
