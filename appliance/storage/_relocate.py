"""Moving a home: the catalog's stored paths follow the home they are in.

Dataset versions and model versions record the absolute paths of their files
under the home, and dataset versions those of their source files, which may
be under the home too. A home that is moved, or copied and restored from a backup,
would still point at the old place: a copy would quietly read the original's
files, and a moved home would find none. The catalog therefore records its
home in the ``catalog_home`` table, and when it is opened for writing under
another home, every stored path under the old home is rewritten to the new
one in one transaction.
"""

from __future__ import annotations

import json
import logging
from pathlib import PurePosixPath

import duckdb

from appliance.dbrows import first_row
from appliance.storage._sql import literal
from appliance.storage._transaction import transaction

logger = logging.getLogger(__name__)

HOME_TABLE = "CREATE TABLE IF NOT EXISTS catalog_home (home VARCHAR NOT NULL)"
_PATH_COLUMNS = (
    ("dataset_versions", "path"),
    ("removed_versions", "path"),
    ("model_versions", "path"),
)
_JSON_COLUMNS = (
    ("dataset_versions", "files_json"),
    ("removed_versions", "files_json"),
    # Source files kept under the home, such as HOME/source/ or the ingest
    # buffer's segments, are named by their path in the home.
    ("dataset_versions", "sources_json"),
    ("removed_versions", "sources_json"),
)


def recorded_home(db: duckdb.DuckDBPyConnection) -> str | None:
    """Return the home the catalog's paths are under, or None if unknown.

    Catalogs written before ``catalog_home`` existed give the home that their
    first dataset or model version's path is in.
    """
    return _stored_home(db) or _home_from_paths(db)


def relocate(db: duckdb.DuckDBPyConnection, home: str) -> str | None:
    """Rewrite the stored paths under the recorded home to be under `home`.

    Args:
        db: A writable connection to the catalog, its schema created.
        home: The catalog's home now, as an absolute path.

    Returns:
        The previous home when the paths were rewritten, else None.
    """
    stored = _stored_home(db)
    if stored == home:
        return None
    old = stored or _home_from_paths(db)
    db.execute(HOME_TABLE)
    with transaction(db):
        if old is not None and old != home:
            _rewrite_paths(db, old, home)
        db.execute("DELETE FROM catalog_home")
        db.execute(f"INSERT INTO catalog_home VALUES ({literal(home)})")
    if old is None or old == home:
        return None
    logger.warning("catalog paths moved to a new home from=%s to=%s", old, home)
    return old


def _rewrite_paths(db: duckdb.DuckDBPyConnection, old: str, new: str) -> None:
    for table, column in _PATH_COLUMNS:
        db.execute(_rewrite_path(table, column, old, new))
    # The JSON text contains each path as a JSON string, so the old home is
    # replaced where it begins such a string.
    before, after = _json_prefix(old), _json_prefix(new)
    for table, column in _JSON_COLUMNS:
        db.execute(
            f"UPDATE {table} SET {column} = replace({column}, "
            f"{literal(before)}, {literal(after)}) WHERE {column} IS NOT NULL"
        )


def _stored_home(db: duckdb.DuckDBPyConnection) -> str | None:
    exists = first_row(
        db.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'catalog_home'"
        )
    )
    if not exists or not exists[0]:
        return None
    row = first_row(db.execute("SELECT home FROM catalog_home"))
    return row[0] if row is not None else None


def _rewrite_path(table: str, column: str, old: str, new: str) -> str:
    prefix = old.rstrip("/") + "/"
    return (
        f"UPDATE {table} SET {column} = {literal(new.rstrip('/') + '/')} || "
        f"{column}[{len(prefix) + 1}:] "
        f"WHERE starts_with({column}, {literal(prefix)})"
    )


def _json_prefix(home: str) -> str:
    """Return how a path under `home` begins inside JSON text."""
    return json.dumps(home.rstrip("/") + "/")[:-1]


def _home_from_paths(db: duckdb.DuckDBPyConnection) -> str | None:
    """Return the home above the first recorded version folder, if any.

    Dataset versions live in ``HOME/lake/DATASET/version=ID`` and model
    versions in ``HOME/models/MODEL/VERSION``.
    """
    for table, folder in (("dataset_versions", "lake"), ("model_versions", "models")):
        row = first_row(db.execute(f"SELECT path FROM {table} LIMIT 1"))
        if row is None:
            continue
        path = PurePosixPath(row[0])
        if len(path.parts) > 3 and path.parents[1].name == folder:
            return str(path.parents[2])
    return None
