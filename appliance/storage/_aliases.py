"""Model aliases: named pointers such as ``champion`` to versions, with history.

Serving uses the ``champion`` of each model, or its latest version while none
was promoted. Every change of an alias is appended to ``alias_events`` with
who made it, when and why. A rollback replays that history, so rolling back
twice returns to the champion before the previous one. The first promotion of
``champion`` records the latest version, which was served until then, as the
previous champion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb

from appliance.errors import NotFoundError, RegistryError, StorageError, shown
from appliance.storage._catalog import Catalog
from appliance.storage._models import (
    ModelVersion,
    get_version,
    latest_models,
    list_models,
)

logger = logging.getLogger(__name__)

CHAMPION = "champion"
"""Alias of the version that serving uses."""
CHALLENGER = "challenger"
"""Alias of the version being evaluated against the champion."""

_SET = "set"
_ROLLBACK = "rollback"


@dataclass(frozen=True)
class AliasEvent:
    """One change of an alias."""

    model: str
    alias: str
    version: int
    previous_version: int | None
    action: str
    """``set`` (promote) or ``rollback``."""
    actor: str
    reason: str
    changed_at: datetime


def set_alias(
    catalog: Catalog, model: str, alias: str, version: int, actor: str, reason: str
) -> AliasEvent:
    """Point `alias` of `model` at `version` and record the change.

    Raises:
        NotFoundError: The model has no such version.
        StorageError: The catalog rejected the write.
    """
    _check_alias(alias)
    get_version(catalog, model, version)
    return _record(catalog, model, alias, version, _SET, actor, reason)


def rollback_alias(
    catalog: Catalog, model: str, actor: str, reason: str, alias: str = CHAMPION
) -> AliasEvent:
    """Point `alias` back at the version it had before the current one.

    Raises:
        NotFoundError: The alias has no earlier version to return to.
    """
    target = rollback_target(catalog, model, alias)
    return _record(catalog, model, alias, target, _ROLLBACK, actor, reason)


def rollback_target(catalog: Catalog, model: str, alias: str = CHAMPION) -> int:
    """Return the version a rollback of `alias` would return to.

    Raises:
        RegistryError: The alias has no earlier version to return to.
    """
    stack = _version_stack(catalog, model, alias)
    if len(stack) >= 2 and stack[-2] != stack[-1]:
        return stack[-2]
    if not stack:
        where = f"it has no {alias} yet"
    elif len(stack) == 1:
        where = (
            f"version {stack[-1]} is the first {alias} that the earlier "
            "promotions and rollbacks left"
        )
    else:
        # The first promotion records the latest version as the previous
        # one, and that can be the promoted version itself.
        where = (
            f"version {stack[-1]} is the {alias}, and it was also the latest "
            "version served before the first promotion, so a rollback would "
            "change nothing"
        )
    option = "" if alias == CHAMPION else f" --alias {alias}"
    raise RegistryError(
        f"model {model!r} has no earlier {alias} to roll back to: {where} "
        f"('appliance models history {model}' lists them). Use 'appliance "
        f"models promote {model} VERSION{option}' to choose a version"
    )


def aliases(catalog: Catalog, model: str | None = None) -> dict[str, dict[str, int]]:
    """Return ``model -> alias -> version`` for the aliases that are set."""
    sql = "SELECT model, alias, version FROM model_aliases"
    params = []
    if model is not None:
        sql += " WHERE model = ?"
        params.append(model)
    result: dict[str, dict[str, int]] = {}
    for name, alias, version in catalog.db.execute(sql, params).fetchall():
        result.setdefault(name, {})[alias] = version
    return result


def alias_history(
    catalog: Catalog, model: str, alias: str | None = None
) -> list[AliasEvent]:
    """Return the changes of the aliases of `model`, oldest first."""
    sql = (
        "SELECT model, alias, version, previous_version, action, actor, reason, "
        "changed_at FROM alias_events WHERE model = ?"
    )
    params: list[object] = [model]
    if alias is not None:
        sql += " AND alias = ?"
        params.append(alias)
    rows = catalog.db.execute(sql + " ORDER BY changed_at, rowid", params).fetchall()
    return [AliasEvent(*row) for row in rows]


def resolve_version(
    catalog: Catalog, model: str, reference: str | int | None = None
) -> ModelVersion:
    """Return the version a reference names: a number, an alias, or the champion.

    ``champion`` (the default) falls back to the latest version while no
    version was promoted.

    Raises:
        NotFoundError: The model, version or alias does not exist.
    """
    if isinstance(reference, int):
        return get_version(catalog, model, reference)
    if reference is not None and reference.isdigit():
        return get_version(catalog, model, int(reference))
    alias = reference or CHAMPION
    version = aliases(catalog, model).get(model, {}).get(alias)
    if version is not None:
        return get_version(catalog, model, version)
    if alias == CHAMPION:
        return get_version(catalog, model, None)
    raise NotFoundError(
        f"model {model!r} has no alias {alias!r}; set it with 'appliance models "
        f"promote {model} VERSION --alias {alias}'"
    )


def champion_models(catalog: Catalog) -> list[ModelVersion]:
    """Return the champion of every model, or its latest version if none is set."""
    champions = {
        name: found[CHAMPION]
        for name, found in aliases(catalog).items()
        if CHAMPION in found
    }
    result = []
    for latest in latest_models(catalog):
        version = champions.get(latest.model)
        if version is None or version == latest.version:
            result.append(latest)
        else:
            result.append(get_version(catalog, latest.model, version))
    return result


def fallback_versions(catalog: Catalog, model: str, failed: int) -> list[int]:
    """Return the versions to serve when version `failed` of `model` cannot load.

    Earlier champions come first, the latest promotion first; then every
    other version, newest first.
    """
    earlier = list(reversed(_version_stack(catalog, model, CHAMPION)))
    newest_first = [v.version for v in list_models(catalog, model)]
    return [v for v in dict.fromkeys(earlier + newest_first) if v != failed]


def _record(
    catalog: Catalog,
    model: str,
    alias: str,
    version: int,
    action: str,
    actor: str,
    reason: str,
) -> AliasEvent:
    db = catalog.db
    current = aliases(catalog, model).get(model, {}).get(alias)
    if current is None and alias == CHAMPION:
        # Until a first promotion, serving uses the latest version; record it
        # as the previous champion so that a rollback can return to it.
        current = get_version(catalog, model, None).version
    event = AliasEvent(
        model,
        alias,
        version,
        current,
        action,
        actor,
        reason,
        datetime.now(timezone.utc),
    )
    try:
        with catalog.transaction():
            db.execute(
                "INSERT OR REPLACE INTO model_aliases VALUES (?, ?, ?)",
                [model, alias, version],
            )
            db.execute(
                "INSERT INTO alias_events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    model,
                    alias,
                    version,
                    current,
                    action,
                    actor,
                    reason,
                    event.changed_at,
                ],
            )
    except duckdb.Error as exc:
        raise StorageError(
            f"cannot set alias {alias!r} of model {model!r}: {exc}"
        ) from exc
    logger.info(
        "alias changed model=%s alias=%s version=%d previous=%s action=%s actor=%s",
        model,
        alias,
        version,
        current,
        action,
        actor,
    )
    return event


def _version_stack(catalog: Catalog, model: str, alias: str) -> list[int]:
    """Replay the alias history: a promotion pushes a version, a rollback pops."""
    history = alias_history(catalog, model, alias)
    stack: list[int] = []
    if history and history[0].previous_version is not None:
        stack.append(history[0].previous_version)
    for event in history:
        if event.action == _ROLLBACK and stack:
            stack.pop()
        else:
            stack.append(event.version)
    return stack


MAX_ALIAS_LENGTH = 64
"""Maximum length of an alias name, so the tables of the models commands stay
readable."""


def alias_problem(alias: str) -> str | None:
    """Return why `alias` is not a valid alias name, or None when it is valid."""
    if len(alias) > MAX_ALIAS_LENGTH:
        return (
            f"invalid alias {shown(alias)}; use at most {MAX_ALIAS_LENGTH} characters"
        )
    if not alias or alias.isdigit() or not all(c.isalnum() or c in "_-" for c in alias):
        return (
            f"invalid alias {alias!r}; use letters, digits, '_' and '-', and not "
            "only digits, which would read as a version number"
        )
    return None


def _check_alias(alias: str) -> None:
    problem = alias_problem(alias)
    if problem is not None:
        raise RegistryError(problem)
