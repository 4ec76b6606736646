"""Feature views run over an ingest's rows before its version is committed.

A contract checks each value against its column's type, but a feature view
may convert a value further, such as ``CAST(time_hour AS TIMESTAMPTZ)`` over
a text column. A value that the contract accepts can then make the view
fail, and the daemon could not load that view until the rows are replaced.

`find_unread_rows` runs each view that reads the dataset over the rows the
version would have: the accepted new rows, after the parent's rows for an
append. The other datasets are read at their latest versions. When a view
fails on those rows, the new rows are split in halves, and each half runs
through the view on its own, until single rows are left. Those rows are
returned with the view's name and DuckDB's reason, and the ingest
quarantines them as it quarantines contract violations. A failure that no
single row causes, such as one of an aggregate over all rows, rejects the
ingest.

The check runs in its own in-memory DuckDB, over an Arrow copy of the
accepted new rows, so it needs memory for those rows and for each view's
result.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from appliance.config import FeatureViewConfig
from appliance.errors import IngestError, one_line, shown
from appliance.storage._catalog import Catalog
from appliance.storage._datasets import DatasetVersion, list_versions, scan_sql
from appliance.storage._sql import ident
from appliance.storage._view_keys import tables_read

logger = logging.getLogger(__name__)

MAX_VIEW_RUNS = 2000
"""Maximum runs of one view while the failing rows of an ingest are searched.
Each failing row costs at most about twice the base-2 logarithm of the row
count in runs, so this isolates an estimated 50 failing rows among a million.
An ingest with more such rows is rejected, because a whole column in the
wrong format is then the likely cause."""
MAX_COLUMN_SEARCHES = 50
"""Failing rows whose failing column is searched for, one run per column."""
_NEW_ROWS = "_ingest_new_rows"
_PARENT_ROWS = "_ingest_parent_rows"
_RESULT = "_view_result"
_IDS = ("_file", "_record")


@dataclass(frozen=True)
class UnreadRow:
    """A new row that a feature view fails on."""

    view: str
    file: int
    """Index of the row's source file in the ingest."""
    record: int
    """Position of the row in its source file, as the staged rows number it."""
    column: str | None
    """The column whose value makes the view fail, when one value does."""
    value: str | None
    reason: str
    """DuckDB's error, in one line."""


@dataclass
class ViewReads:
    """Rows and warnings of the feature views that read the dataset."""

    unread: list[UnreadRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def views_reading(
    db: duckdb.DuckDBPyConnection, dataset: str, views: Sequence[FeatureViewConfig]
) -> list[FeatureViewConfig]:
    """Return the views whose SQL reads `dataset`, matched ignoring case.

    A view whose SQL does not parse is left out; loading it reports the SQL.
    """
    found = []
    for view in views:
        tables = tables_read(db, view.sql) or set()
        if dataset.lower() in {name.lower() for name in tables}:
            found.append(view)
    return found


def find_unread_rows(
    catalog: Catalog,
    dataset: str,
    new_rows: pa.Table,
    latest: tuple[DatasetVersion | None, bool],
    views: Sequence[FeatureViewConfig],
    force: bool,
) -> ViewReads:
    """Run each view over the version's rows and return the rows it fails on.

    Args:
        catalog: The catalog, for the latest versions of the other datasets.
        dataset: The dataset being ingested.
        new_rows: The accepted new rows as stored, with the ``_file`` and
            ``_record`` columns first.
        latest: The dataset's latest version, None for a first version, and
            whether the ingest appends to it.
        views: The views that read `dataset` (`views_reading`).
        force: Return a warning instead of raising when the new version
            breaks a view's SQL.

    Raises:
        IngestError: A view fails on the new rows and no single row causes
            it, it fails on more rows than `MAX_VIEW_RUNS` can isolate, or,
            without `force`, its SQL no longer binds to the new version.
    """
    found = ViewReads()
    others = [
        version
        for version in _latest_versions(catalog)
        if version.dataset.lower() != dataset.lower()
    ]
    with _CheckDatabase(dataset, others, *latest) as check:
        for view in views:
            remaining = _without(new_rows, found.unread)
            _check_view(check, view, remaining, force, found)
    return found


def _check_view(
    check: _CheckDatabase,
    view: FeatureViewConfig,
    rows: pa.Table,
    force: bool,
    found: ViewReads,
) -> None:
    """Add the rows `view` fails on, or a warning, to `found`."""
    dataset = check.dataset

    bound = check.binds(view, rows)
    if bound is not None:
        if check.binds(view, None) is not None:
            # The view did not bind before this ingest either, so the fault is
            # in its SQL or in another dataset, and loading the view reports it.
            logger.info(
                "feature view not checked at ingest view=%s dataset=%s error=%s",
                view.name,
                dataset,
                bound,
            )
            return
        problem = (
            f"feature view {view.name!r} cannot read the new version of dataset "
            f"{dataset!r}: {bound}"
        )
        if not force:
            raise IngestError(
                f"{problem}; keep the columns the view reads in the files, change "
                f"[feature_views.{view.name}] in the configuration, or ingest with "
                "--force to store the version anyway"
            )
        found.warnings.append(f"{problem}; stored because of --force")
        return

    error = check.run(view, rows, with_parent=True)
    if error is None:
        return

    if check.appends and check.run(view, None, with_parent=True):
        found.warnings.append(
            f"feature view {view.name!r} already fails on the rows of "
            f"{dataset}@{check.parent.version}, so the new rows were not checked "
            f"against it: {error}"
        )
        return

    unread = _bisect(check, view, rows)
    found.unread += unread
    rest = _without(rows, unread)
    error = check.run(view, rest, with_parent=True)
    if error is not None:
        raise IngestError(
            f"feature view {view.name!r} fails on the rows of this ingest of "
            f"dataset {dataset!r}, and on no single row alone: {error}; correct "
            f"the rows, or [feature_views.{view.name}] sql in the configuration"
        )
    logger.warning(
        "rows unreadable by a feature view dataset=%s view=%s rows=%d",
        dataset,
        view.name,
        len(unread),
    )


def _bisect(
    check: _CheckDatabase, view: FeatureViewConfig, rows: pa.Table
) -> list[UnreadRow]:
    """Return the rows of `rows` that `view` fails on, each run on its own."""
    failing: list[tuple[int, str]] = []
    pending = [(0, rows.num_rows)]
    runs = 0
    while pending:
        start, stop = pending.pop()
        runs += 1
        if runs > MAX_VIEW_RUNS:
            raise IngestError(_too_many(check.dataset, view, rows, failing))
        error = check.run(view, rows.slice(start, stop - start), with_parent=False)
        if error is None:
            continue
        if stop - start == 1:
            failing.append((start, error))
            continue
        middle = (start + stop) // 2
        # Pushed second, so popped first: rows are found in file order.
        pending += [(middle, stop), (start, middle)]
    return [
        _unread_row(check, view, rows, index, error, searched=number)
        for number, (index, error) in enumerate(failing)
    ]


def _unread_row(
    check: _CheckDatabase,
    view: FeatureViewConfig,
    rows: pa.Table,
    index: int,
    error: str,
    searched: int,
) -> UnreadRow:
    """Return row `index` of `rows` with the column whose value fails the view.

    Each column is set to NULL in turn, and the first one without which the
    view reads the row is the column. Only the first `MAX_COLUMN_SEARCHES`
    rows of an ingest are searched.
    """
    row = rows.slice(index, 1)
    file, record = (row.column(name)[0].as_py() for name in _IDS)
    if searched < MAX_COLUMN_SEARCHES:
        for position, name in enumerate(row.column_names):
            if name in _IDS or row.column(name)[0].as_py() is None:
                continue
            blank = row.set_column(
                position,
                row.schema.field(position),
                pa.nulls(1, row.schema.types[position]),
            )
            if check.run(view, blank, with_parent=False) is None:
                value = row.column(name)[0].as_py()
                return UnreadRow(view.name, file, record, name, str(value), error)
    return UnreadRow(view.name, file, record, None, None, error)


def _too_many(
    dataset: str,
    view: FeatureViewConfig,
    rows: pa.Table,
    failing: list[tuple[int, str]],
) -> str:
    """Return the error of an ingest with more failing rows than can be isolated."""
    first = ""
    if failing:
        index, error = failing[0]
        values = rows.drop_columns(list(_IDS)).slice(index, 1).to_pylist()[0]
        first = f"; the first found is {shown(values)}: {error}"
    return (
        f"feature view {view.name!r} fails on many rows of this ingest of dataset "
        f"{dataset!r} ({len(failing)} isolated in {MAX_VIEW_RUNS} runs of the "
        f"view){first}; correct the column's format in the files, or "
        f"[feature_views.{view.name}] sql in the configuration"
    )


def _without(rows: pa.Table, unread: Sequence[UnreadRow]) -> pa.Table:
    """Return `rows` without the rows in `unread`."""
    if not unread:
        return rows
    pairs = {(row.file, row.record) for row in unread}
    keep = [
        (file, record) not in pairs
        for file, record in zip(
            rows.column("_file").to_pylist(), rows.column("_record").to_pylist()
        )
    ]
    return rows.filter(pa.array(keep, pa.bool_()))


def _latest_versions(catalog: Catalog) -> list[DatasetVersion]:
    latest: dict[str, DatasetVersion] = {}
    for version in list_versions(catalog):
        latest.setdefault(version.dataset, version)
    return list(latest.values())


class _CheckDatabase:
    """An in-memory DuckDB whose tables are the datasets, as views read them.

    The ingested dataset's table contains the rows given to each run. In an
    append, a run may read the parent's rows before them. Each other dataset
    is its latest version.
    """

    def __init__(
        self,
        dataset: str,
        others: Sequence[DatasetVersion],
        parent: DatasetVersion | None,
        appends: bool,
    ) -> None:
        self.dataset = dataset
        self.parent = parent
        """The dataset's latest version, whose rows a run reads with the new
        rows in an append, and alone to tell what failed before the ingest."""
        self.appends = appends and parent is not None
        # View SQL runs here, and a query that reads a file of a known format
        # would otherwise download the DuckDB extension that reads it.
        self.db = duckdb.connect(config={"autoinstall_known_extensions": False})
        self.db.execute("SET TimeZone = 'UTC'")
        for version in others:
            try:
                self.db.execute(
                    f"CREATE VIEW {ident(version.dataset)} AS {scan_sql(version)}"
                )
            except duckdb.Error as exc:
                # A view that reads it fails to bind before and after alike.
                logger.info(
                    "dataset not readable for the feature view check dataset=%s "
                    "error=%s",
                    version.dataset,
                    one_line(str(exc)),
                )
        if parent is not None:
            try:
                self.db.execute(f"CREATE VIEW {_PARENT_ROWS} AS {scan_sql(parent)}")
            except duckdb.Error as exc:
                # Lost lake files: a replace does not read them, and an append
                # fails on them before this check.
                logger.info(
                    "latest version not readable for the feature view check "
                    "dataset=%s version=%s error=%s",
                    dataset,
                    parent.version,
                    one_line(str(exc)),
                )
                self.parent, self.appends = None, False

    def __enter__(self) -> _CheckDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.close()

    def binds(self, view: FeatureViewConfig, rows: pa.Table | None) -> str | None:
        """Return why `view` does not bind to `rows` (the parent's when None)."""
        if rows is None and self.parent is None:
            return "the dataset has no version yet"
        try:
            self._point_at(rows, with_parent=True)
            self.db.execute(f"DESCRIBE {view.sql}").fetchall()
        except duckdb.Error as exc:
            return _reason(exc)
        return None

    def run(
        self, view: FeatureViewConfig, rows: pa.Table | None, with_parent: bool
    ) -> str | None:
        """Materialize `view` over `rows`; return DuckDB's reason if it fails.

        With `with_parent` the parent's rows come first in an append. `rows`
        None reads the parent's rows alone.
        """
        try:
            self._point_at(rows, with_parent)
            self.db.execute(f"CREATE OR REPLACE TEMP TABLE {_RESULT} AS {view.sql}")
        except duckdb.Error as exc:
            return _reason(exc)
        finally:
            self.db.execute(f"DROP TABLE IF EXISTS {_RESULT}")
        return None

    def _point_at(self, rows: pa.Table | None, with_parent: bool) -> None:
        """Make the dataset's table `rows`, after the parent's rows when set."""
        parts = []
        if self.parent is not None and (rows is None or with_parent and self.appends):
            parts.append(f"SELECT * FROM {_PARENT_ROWS}")
        if rows is not None:
            self.db.register(_NEW_ROWS, rows)
            excluded = ", ".join(_IDS)
            parts.append(f"SELECT * EXCLUDE ({excluded}) FROM {_NEW_ROWS}")
        select = " UNION ALL BY NAME ".join(parts)
        self.db.execute(
            f"CREATE OR REPLACE TEMP VIEW {ident(self.dataset)} AS {select}"
        )


def _reason(exc: duckdb.Error) -> str:
    """Return DuckDB's error in one line, without the quoted SQL."""
    return one_line(str(exc).split("\nLINE ", 1)[0])
