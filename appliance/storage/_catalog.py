"""The catalog: one DuckDB file that records datasets, runs and models.

Data itself lives in the Parquet lake beside it; the catalog holds the metadata
that names and orders it. DuckDB allows one writing process per file, so each
command opens the catalog for the span of its work and closes it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import duckdb

from appliance.dbrows import first_row
from appliance.errors import StorageError
from appliance.home import create_home
from appliance.storage._errors import short_error
from appliance.storage._gate_backfill import backfill_gate_rejections, has_table
from appliance.storage._open_errors import (
    is_lock_conflict,
    is_permission_error,
    open_failure,
)
from appliance.storage._relocate import recorded_home, relocate
from appliance.storage._transaction import transaction

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dataset_versions (
    dataset      VARCHAR NOT NULL,
    version      VARCHAR NOT NULL,
    parent       VARCHAR,
    created_at   TIMESTAMPTZ NOT NULL,
    row_count    BIGINT NOT NULL,
    schema_json  VARCHAR NOT NULL,
    sources_json VARCHAR NOT NULL,
    path         VARCHAR NOT NULL,
    PRIMARY KEY (dataset, version)
);
ALTER TABLE dataset_versions ADD COLUMN IF NOT EXISTS mode VARCHAR;
ALTER TABLE dataset_versions ADD COLUMN IF NOT EXISTS files_json VARCHAR;
ALTER TABLE dataset_versions ADD COLUMN IF NOT EXISTS partition_by VARCHAR;
ALTER TABLE dataset_versions ADD COLUMN IF NOT EXISTS report_json VARCHAR;
CREATE TABLE IF NOT EXISTS removed_versions (
    dataset      VARCHAR NOT NULL,
    version      VARCHAR NOT NULL,
    parent       VARCHAR,
    created_at   TIMESTAMPTZ NOT NULL,
    row_count    BIGINT NOT NULL,
    schema_json  VARCHAR NOT NULL,
    sources_json VARCHAR NOT NULL,
    path         VARCHAR NOT NULL,
    mode         VARCHAR,
    files_json   VARCHAR,
    partition_by VARCHAR,
    report_json  VARCHAR,
    removed_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (dataset, version)
);
CREATE TABLE IF NOT EXISTS dataset_redactions (
    dataset        VARCHAR NOT NULL,
    version        VARCHAR NOT NULL,
    erasure_id     VARCHAR NOT NULL,
    redacted_at    TIMESTAMPTZ NOT NULL,
    rows_removed   BIGINT NOT NULL,
    content_sha256 VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS dataset_removals (
    removal_id   VARCHAR PRIMARY KEY,
    dataset      VARCHAR NOT NULL,
    removed_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ,
    versions     VARCHAR[] NOT NULL
);
CREATE TABLE IF NOT EXISTS dataset_contracts (
    dataset       VARCHAR PRIMARY KEY,
    from_version  VARCHAR NOT NULL,
    schema_json   VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    dataset        VARCHAR NOT NULL,
    version        VARCHAR NOT NULL,
    source         VARCHAR NOT NULL,
    line           BIGINT,
    column_name    VARCHAR,
    value          VARCHAR,
    reason         VARCHAR NOT NULL,
    quarantined_at TIMESTAMPTZ NOT NULL
);
ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS row_json VARCHAR;
CREATE TABLE IF NOT EXISTS runs (
    run_id             VARCHAR PRIMARY KEY,
    model              VARCHAR NOT NULL,
    status             VARCHAR NOT NULL,
    started_at         TIMESTAMPTZ NOT NULL,
    finished_at        TIMESTAMPTZ,
    dataset            VARCHAR NOT NULL,
    dataset_version    VARCHAR,
    params_json        VARCHAR NOT NULL,
    metrics_json       VARCHAR,
    code_version       VARCHAR NOT NULL,
    model_version      INTEGER,
    error              VARCHAR,
    parent_run_id      VARCHAR,
    kind               VARCHAR NOT NULL DEFAULT 'train',
    tags_json          VARCHAR NOT NULL DEFAULT '{}',
    feature_views_json VARCHAR NOT NULL DEFAULT '{}',
    packages_json      VARCHAR NOT NULL DEFAULT '{}',
    host               VARCHAR NOT NULL DEFAULT '',
    pid                INTEGER,
    duration_seconds   DOUBLE,
    folds_json         VARCHAR,
    evaluation_json    VARCHAR
);
CREATE TABLE IF NOT EXISTS run_metrics (
    run_id    VARCHAR NOT NULL,
    key       VARCHAR NOT NULL,
    step      BIGINT NOT NULL,
    value     DOUBLE,
    logged_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS run_artifacts (
    run_id     VARCHAR NOT NULL,
    name       VARCHAR NOT NULL,
    sha256     VARCHAR NOT NULL,
    size_bytes BIGINT NOT NULL,
    media_type VARCHAR NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS model_versions (
    model        VARCHAR NOT NULL,
    version      INTEGER NOT NULL,
    run_id       VARCHAR NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    task         VARCHAR NOT NULL,
    path         VARCHAR NOT NULL,
    sha256       VARCHAR NOT NULL,
    parity       DOUBLE NOT NULL,
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS model_aliases (
    model   VARCHAR NOT NULL,
    alias   VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (model, alias)
);
CREATE TABLE IF NOT EXISTS gate_rejections (
    model       VARCHAR NOT NULL,
    version     INTEGER NOT NULL,
    retrain_id  VARCHAR NOT NULL,
    reason      VARCHAR NOT NULL,
    rejected_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS alias_events (
    model            VARCHAR NOT NULL,
    alias            VARCHAR NOT NULL,
    version          INTEGER,
    previous_version INTEGER,
    action           VARCHAR NOT NULL,
    actor            VARCHAR NOT NULL,
    reason           VARCHAR NOT NULL,
    changed_at       TIMESTAMPTZ NOT NULL
);
"""


_SCHEMA_SHA256 = hashlib.sha256(_SCHEMA.encode()).hexdigest()
"""Fingerprint of the schema above, stored in the catalog once it is applied."""


def _upgrade(db: duckdb.DuckDBPyConnection, home: Path) -> None:
    """Apply the schema unless it is recorded, then the home's paths.

    A catalog made before ``gate_rejections`` existed gets the table filled
    from its audit log in the same transaction (`backfill_gate_rejections`).
    """
    if not _is_current(db):
        with transaction(db):
            backfill = not has_table(db, "gate_rejections")
            db.execute(_SCHEMA)
            if backfill:
                backfill_gate_rejections(db)
            db.execute(
                "CREATE TABLE IF NOT EXISTS catalog_schema (sha256 VARCHAR NOT NULL);"
                "DELETE FROM catalog_schema;"
            )
            db.execute("INSERT INTO catalog_schema VALUES (?)", [_SCHEMA_SHA256])
    relocate(db, str(home.resolve()))


def _is_current(db: duckdb.DuckDBPyConnection) -> bool:
    """Return whether the catalog has the tables and columns of this schema."""
    try:
        row = first_row(db.execute("SELECT max(sha256) FROM catalog_schema"))
    except duckdb.CatalogException:
        return False
    return row is not None and row[0] == _SCHEMA_SHA256


def _check_creatable(home: Path) -> None:
    """Raise the error of `create_home` if `home` cannot be created.

    The folders made for the check are removed again.
    """
    missing = []
    for folder in (home, *home.parents):
        if folder.exists():
            break
        missing.append(folder)
    create_home(home)
    for folder in missing:
        folder.rmdir()


def _check_not_lost(home: Path, path: Path) -> None:
    """Raise when the catalog file is missing but the home contains data.

    A new, empty catalog would record none of the lake's versions or the
    models, and the orphan cleanup would then move every version folder
    aside, so a lost catalog must be restored rather than replaced.

    Raises:
        StorageError: The lake contains a Parquet file, or the models folder
            a file.
    """
    holders = [
        folder
        for folder, pattern in ((home / "lake", "*.parquet"), (home / "models", "*"))
        if folder.is_dir() and any(p.is_file() for p in folder.rglob(pattern))
    ]
    if not holders:
        return
    raise StorageError(
        f"the catalog {path} is missing, but {' and '.join(map(str, holders))} "
        "hold data that only the catalog records; restore catalog.duckdb from a "
        "backup of this home. To start with an empty home instead, move the "
        f"whole home away (mv {home} {home}.old)"
    )


class Catalog:
    """An open connection to the catalog file under the appliance home.

    Use it as a context manager so the file lock is released promptly.
    """

    def __init__(self, home: Path, read_only: bool = False) -> None:
        self.home = home
        self.path = home / "catalog.duckdb"
        if not self.path.exists():
            _check_not_lost(home, self.path)
        if read_only and not self.path.exists():
            # A read of a home that has no catalog yet finds it empty and
            # leaves no file behind, unless the home cannot be created at all.
            _check_creatable(home)
            logger.info("catalog not found, reading it as empty path=%s", self.path)
            self.db = duckdb.connect(":memory:")
            self.db.execute(_SCHEMA)
            return
        create_home(home)
        try:
            self.db = duckdb.connect(str(self.path), read_only=read_only)
            if not read_only:
                _upgrade(self.db, home)
            elif self._moved() or not _is_current(self.db):
                # A catalog of another home or of an older schema is brought
                # up to date once, on a connection that may write.
                self.db.close()
                self._upgrade_for_reading()
                self.db = duckdb.connect(str(self.path), read_only=True)
        except duckdb.IOException as exc:
            raise StorageError(self._open_failure(exc)) from exc

    def _upgrade_for_reading(self) -> None:
        """Apply the schema and the home's paths before a read-only open."""
        logger.info("upgrading catalog before reading path=%s", self.path)
        try:
            with duckdb.connect(str(self.path)) as db:
                _upgrade(db, self.home)
        except duckdb.IOException as exc:
            if not is_permission_error(exc):
                raise
            raise StorageError(
                f"the catalog {self.path} was written by an older version of the "
                "appliance or under another home, and this user may not write it "
                "to bring it up to date; run the command once as the home's "
                "owner, or start the daemon, which updates it"
            ) from exc

    def _open_failure(self, exc: duckdb.IOException) -> str:
        """Return the message for a catalog file that failed to open."""
        if is_lock_conflict(exc) or is_permission_error(exc):
            return open_failure("the catalog", self.path, exc, "")
        return (
            f"cannot open the catalog {self.path}: {short_error(exc)}. The file is "
            "damaged or not a DuckDB database; restore it from a backup of this "
            "home. It records every dataset version, run and model, so to start "
            f"with an empty catalog, move the whole home away (mv {self.home} "
            f"{self.home}.old)"
        )

    def _moved(self) -> bool:
        """Return whether the catalog's paths are under another home than its own."""
        recorded = recorded_home(self.db)
        return recorded is not None and recorded != str(self.home.resolve())

    @property
    def lake(self) -> Path:
        """Folder of the Parquet lake."""
        return self.home / "lake"

    @property
    def models_dir(self) -> Path:
        """Folder of the model artifacts."""
        return self.home / "models"

    @property
    def blobs_dir(self) -> Path:
        """Folder of run artifacts, stored by sha256 as ``blobs/AB/ABCDEF...``."""
        return self.home / "blobs"

    def cursor(self) -> Catalog:
        """Return a view of this catalog on a new cursor of the same connection.

        A DuckDB connection must not be shared between threads, but cursors of
        one connection may each be used by one thread; the daemon hands one to
        every worker thread that reads or writes the catalog. Close the view
        when the thread is done with it.
        """
        view = object.__new__(Catalog)
        view.home = self.home
        view.path = self.path
        view.db = self.db.cursor()
        return view

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block in one catalog transaction, committed at its end.

        When the block raises, the transaction is rolled back and the block's
        error raised again. A failed ROLLBACK is logged and does not replace
        that error. No transaction may be open on the connection already.

        Raises:
            duckdb.Error: BEGIN or COMMIT failed, so nothing was stored.
        """
        with transaction(self.db):
            yield

    def close(self) -> None:
        """Close the connection and release the file lock."""
        self.db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
