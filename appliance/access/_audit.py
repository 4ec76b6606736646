"""The audit log: an append-only, hash-chained catalog table of who did what.

Each entry records the time, the actor (key name and role, ``local`` with
the OS user, or ``daemon``), the action, its target, details as JSON and the
outcome. Its ``hash`` is the sha256 of the previous entry's hash and its own
fields, and ``seq`` numbers the entries from 1 without gaps. `verify_chain`
recomputes the chain, so an edited, inserted or deleted row is found and named.
Deleting the newest entries leaves a shorter chain that is still intact, so
every entry's ``seq`` and ``hash`` also go to the process log (journald under
systemd, outside the home). `verify_chain` with such an anchor finds a chain
that lost its newest entries or was rebuilt.

Other modules call `record` at the place where the action happens. A failed
write is logged and does not undo the action, which has already happened.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import duckdb

from appliance.access._actor import Actor, current_actor
from appliance.dbrows import first_row

if TYPE_CHECKING:
    from appliance.storage import Catalog

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq        BIGINT PRIMARY KEY,
    recorded_at TIMESTAMPTZ NOT NULL,
    actor      VARCHAR NOT NULL,
    actor_role VARCHAR,
    actor_user VARCHAR,
    action     VARCHAR NOT NULL,
    target     VARCHAR NOT NULL,
    details    VARCHAR NOT NULL,
    outcome    VARCHAR NOT NULL,
    prev_hash  VARCHAR NOT NULL,
    hash       VARCHAR NOT NULL
)
"""

ACTIONS = (
    "alert.acknowledge",
    "alert.resolve",
    "config.reload",
    "dataset.compact",
    "dataset.erase",
    "dataset.ingest",
    "dataset.remove",
    "drift.check",
    "key.create",
    "key.revoke",
    "model.promote",
    "model.register",
    "model.rollback",
    "model.sign",
    "orphans.remove",
    "predictions.expire",
    "request.refused",
    "retrain.start",
    "signing.rotate",
)
"""Every action the appliance records, for listings filtered by action."""

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first entry."""

_COLUMNS = (
    "seq, recorded_at, actor, actor_role, actor_user, action, target, details, "
    "outcome, prev_hash, hash"
)

# One writer at a time per process, so two threads cannot both chain to the
# same previous entry. Only one process writes the catalog at a time.
_write_lock = threading.Lock()


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit log."""

    seq: int
    recorded_at: datetime
    actor: str
    actor_role: str | None
    actor_user: str | None
    action: str
    """Such as ``model.promote``, ``key.create`` or ``request.refused``."""
    target: str
    """Name of the model, key, dataset or alert the action applied to."""
    details: str
    """JSON object text, exactly as hashed."""
    outcome: str
    """``ok``, ``failed``, ``refused`` or a result of the action."""
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """Return the entry as JSON-ready values, with `details` decoded."""
        values = asdict(self)
        values["recorded_at"] = _time_text(self.recorded_at)
        values["details"] = json.loads(self.details)
        return values


@dataclass(frozen=True)
class Anchor:
    """An entry's ``seq`` and ``hash`` kept off the box, to check the log against."""

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """Return the anchor written as ``SEQ:HASH``.

        Raises:
            ValueError: `text` is not a positive number, a colon and 64 hex
                digits.
        """
        seq, _, digest = text.strip().partition(":")
        digest = digest.lower()
        valid_hash = len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
        if not seq.isdigit() or int(seq) < 1 or not valid_hash:
            raise ValueError(
                f"invalid audit anchor {text!r}: expected SEQ:HASH, an entry "
                "number from 1 and its 64 hex digit hash, as the log line 'audit "
                "entry recorded' or 'appliance audit list --json' shows them"
            )
        return cls(int(seq), digest)


@dataclass(frozen=True)
class ChainCheck:
    """The result of `verify_chain`."""

    entries: int
    """Entries read."""
    head: str | None
    """Hash of the newest entry that verified; None when none did."""
    broken_seq: int | None = None
    """``seq`` of the first entry that breaks the chain; None when intact."""
    problem: str | None = None
    """Description of the break."""
    anchor_seq: int | None = None
    """``seq`` of the anchor the chain was compared with; None without one."""

    @property
    def intact(self) -> bool:
        """Whether every entry chains to the one before it."""
        return self.broken_seq is None

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready values."""
        return {**asdict(self), "intact": self.intact}


def ensure_table(db: duckdb.DuckDBPyConnection) -> None:
    """Create the audit table if it is missing."""
    db.execute(SCHEMA)


def record(
    catalog: Catalog,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
    outcome: str = "ok",
    actor: Actor | None = None,
) -> AuditEntry | None:
    """Append one entry to the audit log and return it.

    Args:
        catalog: A writable catalog, or a cursor view of the daemon's
            connection in the calling thread. No transaction may be open on it.
        action: What was done, as ``noun.verb`` (``model.promote``).
        target: What it was done to.
        details: JSON-ready facts of the action. Never put a secret here.
        outcome: ``ok`` unless the action failed or was refused.
        actor: Who did it; the current actor (see `current_actor`) when None.

    Returns:
        The entry, or None when the write failed; the failure is logged.
    """
    who = actor or current_actor()
    text = json.dumps(details or {}, sort_keys=True, separators=(",", ":"), default=str)
    at = datetime.now(UTC)
    fields = (at, who.name, who.role, who.user, action, target, text, outcome)
    with _write_lock:
        try:
            ensure_table(catalog.db)
            with catalog.transaction():
                seq, prev, digest = _append(catalog.db, fields)
        except duckdb.Error:
            logger.exception(
                "audit entry not recorded action=%s target=%s actor=%s",
                action,
                target,
                who.name,
            )
            return None
    logger.info("audit entry recorded seq=%d action=%s hash=%s", seq, action, digest)
    return AuditEntry(seq, at, *fields[1:], prev, digest)


def _append(
    db: duckdb.DuckDBPyConnection, fields: tuple[Any, ...]
) -> tuple[int, str, str]:
    """Insert an entry after the newest one.

    Returns:
        The entry's seq, the hash of the entry before it and its own hash.
    """
    # The newest entry is found by max(seq). After a deletion of the
    # newest rows, ORDER BY seq DESC LIMIT 1 returned an older row in
    # DuckDB 2.0.1.
    last = first_row(
        db.execute(
            "SELECT seq, hash FROM audit_log "
            "WHERE seq = (SELECT max(seq) FROM audit_log)"
        )
    )
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    digest = entry_hash(prev, seq, *fields)
    db.execute(
        f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [seq, *fields, prev, digest],
    )
    return seq, prev, digest


def entry_hash(
    prev_hash: str,
    seq: int,
    recorded_at: datetime,
    actor: str,
    actor_role: str | None,
    actor_user: str | None,
    action: str,
    target: str,
    details: str,
    outcome: str,
) -> str:
    """Return the sha256 hex digest that chains an entry to `prev_hash`."""
    fields = [
        prev_hash,
        seq,
        _time_text(recorded_at),
        actor,
        actor_role,
        actor_user,
        action,
        target,
        details,
        outcome,
    ]
    canonical = json.dumps(fields, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def list_entries(
    catalog: Catalog,
    since: datetime | None = None,
    action: str | None = None,
    limit: int | None = None,
) -> list[AuditEntry]:
    """Return entries at or after `since` whose action is `action` or starts
    with ``action.``, oldest first; the newest `limit` when set."""
    if not table_exists(catalog.db, "audit_log"):
        return []
    where, params = ["TRUE"], []
    if since is not None:
        where.append("recorded_at >= ?")
        params.append(since)
    if action is not None:
        where.append("(action = ? OR starts_with(action, ?))")
        params += [action, action + "."]
    sql = f"SELECT {_COLUMNS} FROM audit_log WHERE {' AND '.join(where)}"
    sql += " ORDER BY seq DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    rows = catalog.db.execute(sql, params).fetchall()
    return [AuditEntry(*row) for row in reversed(rows)]


def verify_chain(catalog: Catalog, anchor: Anchor | None = None) -> ChainCheck:
    """Recompute every entry's hash and return the first break of the chain.

    Args:
        catalog: The catalog whose audit log is checked.
        anchor: The ``seq`` and ``hash`` of an entry copied off the box, such
            as from the process log. The chain must still contain that entry
            with that hash, which finds deleted newest entries.
    """
    count, head, broken = _verified_prefix(catalog, anchor)
    if broken is None and anchor is not None and count < anchor.seq:
        broken = (
            count + 1,
            f"the log ends at entry {count} but the anchor names entry "
            f"{anchor.seq}, so the newest entries were deleted",
        )
    anchor_seq = anchor.seq if anchor else None
    head_hash = head if count else None
    if broken is None:
        return ChainCheck(count, head_hash, anchor_seq=anchor_seq)
    return ChainCheck(count, head_hash, *broken, anchor_seq)


def _verified_prefix(
    catalog: Catalog, anchor: Anchor | None
) -> tuple[int, str, tuple[int, str] | None]:
    """Return the count and newest hash of the entries that verify, and the
    first break as ``(seq, problem)`` or None."""
    if not table_exists(catalog.db, "audit_log"):
        return 0, GENESIS_HASH, None
    cursor = catalog.db.execute(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq")
    prev, count = GENESIS_HASH, 0
    while rows := cursor.fetchmany(10_000):
        for row in rows:
            entry = AuditEntry(*row)
            problem = _problem(entry, count + 1, prev)
            if problem is None and anchor and entry.seq == anchor.seq:
                problem = _anchor_mismatch(anchor, entry.hash)
            if problem is not None:
                return count, prev, (entry.seq, problem)
            prev, count = entry.hash, count + 1
    return count, prev, None


def _anchor_mismatch(anchor: Anchor, digest: str) -> str | None:
    """Return why the anchor's entry, whose hash is `digest`, fails it."""
    if digest == anchor.hash:
        return None
    return (
        f"entry {anchor.seq} has hash {digest}, not the anchor's {anchor.hash}, "
        "so the log was rebuilt from that entry or an earlier one"
    )


def _problem(entry: AuditEntry, expected_seq: int, prev: str) -> str | None:
    """Return why `entry` breaks the chain, or None when it fits."""
    if entry.seq != expected_seq:
        return (
            f"entry {expected_seq} is missing: the entry after "
            f"{expected_seq - 1} has seq {entry.seq}, so entries were deleted"
        )
    if entry.prev_hash != prev:
        return (
            f"entry {entry.seq} does not chain to entry {entry.seq - 1}: its "
            "prev_hash differs from that entry's hash, so an entry before it "
            "was replaced"
        )
    fields = asdict(entry)
    del fields["hash"]
    if entry_hash(**fields) != entry.hash:
        return f"entry {entry.seq} was changed: its hash does not match its fields"
    return None


def table_exists(db: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Return whether the catalog has `table`; a read-only one may lack it."""
    found = first_row(
        db.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
            [table],
        )
    )
    return bool(found and found[0])


def _time_text(at: datetime) -> str:
    """Return `at` in UTC as ISO 8601 with microseconds, as it is hashed."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
