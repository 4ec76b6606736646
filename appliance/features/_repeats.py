"""Entity keys that several rows of a feature view share.

Every join keeps one row per key (and event time) of a view: the last in the
view's row order (see `_sql.unique_sql`). The other rows are dropped without
error, so training and serving report them with `repeated_keys`.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from appliance.config import FeatureViewConfig
from appliance.features._sql import repeated_keys_sql


@dataclass(frozen=True)
class RepeatedKeys:
    """The keys of one feature view that more than one row has."""

    view: FeatureViewConfig
    keys: int
    """Count of repeated keys, with the event time for a timestamped view."""
    dropped: int
    """Rows the joins leave out, all but the last of each repeated key."""
    example: str
    """One repeated key, its parts as text separated by ", "."""

    def message(self) -> str:
        """Return the warning shown to users, with what to do about it."""
        columns = ", ".join(self.view.entities)
        if self.view.timestamp is not None:
            columns += f" and {self.view.timestamp}"
        return (
            f"feature view {self.view.name!r} has {self.keys} repeated "
            f"{columns} values (for example {self.example!r}); the joins use the "
            f"last row of each and leave out {self.dropped} earlier rows. Remove "
            "the repeated rows from the dataset, or make the view's SQL return "
            "one row per key"
        )


def repeated_keys(
    db: duckdb.DuckDBPyConnection, view: FeatureViewConfig
) -> RepeatedKeys | None:
    """Return the view's repeated keys, or None when every key has one row."""
    ((keys, dropped, example),) = db.execute(repeated_keys_sql(view)).fetchall()
    if not keys:
        return None
    return RepeatedKeys(view, int(keys), int(dropped), str(example))
