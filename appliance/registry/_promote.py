"""Promotion and rollback of model versions, for the CLI and the daemon.

A version's signature and files are checked (or the version is loaded, inside
the daemon) before any alias moves, so a tampered or corrupted version is
rejected and the previous champion keeps serving.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from appliance.storage import (
    CHAMPION,
    AliasEvent,
    Catalog,
    ModelVersion,
    alias_history,
    aliases,
    get_version,
    rollback_alias,
    rollback_target,
    set_alias,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

UNCHANGED = "unchanged"
"""Action of a promotion to the version the alias already points at."""

Loader = Callable[[ModelVersion], Any]
"""Check a version's artifact and return what serving needs, such as a session."""


def promote(
    catalog: Catalog,
    model: str,
    version: int,
    alias: str,
    actor: str,
    reason: str,
    load: Loader,
) -> tuple[AliasEvent, Any]:
    """Point `alias` of `model` at `version` once `load` accepted its artifact.

    When `alias` already points at `version`, nothing is recorded or loaded.
    The result is then the change that set the alias, with action `UNCHANGED`,
    and None.

    Returns:
        The recorded change and what `load` returned.

    Raises:
        NotFoundError: The model or version does not exist.
        IntegrityError: `load` rejected the version's files, such as for a
            missing or invalid signature; no alias moved.
        RegistryError: The alias name is invalid.
    """
    target = get_version(catalog, model, version)
    current = aliases(catalog, model).get(model, {}).get(alias)
    if current == version:
        last = alias_history(catalog, model, alias)[-1]
        logger.info(
            "alias unchanged model=%s alias=%s version=%d actor=%s",
            model,
            alias,
            version,
            actor,
        )
        unchanged = dataclasses.replace(
            last, previous_version=version, action=UNCHANGED
        )
        return unchanged, None
    loaded = load(target)
    return set_alias(catalog, model, alias, version, actor, reason), loaded


def rollback(
    catalog: Catalog,
    model: str,
    alias: str,
    actor: str,
    reason: str,
    load: Loader,
) -> tuple[AliasEvent, Any]:
    """Point `alias` back at its previous version once `load` accepted it.

    Raises:
        RegistryError: The alias has no previous version.
        IntegrityError: `load` rejected the previous version's files.
    """
    target = get_version(catalog, model, rollback_target(catalog, model, alias))
    loaded = load(target)
    return rollback_alias(catalog, model, actor, reason, alias), loaded


def is_serving_alias(alias: str) -> bool:
    """Return whether a change of `alias` changes what the daemon serves."""
    return alias == CHAMPION
