"""The limit of one prediction log query, shared by the daemon's route and the CLI.

The module imports nothing heavy, so the CLI checks a limit before it opens
the catalog or sends the query to the daemon.
"""

from appliance.errors import RequestError

MAX_QUERY_ROWS = 10_000
"""Most rows one query of the prediction log returns. In a one-off check, a
query of 37,000 rows took 1.7 s and returned 26 MB, so a larger page would
hold the daemon's memory and a worker thread for long."""


def check_query_limit(limit: int, name: str = "limit", paged: bool = True) -> None:
    """Raise `RequestError` when `limit` is above `MAX_QUERY_ROWS`.

    `name` is the parameter or option that set it, and `paged` is whether
    the query takes ``since`` and ``until`` to read the log in parts.
    """
    if limit > MAX_QUERY_ROWS:
        parts = " and read the log in parts with since and until" if paged else ""
        raise RequestError(
            f"{name} {limit} is above the maximum of {MAX_QUERY_ROWS} rows per "
            f"query; ask for at most {MAX_QUERY_ROWS} rows{parts}",
            limit=limit,
        )
