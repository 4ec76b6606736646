"""Promotion and rollback of model versions, for the CLI and the daemon.

A version's signature and files are checked (or the version is loaded, inside
the daemon) before any alias moves, so a tampered or corrupted version is
rejected and the previous champion keeps serving.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from appliance.access import record
from appliance.errors import ApplianceError
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
    load_unchanged: bool = False,
    requested_by: str | None = None,
) -> tuple[AliasEvent, Any]:
    """Point `alias` of `model` at `version` once `load` accepted its artifact.

    When `alias` already points at `version`, the alias history is left as it
    is, and the result is the change that set the alias, with action
    `UNCHANGED`. The version is then loaded only when `load_unchanged` is
    true, as for a champion the daemon failed to load; otherwise the result's
    second item is None. Every call, failed ones too, adds an audit entry,
    whose details keep this call's `actor` and `reason`. `requested_by`, the
    actor that a keyed request named for itself, goes to the audit details
    only.

    Returns:
        The recorded change and what `load` returned.

    Raises:
        NotFoundError: The model or version does not exist.
        IntegrityError: `load` rejected the version's files, such as for a
            missing or invalid signature; no alias moved.
        RegistryError: The alias name is invalid.
    """
    claimed = _claimed(requested_by)
    details = {"alias": alias, "version": version, "actor": actor, "reason": reason}
    with _audited(catalog, "model.promote", model, {**details, **claimed}):
        target = get_version(catalog, model, version)
        current = aliases(catalog, model).get(model, {}).get(alias)
        if current == version:
            loaded = load(target) if load_unchanged else None
            return _unchanged(catalog, model, {**details, **claimed}), loaded
        loaded = load(target)
        event = set_alias(catalog, model, alias, version, actor, reason)
    record(catalog, "model.promote", model, {**_details(event), **claimed})
    return event, loaded


def _unchanged(catalog: Catalog, model: str, details: dict[str, Any]) -> AliasEvent:
    """Return the change that set the alias of `details` to its version, as an
    unchanged one, and audit the request with `details`."""
    alias, version = details["alias"], details["version"]
    last = alias_history(catalog, model, alias)[-1]
    logger.info(
        "alias unchanged model=%s alias=%s version=%d actor=%s",
        model,
        alias,
        version,
        details["actor"],
    )
    unchanged = dataclasses.replace(last, previous_version=version, action=UNCHANGED)
    audit = {
        **details,
        "previous_version": version,
        "set_by": last.actor,
        "set_at": last.changed_at.isoformat(),
    }
    record(catalog, "model.promote", model, audit, UNCHANGED)
    return unchanged


def _claimed(requested_by: str | None) -> dict[str, str]:
    """Return the audit detail of the actor a keyed request named for itself."""
    return {} if requested_by is None else {"requested_by": requested_by}


def rollback(
    catalog: Catalog,
    model: str,
    alias: str,
    actor: str,
    reason: str,
    load: Loader,
    requested_by: str | None = None,
) -> tuple[AliasEvent, Any]:
    """Point `alias` back at its previous version once `load` accepted it.

    `requested_by` goes to the audit details only, as in `promote`.

    Raises:
        RegistryError: The alias has no previous version.
        IntegrityError: `load` rejected the previous version's files.
    """
    claimed = _claimed(requested_by)
    details = {"alias": alias, "actor": actor, "reason": reason, **claimed}
    with _audited(catalog, "model.rollback", model, details):
        target = get_version(catalog, model, rollback_target(catalog, model, alias))
        loaded = load(target)
        event = rollback_alias(catalog, model, actor, reason, alias)
    record(catalog, "model.rollback", model, {**_details(event), **claimed})
    return event, loaded


def _details(event: AliasEvent) -> dict[str, Any]:
    """Return the audit details of an alias change."""
    return {
        "alias": event.alias,
        "version": event.version,
        "previous_version": event.previous_version,
        "actor": event.actor,
        "reason": event.reason,
    }


@contextmanager
def _audited(
    catalog: Catalog, action: str, model: str, details: dict[str, Any]
) -> Iterator[None]:
    """Record a failed audit entry when the block raises an `ApplianceError`."""
    try:
        yield
    except ApplianceError as exc:
        record(catalog, action, model, {**details, "error": str(exc)}, "failed")
        raise


def is_serving_alias(alias: str) -> bool:
    """Return whether a change of `alias` changes what the daemon serves."""
    return alias == CHAMPION
