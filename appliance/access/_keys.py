"""API keys: random bearer tokens with a role, stored as sha256 hashes.

A token is `TOKEN_PREFIX` plus 32 random bytes in URL-safe base64, shown once
when the key is created. The catalog keeps its sha256 and its first
characters, so that a listing can tell keys apart. A plain sha256 is enough
for a token of full entropy: no salt or slow hash is needed, because no list
of guesses can cover 256 random bits. Each role includes the rights of the
roles before it in `ROLES`.

A key may expire. Its ``expires_at`` is its creation time plus the lifetime
given at creation, both read from one ``datetime.now(UTC)`` call of the
process that creates it, and the daemon compares it with its own
``datetime.now(UTC)`` on every request. The daemon and a command on the
catalog run on the same box, so they read the same system clock. A key made
before expiry existed has no ``expires_at`` and never expires.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
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

MAX_LIFETIME = timedelta(days=3650)
"""Maximum lifetime of a key. A key created without a lifetime never expires."""

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
);
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS expires_at TIMESTAMPTZ;
"""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_COLUMNS = "name, role, token_prefix, created_at, created_by, revoked_at, revoked_by"
"""Columns of `ApiKey` in field order, but for ``expires_at``, which a catalog
written before expiry existed lacks (see `_key_columns`)."""


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
    expires_at: datetime | None = None
    """Time from which requests with the key are rejected; None for never."""

    @property
    def expired(self) -> bool:
        """Whether the key's expiry time has passed."""
        return is_expired(self.expires_at, datetime.now(UTC))

    @property
    def active(self) -> bool:
        """Whether requests with this key are let in."""
        return self.revoked_at is None and not self.expired

    def to_dict(self) -> dict[str, Any]:
        """Return the key as JSON-ready values, with times in UTC."""
        values = asdict(self)
        for name in ("created_at", "revoked_at", "expires_at"):
            if values[name] is not None:
                values[name] = values[name].astimezone(UTC).isoformat()
        return {**values, "active": self.active, "expired": self.expired}


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """The actor of an unrevoked key and its expiry, as the daemon's gate
    keeps them in memory."""

    actor: Actor
    expires_at: datetime | None = None
    """Time from which the key is rejected as expired; None for never."""


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    """Return whether a key that expires at `expires_at` is expired at `now`."""
    return expires_at is not None and now >= expires_at


def utc_text(at: datetime) -> str:
    """Return `at` in UTC to the second, such as ``2026-01-31T08:00:00Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def role_allows(role: str, required: str) -> bool:
    """Return whether `role` includes the rights of `required`."""
    return ROLES.index(role) >= ROLES.index(required)


def hash_token(token: str) -> str:
    """Return the sha256 hex digest of a token, as the catalog stores it."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def find_holder(keys: dict[str, KeyHolder], token: str) -> KeyHolder | None:
    """Return the unrevoked key whose token is `token`, else None.

    An expired key is returned too, so that the caller can tell it apart
    from an unknown one.

    The lookup compares sha256 digests, never tokens, so its timing depends
    on how much of the guess's digest matches a stored one. A caller cannot steer a
    digest towards a stored one, so that timing reveals nothing about the
    token, and the lookup works as a constant-time comparison does.
    """
    return keys.get(hash_token(token))


def create_key(
    catalog: Catalog, name: str, role: str, expires_in: timedelta | None = None
) -> tuple[ApiKey, str]:
    """Create key `name` with `role` and return it with its token.

    The token is returned once and never stored.

    Args:
        catalog: A writable catalog.
        name: Key name, shown in audit entries.
        role: One of `ROLES`.
        expires_in: Lifetime of the key from now; None for a key that never
            expires.

    Raises:
        RequestError: The name, role or lifetime is invalid.
        ApiKeyError: A key of that name exists, even revoked.
    """
    _check_name(name)
    if role not in ROLES:
        raise RequestError(
            f"invalid role {role!r} for key {name!r}; use one of {', '.join(ROLES)}"
        )
    _check_lifetime(name, expires_in)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    actor = current_actor()
    now = datetime.now(UTC)
    expires_at = None if expires_in is None else now + expires_in
    prefix = token[:SHOWN_PREFIX_CHARACTERS]
    key = ApiKey(name, role, prefix, now, actor.name, expires_at=expires_at)
    db = catalog.db
    db.execute(SCHEMA)
    if _row(db, name) is not None:
        raise ApiKeyError(
            f"a key named {name!r} exists; choose another name (a revoked key's "
            "name stays taken, so audit entries name one key)"
        )
    db.execute(
        "INSERT INTO api_keys (name, role, token_sha256, token_prefix, created_at, "
        "created_by, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [name, role, hash_token(token), prefix, now, actor.name, expires_at],
    )
    shown_expiry = "never" if expires_at is None else utc_text(expires_at)
    logger.info(
        "api key created name=%s role=%s expires_at=%s actor=%s",
        name,
        role,
        shown_expiry,
        actor.name,
    )
    details = {"role": role, "prefix": prefix, "expires_at": _json_time(expires_at)}
    record(catalog, "key.create", name, details)
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
        raise unknown_key_error(name, [k.name for k in list_keys(catalog)])
    if key.revoked_at is not None:
        raise ApiKeyError(f"key {name!r} was revoked at {utc_text(key.revoked_at)}")
    if key.role == ADMIN and not key.expired and _active_admins(db) == 1:
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
    return replace(key, revoked_at=now, revoked_by=actor.name)


def unknown_key_error(name: str, names: list[str]) -> NotFoundError:
    """Return the error for a key `name` that is not among the key `names`.

    The command line raises it before it sends a revocation to the daemon, so
    the message is the same with and without a daemon.
    """
    return NotFoundError(
        f"no API key named {name!r}; keys: {', '.join(names) or 'none'}"
    )


def list_keys(catalog: Catalog) -> list[ApiKey]:
    """Return every key, revoked and expired ones too, by name."""
    db = catalog.db
    if not table_exists(db, "api_keys"):
        return []
    rows = db.execute(f"SELECT {_key_columns(db)} FROM api_keys ORDER BY name")
    return [ApiKey(*row) for row in rows.fetchall()]


def active_keys(catalog: Catalog) -> dict[str, KeyHolder]:
    """Return each unrevoked key by its token's sha256, for the daemon's gate.

    Expired keys are included, so that the gate can tell their requests that
    the key expired.
    """
    db = catalog.db
    if not table_exists(db, "api_keys"):
        return {}
    rows = db.execute(
        f"SELECT token_sha256, name, role, {_expiry_column(db)} FROM api_keys "
        "WHERE revoked_at IS NULL"
    ).fetchall()
    return {
        digest: KeyHolder(Actor(name, role), expires_at)
        for digest, name, role, expires_at in rows
    }


def usable_count(keys: dict[str, KeyHolder], now: datetime | None = None) -> int:
    """Return how many of `keys` are not expired at `now` (default: now)."""
    at = now or datetime.now(UTC)
    return sum(not is_expired(key.expires_at, at) for key in keys.values())


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


def _check_lifetime(name: str, expires_in: timedelta | None) -> None:
    if expires_in is None:
        return
    if not timedelta(seconds=1) <= expires_in <= MAX_LIFETIME:
        raise RequestError(
            f"invalid lifetime for key {name!r}: {expires_in.total_seconds():g} s; "
            f"give at least 1 s and at most {MAX_LIFETIME.days} days, or none for "
            "a key that never expires"
        )


def _json_time(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat()


def _expiry_column(db: duckdb.DuckDBPyConnection) -> str:
    """Return ``expires_at``, or NULL for a table written before keys expired.

    A read-only catalog cannot add the column, so reads select NULL in its
    place, which is what every key of such a table means: no expiry.
    """
    found = first_row(
        db.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'api_keys' AND column_name = 'expires_at'"
        )
    )
    return "expires_at" if found and found[0] else "NULL::TIMESTAMPTZ"


def _key_columns(db: duckdb.DuckDBPyConnection) -> str:
    return f"{_COLUMNS}, {_expiry_column(db)}"


def _row(db: duckdb.DuckDBPyConnection, name: str) -> ApiKey | None:
    row = first_row(
        db.execute(f"SELECT {_key_columns(db)} FROM api_keys WHERE name = ?", [name])
    )
    return ApiKey(*row) if row else None


def _active_admins(db: duckdb.DuckDBPyConnection) -> int:
    """Return the admin keys that are neither revoked nor expired."""
    row = first_row(
        db.execute(
            "SELECT count(*) FROM api_keys WHERE role = ? AND revoked_at IS NULL "
            "AND (expires_at IS NULL OR expires_at > ?)",
            [ADMIN, datetime.now(UTC)],
        )
    )
    return int(row[0]) if row else 0
