"""Feature views that failed to load, and the rows served in their place.

A view whose SQL binds can still fail on its rows, such as a cast of a value
that does not convert. `FeatureServer.load` then keeps the rows the view had
at the previous load, if it had any, and records a `ViewFailure`. A view
over a dataset with no version, such as a removed one, gets a `ViewFailure`
with no rows. The models that join a view without rows are not served until
it loads.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from appliance.config import FeatureViewConfig
from appliance.errors import ViewDataError, one_line
from appliance.features._sql import ident


@dataclass(frozen=True)
class ViewFailure:
    """The last failed load of one feature view."""

    view: str
    message: str
    """The error in one line: the versions read, DuckDB's reason, what to do."""
    versions: dict[str, str]
    """Version id read of each dataset whose rows the view failed on."""
    served: dict[str, str] | None
    """Versions of the previous rows that are served instead; None when the
    view has no rows and its models are not served."""
    failed_at: float = field(default_factory=time.time)
    """Unix time of the failed load."""

    def to_dict(self, models: list[str]) -> dict[str, Any]:
        """Return the failure as JSON-ready values, with the models it affects.

        ``failed_at`` is ISO 8601 in UTC, like the other times of the HTTP API.
        """
        return {
            "error": self.message,
            "datasets": dict(self.versions),
            "serving_rows_of": None if self.served is None else dict(self.served),
            "models": models,
            "failed_at": datetime.fromtimestamp(self.failed_at, UTC).isoformat(),
        }


def view_data_error(
    view: FeatureViewConfig,
    versions: Mapping[str, str],
    exc: duckdb.Error,
    previous: Mapping[str, str] | None,
) -> ViewDataError:
    """Return the error of a view whose SQL bound but failed on its rows.

    Args:
        view: The view.
        versions: The dataset versions the failed load read.
        exc: DuckDB's error.
        previous: The versions the view read at its last good load, whose
            rows are served instead; None when it has none.
    """
    read = _versions_text(versions)
    reason = one_line(str(exc).split("\nLINE ", 1)[0])
    if previous is not None:
        cause = (
            f"It read {_versions_text(previous)} before, so rows added since "
            "contain a value its SQL cannot convert; the view serves its rows "
            "of then until it loads"
        )
    else:
        cause = (
            "Its SQL binds, so a row of those versions contains a value it "
            "cannot convert; the models that join the view are not served"
        )
    return ViewDataError(
        f"feature view {view.name!r} failed on the rows of {read}: {reason}. "
        f"{cause}. Remove the row with 'appliance erase DATASET --where "
        "COLUMN=VALUE', or ingest the dataset again with --mode replace, or "
        f"make [feature_views.{view.name}] sql accept such values (TRY_CAST "
        "gives NULL)"
    )


def copy_rows(
    source: duckdb.DuckDBPyConnection, target: duckdb.DuckDBPyConnection, table: str
) -> None:
    """Copy `table` of `source` into `target`, as the same name."""
    rows = source.sql(f"SELECT * FROM {ident(table)}").to_arrow_table()
    target.register("_previous_rows", rows)
    try:
        target.execute(f"CREATE TABLE {ident(table)} AS SELECT * FROM _previous_rows")
    finally:
        target.unregister("_previous_rows")


def _versions_text(versions: Mapping[str, str]) -> str:
    return ", ".join(f"{d}@{v}" for d, v in sorted(versions.items())) or "no dataset"
