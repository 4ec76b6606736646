"""The settings that a SIGHUP reload cannot apply, and the message naming them.

The daemon applies some settings only at start, such as those it opens the
catalog, binds its socket, starts the prediction log and loads the column key
with. A reloaded file that changes one of them is rejected as a whole, and
the message lists each such change as ``section.key: old -> new``.

Of ``[security]``, a reload applies ``require_keys`` and
``refused_audit_seconds``, which the access gate reads per request, and
``signing_key`` and ``trusted_keys``, which are read from the configuration
at each signature and verification. `check_security` rejects such a change
that would leave the daemon without a usable key or its served models
without a trusted signature.

`changed_settings` names what a reload changes, for the log and the audit
log, and `warn_missing_datasets` warns at start and at each reload about a
model whose dataset has no version yet.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from appliance.config import Config, SecurityConfig
from appliance.errors import ConfigError
from appliance.signing import read_private_key, read_public_key, signer_id
from appliance.signing import trusted_keys as read_trusted_keys
from appliance.storage import SIGNATURE_FILE, Catalog, get_version, list_versions

logger = logging.getLogger(__name__)

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
    # The prediction log makes its cipher from the column key at start, after
    # checking the key against the stored values, and the ingest buffer and
    # the online features keep the cipher they make at first need.
    "security": ("column_key",),
}
"""Keys of each config section that need a restart; None means every key."""
TRUST_SETTINGS = ("signing_key", "trusted_keys")
"""Keys of ``[security]`` that decide which signatures are accepted."""


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
    """Return ``section.key: old -> new`` for each changed restart setting."""
    changes = []
    for section, keys in RESTART_SETTINGS.items():
        before, after = getattr(old, section), getattr(new, section)
        changes += section_changes(section, before, after, keys)
    was, now = sorted(old.sensitive_columns), sorted(new.sensitive_columns)
    if was != now:
        changes.append(f"datasets.*.sensitive: {_shown(was)} -> {_shown(now)}")
    return changes


def section_changes(
    section: str, before: Any, after: Any, keys: tuple[str, ...] | None = None
) -> list[str]:
    """Return ``section.key: old -> new`` for each changed field of a section.

    Only `keys` are compared, or every field when `keys` is None. A field
    declared with ``repr=False``, the mark of a secret, is listed without its
    values.
    """
    changes = []
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
    return changes


_NOT_SETTINGS = ("path", "api_key", "home_origin")
"""Fields of `Config` that the file does not set."""


def changed_settings(old: Config, new: Config) -> dict[str, list[str]]:
    """Return the names of the settings that differ, without their values.

    The names read ``section.key``, or ``models.NAME.key`` in a section of
    named tables. Returns a dict with the lists ``changed``, ``added`` and
    ``removed`` (of named tables such as ``models.NAME``), each only when
    not empty, so secrets such as a webhook URL are never shown.
    """
    names: dict[str, list[str]] = {"changed": [], "added": [], "removed": []}
    for field in dataclasses.fields(old):
        if field.name in _NOT_SETTINGS:
            continue
        was, now = getattr(old, field.name), getattr(new, field.name)
        if was == now:
            continue
        if isinstance(was, dict):
            _table_changes(field.name, was, now, names)
        elif dataclasses.is_dataclass(was):
            names["changed"] += _changed_fields(field.name, was, now)
        else:
            names["changed"].append(field.name)
    return {kind: found for kind, found in names.items() if found}


def _table_changes(
    section: str, was: dict[str, Any], now: dict[str, Any], names: dict[str, list]
) -> None:
    """Add the changes of a section of named tables, such as ``[models.NAME]``."""
    for name in sorted(set(was) | set(now)):
        if name not in now:
            names["removed"].append(f"{section}.{name}")
        elif name not in was:
            names["added"].append(f"{section}.{name}")
        elif was[name] != now[name]:
            names["changed"] += _changed_fields(
                f"{section}.{name}", was[name], now[name]
            )


def _changed_fields(prefix: str, before: Any, after: Any) -> list[str]:
    return [
        f"{prefix}.{field.name}"
        for field in dataclasses.fields(before)
        if getattr(before, field.name) != getattr(after, field.name)
    ]


def warn_missing_datasets(catalog: Catalog, config: Config) -> list[str]:
    """Log a warning for each model whose dataset has no version in the catalog.

    Not an error, because the dataset may be ingested later; until then the
    model cannot be trained. A catalog without any dataset, as at the first
    start, gets no warning, because every model would get one. Returns the
    names of the models warned about.
    """
    known = {version.dataset for version in list_versions(catalog)}
    if not known:
        return []
    missing = []
    for name, model in sorted(config.models.items()):
        if model.dataset in known:
            continue
        missing.append(name)
        logger.warning(
            "model dataset not found model=%s dataset=%s config=%s; training "
            "fails until the dataset is ingested, so ingest it or fix "
            "models.%s.dataset",
            name,
            model.dataset,
            config.path,
            name,
        )
    return missing


def check_security(
    catalog: Catalog, old: Config, new: Config, usable_keys: int, served: dict[str, int]
) -> None:
    """Reject a ``[security]`` change that the running daemon cannot apply safely.

    Reads key files and model files, so call it off the event loop.

    Args:
        catalog: The daemon's catalog, to find the served versions' folders.
        old: The configuration in force.
        new: The reloaded configuration.
        usable_keys: API keys that are neither revoked nor expired.
        served: Version of each served model, by model name.

    Raises:
        ConfigError: ``require_keys`` turns true while no key is usable, a
            key file of ``signing_key`` or ``trusted_keys`` cannot be read,
            or a served version is signed by a key that `new` does not
            trust. The message names the setting.
    """
    before, after = old.security, new.security
    if after.require_keys and not before.require_keys and usable_keys == 0:
        raise ConfigError(
            f"{new.path} sets security.require_keys: false -> true, but the "
            "catalog has no active API key (every key is revoked or expired), "
            "so every request would be rejected; create one with 'appliance "
            "keys create NAME --role admin' and reload again"
        )
    changed = section_changes("security", before, after, TRUST_SETTINGS)
    if not changed:
        return
    _read_key_files(after)
    trusted = read_trusted_keys(new)
    for model, version in sorted(served.items()):
        signer = _signer(catalog, model, version)
        if signer is None or signer in trusted.keys:
            continue
        raise ConfigError(
            f"{new.path} changes {', '.join(changed)}, but the served model "
            f"{model!r} version {version} is signed by key {signer}, which the "
            f"new keys do not trust (trusted keys: {trusted.names()}); add that "
            "key's public key to security.trusted_keys, or serve a version "
            "signed by a trusted key first"
        )


def _signer(catalog: Catalog, model: str, version: int) -> str | None:
    """Return the key id that signed a version, or None when unreadable.

    A version whose signature cannot be read was rejected when it was
    loaded, so a trust change cannot be what breaks it.
    """
    found = get_version(catalog, model, version)
    try:
        return signer_id((found.path / SIGNATURE_FILE).read_bytes())
    except OSError:
        return None


def _read_key_files(security: SecurityConfig) -> None:
    """Read each key file that `security` names, to reject an invalid one.

    Raises:
        ConfigError: Naming the setting and the file's problem.
    """
    if security.signing_key is not None:
        try:
            read_private_key(security.signing_key)
        except ConfigError as exc:
            raise ConfigError(f"security.signing_key: {exc}") from None
    for path in security.trusted_keys:
        try:
            read_public_key(path)
        except ConfigError as exc:
            raise ConfigError(f"security.trusted_keys: {exc}") from None


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
