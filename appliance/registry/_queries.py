"""Registry reads as JSON-ready records, shared by the CLI and the daemon's routes.

While a daemon runs, the CLI gets these records over HTTP from the daemon,
which calls the same functions on its own catalog connection. Without a
daemon, the CLI calls them on the catalog opened read-only.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.storage import (
    CHAMPION,
    AliasEvent,
    Catalog,
    ModelVersion,
    alias_history,
    aliases,
    artifacts_of,
    champion_models,
    children_of,
    gate_rejections,
    get_runs,
    list_models,
    list_runs,
    resolve_version,
    training_data,
)


def run_summaries(
    catalog: Catalog,
    model: str | None = None,
    parent: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Return runs newest first, without their folds and evaluation."""
    runs = list_runs(catalog, model, parent, limit, details=False)
    records = []
    for run in runs:
        record = _shallow(run)
        del record["folds"], record["evaluation"]
        records.append(record)
    return records


def run_details(
    catalog: Catalog, run_ids: list[str], details: bool = True
) -> list[dict[str, Any]]:
    """Return runs with their artifacts and child run ids, in order.

    With `details` false, ``folds`` and ``evaluation`` are None, which keeps
    comparisons of many runs fast.

    Raises:
        NotFoundError: A run id does not exist.
    """
    runs = get_runs(catalog, run_ids, details)
    artifacts = artifacts_of(catalog, run_ids)
    children = children_of(catalog, run_ids)
    records = []
    for run in runs:
        record = _shallow(run)
        record["artifacts"] = artifacts[run.run_id]
        record["child_runs"] = children[run.run_id]
        records.append(record)
    return records


def model_versions(catalog: Catalog, model: str | None = None) -> list[dict[str, Any]]:
    """Return registered versions with their aliases and whether they serve.

    Each record also has ``gate``, the retraining that rejected the version
    or None, and ``training_data``, the dataset version of its training run,
    with ``training_data_removed`` true once retention removed it.
    """
    names = aliases(catalog)
    serving = {(v.model, v.version) for v in champion_models(catalog)}
    rejections = gate_rejections(catalog, model)
    data = training_data(catalog)
    records = []
    for version in list_models(catalog, model):
        record = asdict(version)
        record["path"] = str(version.path)
        record["aliases"] = sorted(
            alias
            for alias, number in names.get(version.model, {}).items()
            if number == version.version
        )
        record["serving"] = (version.model, version.version) in serving
        rejection = rejections.get((version.model, version.version))
        record["gate"] = None
        record["gate_reason"] = None
        if rejection is not None:
            record["gate"] = f"rejected by retraining {rejection['retrain_id']}"
            record["gate_reason"] = rejection["reason"]
        record["training_data"], record["training_data_removed"] = data.get(
            version.run_id, (None, False)
        )
        records.append(record)
    return records


def history(
    catalog: Catalog, model: str, alias: str | None = None
) -> list[dict[str, Any]]:
    """Return the alias changes of `model`, oldest first.

    Each promotion of the champion to another version carries ``watch``: the
    rollback watch's verdict on it (``kept`` or ``rolled_back`` with the
    reason), ``pending`` for the latest one while it is not judged yet, or
    ``not_judged`` for one the champion moved on from before a verdict.
    """
    events = alias_history(catalog, model, alias)
    records = [event_record(event) for event in events]
    promotions = [
        (event, record)
        for event, record in zip(events, records, strict=True)
        if event.alias == CHAMPION
        and event.action == "set"
        and event.previous_version not in (None, event.version)
    ]
    if promotions:
        last = [event for event in events if event.alias == CHAMPION][-1]
        _add_verdicts(catalog.home, model, promotions, last)
    return records


def _add_verdicts(
    home: Path,
    model: str,
    promotions: list[tuple[AliasEvent, dict[str, Any]]],
    last: AliasEvent,
) -> None:
    """Set ``watch`` on each promotion record from the rollback watch's verdicts.

    `last` is the latest change of the champion, which is pending while
    it is a promotion the watch has not judged. The watch judges only the
    served champion, so an earlier promotion without a verdict is never judged.
    """
    from appliance.monitoring import MonitoringStore

    with MonitoringStore(home) as store:
        verdicts = {c["promoted_at"]: c for c in store.rollback_checks(model)}
    for event, record in promotions:
        verdict = verdicts.get(event.changed_at)
        if verdict is not None:
            record["watch"] = {
                "outcome": verdict["outcome"],
                "reason": verdict["reason"],
                "decided_at": verdict["decided_at"].isoformat(),
            }
        elif event is last:
            record["watch"] = {
                "outcome": "pending",
                "reason": "the rollback watch judges this promotion once the "
                "version has min_live_labels labels since it",
            }
        else:
            record["watch"] = {
                "outcome": "not_judged",
                "reason": "the champion changed again before the rollback watch "
                "had min_live_labels labels of this version",
            }


def resolve(catalog: Catalog, model: str, reference: str | None) -> dict[str, Any]:
    """Return the version that ``NAME@REFERENCE`` names, as a record."""
    version = resolve_version(catalog, model, reference)
    record = asdict(version)
    record["path"] = str(version.path)
    return record


def version_from_record(record: dict[str, Any]) -> ModelVersion:
    """Rebuild a `ModelVersion` from a record sent as JSON."""
    created = record["created_at"]
    if isinstance(created, str):
        created = datetime.fromisoformat(created)
    return ModelVersion(
        model=record["model"],
        version=record["version"],
        run_id=record["run_id"],
        created_at=created,
        task=record["task"],
        path=Path(record["path"]),
        sha256=record["sha256"],
        parity=record["parity"],
    )


def event_record(event: AliasEvent) -> dict[str, Any]:
    """Return an alias change as a JSON-ready record."""
    record = asdict(event)
    record["changed_at"] = event.changed_at.isoformat()
    return record


def _shallow(run: Any) -> dict[str, Any]:
    """Return the fields of a dataclass without copying nested values.

    `dataclasses.asdict` deep-copies every nested dictionary, which dominated
    the time of comparing 1,000 runs.
    """
    return dict(vars(run))
