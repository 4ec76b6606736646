"""The settings that a SIGHUP reload cannot apply, and the message naming them.

The daemon applies some settings only at start, such as those it opens the
catalog, binds its socket, starts the prediction log and loads the column key
with. A reloaded file that changes one of them is rejected as a whole, and
the message lists each such change as ``section.key: old -> new``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from appliance.config import Config
from appliance.errors import ConfigError

RESTART_SETTINGS: dict[str, tuple[str, ...] | None] = {
    "storage": ("home",),
    "server": (
        "host",
        "port",
        "session_threads",
        "catalog_memory_mb",
        "malloc_arenas",
        "malloc_trim_seconds",
        "background_nice",
    ),
    "predictions": None,
    "security": None,
}
"""Keys of each config section that need a restart; None means every key."""


def check_reloadable(old: Config, new: Config) -> None:
    """Reject `new` when it changes a setting that only a restart applies.

    Raises:
        ConfigError: Listing every such change as ``section.key: old -> new``.
    """
    changes = restart_changes(old, new)
    if not changes:
        return
    them = "it" if len(changes) == 1 else "them"
    raise ConfigError(
        f"{new.path} changes settings that need a restart: {', '.join(changes)}; "
        f"restart the daemon to apply {them}"
    )


def restart_changes(old: Config, new: Config) -> list[str]:
    """Return ``section.key: old -> new`` for each changed restart setting.

    A field declared with ``repr=False``, the mark of a secret, is listed
    without its values.
    """
    changes = []
    for section, keys in RESTART_SETTINGS.items():
        before, after = getattr(old, section), getattr(new, section)
        for field in dataclasses.fields(before):
            if keys is not None and field.name not in keys:
                continue
            was, now = getattr(before, field.name), getattr(after, field.name)
            if was == now:
                continue
            name = f"{section}.{field.name}"
            if field.repr:
                changes.append(f"{name}: {_shown(was)} -> {_shown(now)}")
            else:
                changes.append(f"{name} (value not shown)")
    was, now = sorted(old.sensitive_columns), sorted(new.sensitive_columns)
    if was != now:
        changes.append(f"datasets.*.sensitive: {_shown(was)} -> {_shown(now)}")
    return changes


def _shown(value: Any) -> str:
    """Return `value` in TOML's notation, or ``(not set)`` for None."""
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return json.dumps(str(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)
