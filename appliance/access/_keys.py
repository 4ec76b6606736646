"""API keys: random bearer tokens with a role, stored as sha256 hashes.

A token is `TOKEN_PREFIX` plus 32 random bytes in URL-safe base64, shown once
when the key is created. The catalog keeps its sha256 and its first
characters, so that a listing can tell keys apart. A plain sha256 is enough
for a token of full entropy: no salt or slow hash is needed, because no list
of guesses can cover 256 random bits. Each role includes the rights of the
roles before it in `ROLES`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import duckdb

from appliance.access._actor import RESERVED_NAMES, Actor, current_actor
from appliance.access._audit import record, table_exists
from appliance.dbrows import first_row
from appliance.errors import ApiKeyError, NotFoundError, RequestError

if TYPE_CHECKING:
    from appliance.storage import Catalog

logger = logging.getLogger(__name__)

ROLES = ("reader", "predictor", "operator", "admin")
"""Roles from least to most rights. A reader reads the API. A predictor also
predicts, sends labels and sends rows. An operator also changes state: promote,
roll back, retrain, acknowledge, ingest files and train. An admin also manages
keys and reads the audit log."""
ADMIN = "admin"
TOKEN_PREFIX = "apk_"
SHOWN_PREFIX_CHARACTERS = 10
"""Characters of a token kept in the catalog and shown by listings."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    name         VARCHAR PRIMARY KEY,
    role         VARCHAR NOT NULL,
    token_sha256 VARCHAR NOT NULL UNIQUE,
    token_prefix VARCHAR NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    created_by   VARCHAR NOT NULL,
    revoked_at   TIMESTAMPTZ,
    revoked_by   VARCHAR
)
"""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_COLUMNS = "name, role, token_prefix, created_at, created_by, revoked_at, revoked_by"


@dataclass(frozen=True)
class ApiKey:
    """One key as the catalog lists it, without its hash."""

    name: str
    role: str
    token_prefix: str
    """First characters of the token, to tell keys apart."""
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    @property
    def active(self) -> bool:
        """Whether requests with this key are let in."""
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        """Return the key as JSON-ready values."""
        values = asdict(self)
        for name in ("created_at", "revoked_at"):
            if values[name] is not None:
                values[name] = values[name].isoformat()
        return {**values, "active": self.active}


def role_allows(role: str, required: str) -> bool:
    """Return whether `role` includes the rights of `required`."""
    return ROLES.index(role) >= ROLES.index(required)


def hash_token(token: str) -> str:
    """Return the sha256 hex digest of a token, as the catalog stores it."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def find_holder(keys: dict[str, Actor], token: str) -> Actor | None:
    """Return the active key whose token is `token`, else None.

    The lookup compares sha256 digests, never tokens, so its timing depends
    on how much of the guess's digest matches a stored one. A caller cannot steer a
    digest towards a stored one, so that timing reveals nothing about the
    token, and the lookup works as a constant-time comparison does.
    """
    return keys.get(hash_token(token))


def create_key(catalog: Catalog, name: str, role: str) -> tuple[ApiKey, str]:
    """Create key `name` with `role` and return it with its token.

    The token is returned once and never stored.

    Raises:
        RequestError: The name or role is invalid.
        ApiKeyError: A key of that name exists, even revoked.
    """
    _check_name(name)
    if role not in ROLES:
        raise RequestError(
            f"invalid role {role!r} for key {name!r}; use one of {', '.join(ROLES)}"
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    actor = current_actor()
    key = ApiKey(
        name, role, token[:SHOWN_PREFIX_CHARACTERS], datetime.now(UTC), actor.name
    )
    db = catalog.db
    db.execute(SCHEMA)
    if _row(db, name) is not None:
        raise ApiKeyError(
            f"a key named {name!r} exists; choose another name (a revoked key's "
            "name stays taken, so audit entries name one key)"
        )
    db.execute(
        "INSERT INTO api_keys (name, role, token_sha256, token_prefix, created_at, "
        "created_by) VALUES (?, ?, ?, ?, ?, ?)",
        [name, role, hash_token(token), key.token_prefix, key.created_at, actor.name],
    )
    logger.info("api key created name=%s role=%s actor=%s", name, role, actor.name)
    record(catalog, "key.create", name, {"role": role, "prefix": key.token_prefix})
    return key, token


def revoke_key(catalog: Catalog, name: str) -> ApiKey:
    """Revoke key `name`; requests with it are rejected from then on.

    Raises:
        NotFoundError: No key has that name.
        ApiKeyError: The key is revoked already, or it is the last active
            admin key, without which keys could no longer be managed over HTTP.
    """
    db = catalog.db
    db.execute(SCHEMA)
    key = _row(db, name)
    if key is None:
        names = ", ".join(k.name for k in list_keys(catalog)) or "none"
        raise NotFoundError(f"no API key named {name!r}; keys: {names}")
    if not key.active:
        raise ApiKeyError(
            f"key {name!r} was revoked at {key.revoked_at:%Y-%m-%d %H:%M:%S}"
        )
    if key.role == ADMIN and _active_admins(db) == 1:
        raise ApiKeyError(
            f"key {name!r} is the last active admin key; create another with "
            "'appliance keys create NAME --role admin' first"
        )
    actor = current_actor()
    now = datetime.now(UTC)
    db.execute(
        "UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE name = ?",
        [now, actor.name, name],
    )
    logger.info("api key revoked name=%s actor=%s", name, actor.name)
    record(catalog, "key.revoke", name, {"role": key.role})
    return ApiKey(
        key.name,
        key.role,
        key.token_prefix,
        key.created_at,
        key.created_by,
        now,
        actor.name,
    )


def list_keys(catalog: Catalog) -> list[ApiKey]:
    """Return every key, revoked ones too, by name."""
    if not table_exists(catalog.db, "api_keys"):
        return []
    rows = catalog.db.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY name")
    return [ApiKey(*row) for row in rows.fetchall()]


def active_keys(catalog: Catalog) -> dict[str, Actor]:
    """Return the actor of each active key by its token's sha256, for the
    daemon's gate."""
    if not table_exists(catalog.db, "api_keys"):
        return {}
    rows = catalog.db.execute(
        "SELECT token_sha256, name, role FROM api_keys WHERE revoked_at IS NULL"
    ).fetchall()
    return {digest: Actor(name, role) for digest, name, role in rows}


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise RequestError(
            f"invalid key name {name!r}; use 1 to 64 ASCII letters, digits, '_', "
            "'.' or '-', starting with a letter or digit"
        )
    if name.lower() in RESERVED_NAMES:
        raise RequestError(
            f"key name {name!r} is reserved for audit entries without a key; "
            "choose another name"
        )


def _row(db: duckdb.DuckDBPyConnection, name: str) -> ApiKey | None:
    row = first_row(
        db.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE name = ?", [name])
    )
    return ApiKey(*row) if row else None


def _active_admins(db: duckdb.DuckDBPyConnection) -> int:
    row = first_row(
        db.execute(
            "SELECT count(*) FROM api_keys WHERE role = ? AND revoked_at IS NULL",
            [ADMIN],
        )
    )
    return int(row[0]) if row else 0
