"""One explicit DuckDB transaction around a block of statements.

DuckDB ends the transaction when COMMIT fails (a conflict found at commit,
for example) and rolls it back itself, so a ROLLBACK after a failed COMMIT
raises "no transaction is active". `transaction` therefore rolls back only
when the block raises, and a ROLLBACK that fails is logged, so the caller
sees the error of the block or of COMMIT, not that of ROLLBACK.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

logger = logging.getLogger(__name__)


@contextmanager
def transaction(db: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Run the block in one transaction, committed at its end or rolled back.

    Any exception of the block, `KeyboardInterrupt` included, rolls the
    transaction back and is raised again unchanged.

    Note that a DuckDB error inside the block aborts the transaction even
    when the block catches it, and COMMIT then stores nothing and raises
    nothing (DuckDB 2.0.1). A block must let DuckDB errors out.

    Args:
        db: A connection, or a cursor, with no transaction open on it.

    Raises:
        duckdb.Error: BEGIN or COMMIT failed. After a failed COMMIT, DuckDB
            has rolled the transaction back.
    """
    db.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException as exc:
        _rollback(db, exc)
        raise
    db.execute("COMMIT")


def _rollback(db: duckdb.DuckDBPyConnection, cause: BaseException) -> None:
    """Roll back, logging a failure so that it does not replace `cause`."""
    try:
        db.execute("ROLLBACK")
    except duckdb.Error as exc:
        logger.warning(
            "transaction rollback failed error=%s cause=%s: %s",
            exc,
            type(cause).__name__,
            cause,
        )
