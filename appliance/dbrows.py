"""Reading single rows from DuckDB results.

DuckDB 2 keeps a result open until a fetch returns no rows, and a relation
query (``.sql``) on a connection with an open result fails with "connection
has an unfinished result from execute()". ``fetchone`` on a one-row result
leaves it open, so single rows are read with `first_row`, which fetches all.
"""

from __future__ import annotations

from typing import Any


def first_row(result: Any) -> tuple[Any, ...] | None:
    """Return the first row of an executed query's result, or None if empty.

    The result is read to its end, so the connection can run the next query.
    Use it on queries that return at most a few rows.
    """
    rows = result.fetchall()
    return rows[0] if rows else None
