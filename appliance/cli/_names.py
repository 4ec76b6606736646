"""Checks that a dataset or model named on the command line is known.

A command that lists rows of a misspelt name would print ``(none)`` and exit
0. The commands call these checks when they found no rows, so a known name
costs no extra read.
"""

from __future__ import annotations

from appliance.cli._output import read_catalog
from appliance.cli._remote import registry_read
from appliance.config import Config
from appliance.errors import NotFoundError


def check_dataset_known(config: Config, name: str) -> None:
    """Raise `NotFoundError` unless `name` is declared or has a version."""
    if name in config.datasets:
        return
    versions = read_catalog(config, "/v1/admin/datasets", "datasets", "list_versions")
    ingested = {record["dataset"] for record in versions}
    if name not in ingested:
        known = ", ".join(sorted(ingested | set(config.datasets))) or "none"
        raise NotFoundError(
            f"dataset {name!r} is not declared in [datasets] and has no version; "
            f"known datasets: {known}"
        )


def check_model_known(config: Config, name: str) -> None:
    """Raise `NotFoundError` unless `name` is declared or has a registered version."""
    if name in config.models:
        return
    from appliance.registry import model_versions

    versions = registry_read(
        config, "/models", "versions", {"model": None}, model_versions, None
    )
    registered = {record["model"] for record in versions}
    if name not in registered:
        known = ", ".join(sorted(registered | set(config.models))) or "none"
        raise NotFoundError(
            f"model {name!r} is not declared in [models] and has no registered "
            f"version; known models: {known}"
        )
