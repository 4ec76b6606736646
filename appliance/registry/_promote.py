"""Promotion and rollback of model versions, for the CLI and the daemon.

A version's artifact is checked (or loaded, inside the daemon) before any
alias moves, so a corrupted artifact is rejected and the previous champion
keeps serving.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from appliance.storage import (
    CHAMPION,
    AliasEvent,
    Catalog,
    ModelVersion,
    get_version,
    rollback_alias,
    rollback_target,
    set_alias,
    verify_artifact,
)

T = TypeVar("T")

Loader = Callable[[ModelVersion], Any]
"""Check a version's artifact and return what serving needs, such as a session."""


def promote(
    catalog: Catalog,
    model: str,
    version: int,
    alias: str,
    actor: str,
    reason: str,
    load: Loader = verify_artifact,
) -> tuple[AliasEvent, Any]:
    """Point `alias` of `model` at `version` once `load` accepted its artifact.

    Returns:
        The recorded change and what `load` returned.

    Raises:
        NotFoundError: The model or version does not exist.
        IntegrityError: The artifact does not match its sha256; no alias moved.
        RegistryError: The alias name is invalid.
    """
    target = get_version(catalog, model, version)
    loaded = load(target)
    return set_alias(catalog, model, alias, version, actor, reason), loaded


def rollback(
    catalog: Catalog,
    model: str,
    alias: str,
    actor: str,
    reason: str,
    load: Loader = verify_artifact,
) -> tuple[AliasEvent, Any]:
    """Point `alias` back at its previous version once `load` accepted it.

    Raises:
        RegistryError: The alias has no previous version.
        IntegrityError: The previous version's artifact is corrupted.
    """
    target = get_version(catalog, model, rollback_target(catalog, model, alias))
    loaded = load(target)
    return rollback_alias(catalog, model, actor, reason, alias), loaded


def is_serving_alias(alias: str) -> bool:
    """Return whether a change of `alias` changes what the daemon serves."""
    return alias == CHAMPION
